"""Helpers for the quantize tests: compare two GGUF files and say where they differ."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from pocketquant.gguf_file import KV, GGMLType, GGUFFile, GGUFValueType, TensorInfo, create_gguf


def gguf_diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> str | None:
    """None if the files are byte-identical; else the first structural difference (KVs, tensor
    table, tensor bytes), so a failing test says what is wrong rather than just "bytes differ"."""
    pa, pb = Path(a), Path(b)
    if pa.read_bytes() == pb.read_bytes():
        return None
    with GGUFFile(pa) as fa, GGUFFile(pb) as fb:
        ka, kb = list(fa.kv), list(fb.kv)
        if ka != kb:
            return f"KV keys/order differ:\n ours   {ka}\n theirs {kb}"
        for k in ka:
            if fa.kv[k].serialize() != fb.kv[k].serialize():
                return f"KV {k!r} differs: {fa.kv[k].value!r} vs {fb.kv[k].value!r}"
        na, nb = [t.name for t in fa.tensors], [t.name for t in fb.tensors]
        if na != nb:
            return f"tensor order differs:\n ours   {na[:12]}...\n theirs {nb[:12]}..."
        types = [
            f"{ta.name}: {ta.type.name} vs {tb.type.name}"
            for ta, tb in zip(fa.tensors, fb.tensors, strict=True)
            if ta.type != tb.type or ta.shape != tb.shape
        ]
        if types:
            return f"{len(types)} tensor types/shapes differ: {types[:8]}"
        bad = []
        for ta, tb in zip(fa.tensors, fb.tensors, strict=True):
            da, db = fa.tensor_data(ta), fb.tensor_data(tb)
            if not np.array_equal(da, db):
                bad.append(
                    f"{ta.name} ({ta.type.name}): {int(np.count_nonzero(da != db))} of {da.size} bytes"
                )
        if bad:
            return f"{len(bad)} tensors differ in data: {bad[:8]}"
        return f"same KVs, table and data but files differ (sizes {fa.file_size} vs {fb.file_size}: padding?)"


def tensor_types(path: str | os.PathLike[str]) -> dict[str, str]:
    with GGUFFile(path) as f:
        return {t.name: t.type.name for t in f.tensors}


def leftovers(directory: str | os.PathLike[str]) -> list[str]:
    """Files in a directory that look like our temp files (atomic_path writes .NAME.*.tmp)."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


def good_gguf_bytes(tmp_path: Path) -> bytes:
    """A small valid GGUF (2 KVs, tensors t0 [32x2] and t1 [64], F32) written to tmp_path/good.gguf."""
    kvs = {"general.architecture": KV.string("llama"), "k2": KV.u32(5)}
    tensors = [TensorInfo("t0", (32, 2), GGMLType.F32), TensorInfo("t1", (64,), GGMLType.F32)]
    p = tmp_path / "good.gguf"
    with create_gguf(p, kvs, tensors) as w:
        w.write(np.zeros(64, dtype=np.float32))
        w.write(np.ones(64, dtype=np.float32))
    return p.read_bytes()


def _first_kv_type_pos(data: bytes) -> int:
    klen = struct.unpack_from("<Q", data, 24)[0]
    return 24 + 8 + klen


def _tensor_table_pos(data: bytes) -> int:
    pos = 24
    for _ in range(struct.unpack_from("<Q", data, 16)[0]):  # skip KVs (all scalars/strings here)
        klen = struct.unpack_from("<Q", data, pos)[0]
        pos += 8 + klen
        vtype = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if vtype == GGUFValueType.STRING:
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        else:
            pos += 4
    return pos


def _patch(data: bytes, pos: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, pos, value)
    return bytes(b)


def broken_gguf_cases(good: bytes) -> dict[str, tuple[bytes, str]]:
    """Damaged variants of good_gguf_bytes(): case -> (file bytes, expected message fragment)."""
    kvt = _first_kv_type_pos(good)
    tt = _tensor_table_pos(good)  # first tensor: name len, "t0", n_dims, ne0, ne1, type, offset
    t0_ndims = tt + 8 + 2
    t0_type = t0_ndims + 4 + 16
    t0_off = t0_type + 4
    t1_ne0 = t0_off + 8 + 8 + 2 + 4
    return {
        "empty": (b"", "not a GGUF file"),
        "text": (b"hello, this is not a model\n" * 4, "not a GGUF file"),
        "cut_in_header": (good[:30], "truncated"),
        "cut_in_kvs": (good[:70], "truncated file"),
        "cut_in_data": (good[: len(good) - 100], "tensor data past end of file"),
        "bad_version": (_patch(good, 4, "<I", 7), "unsupported GGUF version 7"),
        "huge_kv_count": (_patch(good, 16, "<Q", 1 << 40), "1099511627776 KVs cannot fit"),
        "bad_kv_type": (_patch(good, kvt, "<I", 99), "invalid value type 99"),
        "huge_string": (_patch(good, 24, "<Q", 1 << 50), "runs past the end of the file"),
        "too_many_dims": (_patch(good, t0_ndims, "<I", 9), "9 dimensions"),
        "bad_tensor_type": (_patch(good, t0_type, "<I", 77), "invalid ggml type 77"),
        "bad_offset": (_patch(good, t0_off, "<Q", 3), "has data offset 3, expected 0"),
        "data_past_eof": (_patch(good, t1_ne0, "<Q", 1 << 20), "tensor data past end of file"),
    }
