"""Builders of hostile inputs for the bad-input tests (tests/hostile/): GGUFs with metadata or
tensors llama.cpp would refuse, broken safetensors and config.json files, and zips whose local
headers, sizes or layout lie. Each takes a good file and writes a damaged copy."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pocketquant.gguf_file import KV, GGMLType, GGUFFile, GGUFValueType, TensorInfo, create_gguf

# -- GGUF -------------------------------------------------------------------------------------

TensorEdit = Callable[[list[tuple[TensorInfo, bytes]]], list[tuple[TensorInfo, bytes]]]


def rewrite_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    kvs: Mapping[str, KV | None] | None = None,
    tensors: TensorEdit | None = None,
) -> Path:
    """Copy GGUF `src` to `dst` with KVs set (None: removed) and the (info, bytes) list of tensors
    passed through `tensors`; the writer recomputes offsets."""
    with GGUFFile(src) as f:
        out_kvs = dict(f.kv)
        items = [(t, f.read_tensor(t).tobytes()) for t in f.tensors]
    for key, kv in (kvs or {}).items():
        if kv is None:
            out_kvs.pop(key, None)
        else:
            out_kvs[key] = kv
    if tensors is not None:
        items = tensors(items)
    with create_gguf(dst, out_kvs, [t for t, _ in items]) as w:
        for _, data in items:
            if data:  # the writer moves past empty tensors by itself
                w.write(np.frombuffer(data, dtype=np.uint8))
    return Path(dst)


def u32(v: int) -> KV:
    return KV(GGUFValueType.UINT32, v)


def f32(v: float) -> KV:
    return KV(GGUFValueType.FLOAT32, v)


def string(v: str) -> KV:
    return KV(GGUFValueType.STRING, v)


def raw_string(b: bytes) -> KV:
    """A STRING KV holding bytes that need not be UTF-8."""
    return KV(GGUFValueType.STRING, b.decode("utf-8", "surrogateescape"))


def retype_tensor(name: str, new_type: GGMLType) -> TensorEdit:
    """The tensor `name` re-declared as F64/I32/... with data of the matching size (zeros)."""

    def edit(items: list[tuple[TensorInfo, bytes]]) -> list[tuple[TensorInfo, bytes]]:
        out = []
        for t, data in items:
            if t.name == name:
                t = TensorInfo(t.name, t.shape, new_type)
                data = bytes(t.nbytes)
            out.append((t, data))
        return out

    return edit


def rename_tensor(name: str, new_name: str) -> TensorEdit:
    def edit(items: list[tuple[TensorInfo, bytes]]) -> list[tuple[TensorInfo, bytes]]:
        return [(TensorInfo(new_name, t.shape, t.type) if t.name == name else t, d) for t, d in items]

    return edit


def add_tensor(info: TensorInfo, data: bytes = b"") -> TensorEdit:
    def edit(items: list[tuple[TensorInfo, bytes]]) -> list[tuple[TensorInfo, bytes]]:
        return [*items, (info, data)]

    return edit


def poison_tensor(name: str, value: float = float("nan"), index: int = 7) -> TensorEdit:
    """One float32 element of tensor `name` (which must be F32) set to `value`."""

    def edit(items: list[tuple[TensorInfo, bytes]]) -> list[tuple[TensorInfo, bytes]]:
        out = []
        for t, data in items:
            if t.name == name:
                assert t.type == GGMLType.F32
                a = np.frombuffer(data, dtype=np.float32).copy()
                a[index] = value
                data = a.tobytes()
            out.append((t, data))
        return out

    return edit


def patch_tensor_type(path: str | os.PathLike[str], name: str, code: int) -> None:
    """Overwrite the ggml type code of tensor `name` in the file's tensor table (to an invalid one,
    say): what a flipped byte in the header does."""
    with GGUFFile(path) as f:
        t = f.tensor(name)
    data = Path(path).read_bytes()
    raw = name.encode("utf-8", "surrogateescape")
    at = data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)
    (n_dims,) = struct.unpack_from("<I", data, at)
    assert n_dims == len(t.shape)
    patch_bytes(path, at + 4 + 8 * n_dims, struct.pack("<I", code))


# -- HF checkpoints ---------------------------------------------------------------------------


def edit_config(model_dir: str | os.PathLike[str], **changes: Any) -> None:
    """Set keys of config.json (a value of ... deletes the key)."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for k, v in changes.items():
        if v is ...:
            config.pop(k, None)
        else:
            config[k] = v
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    data = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_safetensors(path: str | os.PathLike[str], header: dict[str, Any], body: bytes) -> None:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def reshape_safetensor(path: str | os.PathLike[str], name: str, shape: list[int]) -> None:
    """Re-declare tensor `name` with another shape of the same byte size (the data stays)."""
    header, body = safetensors_header(path)
    header[name]["shape"] = shape
    write_safetensors(path, header, body)


def drop_safetensor(path: str | os.PathLike[str], name: str) -> None:
    """Remove tensor `name` and its bytes (later tensors move down)."""
    header, body = safetensors_header(path)
    begin, end = header.pop(name)["data_offsets"]
    for k, v in header.items():
        if k != "__metadata__" and v["data_offsets"][0] >= end:
            v["data_offsets"] = [v["data_offsets"][0] - (end - begin), v["data_offsets"][1] - (end - begin)]
    write_safetensors(path, header, body[:begin] + body[end:])


def add_safetensor(path: str | os.PathLike[str], name: str, shape: list[int], dtype: str = "F32") -> None:
    header, body = safetensors_header(path)
    size = int(np.prod(shape)) * {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + size]}
    write_safetensors(path, header, body + bytes(size))


# -- zips -------------------------------------------------------------------------------------


def zip_layout(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Offsets of a zip's structures: {"local": [(name, offset, header_len, data_offset, csize)],
    "central": offset of the central directory, "eocd": offset of the end record}."""
    data = Path(path).read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    n, cd_size, cd_off = struct.unpack_from("<HIL", data, eocd + 10)
    locals_ = []
    pos = cd_off
    for _ in range(n):
        csize = struct.unpack_from("<I", data, pos + 20)[0]
        n_len, e_len, c_len = struct.unpack_from("<HHH", data, pos + 28)
        off = struct.unpack_from("<I", data, pos + 42)[0]
        name = data[pos + 46 : pos + 46 + n_len].decode()
        ln, le = struct.unpack_from("<HH", data, off + 26)
        locals_.append((name, off, 30 + ln + le, off + 30 + ln + le, csize))
        pos += 46 + n_len + e_len + c_len
    return {"local": sorted(locals_, key=lambda x: x[1]), "central": cd_off, "eocd": eocd}


def structural_offsets(path: str | os.PathLike[str]) -> list[int]:
    """Every byte of the zip's local headers, central directory and end records (ZIP64 too), as
    pocketquant's strict reader finds them (so the zip must be a valid package)."""
    from pocketquant.inputs import open_regular
    from pocketquant.package.ziparchive import open_zip

    fd = open_regular(path)
    try:
        members = sorted(open_zip(fd, path).members, key=lambda m: m.data_offset)
    finally:
        os.close(fd)
    offsets, pos = [], 0
    for m in members:  # each local header fills the gap up to its member's data
        offsets += range(pos, m.data_offset)
        pos = m.data_offset + m.compressed_size
    return offsets + list(range(pos, Path(path).stat().st_size))


def patch_bytes(path: str | os.PathLike[str], offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def set_local_compressed_size(path: str | os.PathLike[str], member: str, delta: int) -> None:
    """Change one member's compressed size in its local header only (the central directory's copy
    stays): Python's zipfile does not notice, unzip does."""
    for name, off, _, _, csize in zip_layout(path)["local"]:
        if name == member:
            patch_bytes(path, off + 18, struct.pack("<I", csize + delta))
            return
    raise KeyError(member)


def set_member_mode(path: str | os.PathLike[str], member: str, mode: int) -> None:
    """Set a member's Unix mode (e.g. 0o120777, a symlink) in the central directory."""
    data = Path(path).read_bytes()
    lay = zip_layout(path)
    pos = lay["central"]
    while pos < lay["eocd"]:
        n_len, e_len, c_len = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46 : pos + 46 + n_len].decode() == member:
            patch_bytes(path, pos + 38, struct.pack("<I", mode << 16))
            return
        pos += 46 + n_len + e_len + c_len
    raise KeyError(member)


def deflate_bomb(
    path: str | os.PathLike[str], member: str, inflated: int, *, declared: int | None = None
) -> int:
    """A one-member zip whose member inflates to `inflated` bytes of zeros (a whole number of MiB,
    written without ever holding them). `declared`: the uncompressed size the headers claim
    (default: the truth). Returns the zip's size."""
    mib = 1 << 20
    assert inflated % mib == 0 and inflated >= 2 * mib
    zeros = bytes(mib)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    # after a sync flush, every further MiB of zeros compresses to the same bytes: repeat them
    first = comp.compress(zeros) + comp.flush(zlib.Z_SYNC_FLUSH)
    steady = comp.compress(zeros) + comp.flush(zlib.Z_SYNC_FLUSH)
    body = first + steady * (inflated // mib - 1) + comp.flush()
    crc = 0
    for _ in range(inflated // mib):
        crc = zlib.crc32(zeros, crc)
    size = inflated if declared is None else declared
    name = member.encode()
    common = struct.pack("<HHHHHIII", 20, 0, 8, 0, 33, crc, len(body), size)
    local = b"PK\x03\x04" + common + struct.pack("<HH", len(name), 0) + name
    central = (
        b"PK\x01\x02"
        + struct.pack("<BB", 20, 3)
        + common
        + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0o100644 << 16, 0)
        + name
    )
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    Path(path).write_bytes(local + body + central + eocd)
    return len(local) + len(body) + len(central) + len(eocd)
