"""Importance matrices in llama.cpp's formats: read GGUF and legacy `.dat`, write GGUF.

GGUF format (llama-imatrix's default): per weight `<name>.in_sum2` (F32, shape [ne0, n_mat]: sums of
squared activations per column) and `<name>.counts` (F32, shape [1, n_mat]: rows seen per matrix),
KVs `general.type = "imatrix"`, `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`.
Legacy `.dat`: int32 entry count, then per entry name, ncall, nval and nval floats that already hold
mean*ncall; optionally the chunk count and the dataset name at the end.

The values handed to the kernel are in_sum2 / counts per matrix (1.0 where a count is 0), computed in
float32 exactly as llama-quantize's loader does.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pocketquant.errors import GGUFFormatError, ImatrixError
from pocketquant.gguf_file import KV, GGMLType, GGUFFile, GGUFValueType, TensorInfo, create_gguf
from pocketquant.inputs import open_regular, read_input_bytes

SUMS_SUFFIX = ".in_sum2"
COUNTS_SUFFIX = ".counts"
KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"


@dataclass
class ImatrixEntry:
    sums: np.ndarray  # float32, shape (n_mat, ne0)
    counts: np.ndarray  # float32 (GGUF: rows per matrix) or int (legacy: [ncall]), shape (n_mat,) / (1,)

    @property
    def n_mat(self) -> int:
        return self.sums.shape[0]

    @property
    def ne0(self) -> int:
        return self.sums.shape[1]


@dataclass
class Imatrix:
    entries: dict[str, ImatrixEntry]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    is_legacy: bool = False
    path: str | None = None  # as given by the user (llama-quantize records it like that)

    def values(self, name: str) -> np.ndarray:
        """The importance weights for weight `name`: float32, length n_mat*ne0."""
        e = self.entries[name]
        where = f"{self.path or 'imatrix'}: entry {name!r}"
        if self.is_legacy:
            ncall = int(e.counts[0]) if e.counts.size else 0
            out = e.sums.reshape(-1) / np.float32(ncall) if ncall > 0 else e.sums.reshape(-1).copy()
        else:
            # counts are rounded to integers (std::lround) before the float32 division
            c = e.counts.astype(np.float64)
            c = (np.sign(c) * np.floor(np.abs(c) + 0.5)).astype(np.float32)
            out = np.ones_like(e.sums)
            pos = c > 0
            out[pos] = e.sums[pos] / c[pos, None]
            out = out.reshape(-1)
        out = out.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            raise ImatrixError(f"{where} contains non-finite values")
        return out

    def for_tensor(self, name: str, ne0: int, n_mat: int) -> np.ndarray | None:
        """Weights for a tensor with rows of ne0 and n_mat matrices; None if there is no entry;
        ImatrixError if the entry has the wrong length."""
        if name not in self.entries:
            return None
        v = self.values(name)
        if v.size != ne0 * n_mat:
            raise ImatrixError(
                f"{self.path or 'imatrix'}: entry {name!r} has {v.size} values, but the tensor needs "
                f"{ne0 * n_mat} ({n_mat} x {ne0})"
            )
        return v


def load_imatrix(path: str | os.PathLike[str]) -> Imatrix:
    """Read an imatrix in GGUF or legacy .dat format (detected by the GGUF magic)."""
    p = Path(path)
    fd = open_regular(p, "imatrix", ImatrixError)  # a FIFO or directory is refused, never waited on
    try:
        magic = os.pread(fd, 4, 0)
    except OSError as exc:
        raise ImatrixError(f"{p}: cannot read imatrix: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    im = _load_gguf(p) if magic == b"GGUF" else _load_legacy(p)
    im.path = os.fspath(path)
    if not im.entries:
        raise ImatrixError(f"{p}: imatrix has no entries")
    return im


def _load_gguf(p: Path) -> Imatrix:
    try:
        f = GGUFFile(p)
    except GGUFFormatError as exc:
        raise ImatrixError(f"not a valid imatrix: {exc}") from None
    with f:
        missing = [k for k in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE) if k not in f.kv]
        if missing:
            raise ImatrixError(f"{p}: missing imatrix metadata {', '.join(missing)} (not an imatrix file?)")
        ds = f.kv[KEY_DATASETS]
        datasets = list(ds.value) if ds.array_type == GGUFValueType.STRING else []
        pairs: dict[str, list[TensorInfo | None]] = {}
        for t in f.tensors:
            for i, suffix in enumerate((SUMS_SUFFIX, COUNTS_SUFFIX)):
                if t.name.endswith(suffix):
                    pairs.setdefault(t.name[: -len(suffix)], [None, None])[i] = t
        entries: dict[str, ImatrixEntry] = {}
        for name in sorted(pairs):
            sums_t, counts_t = pairs[name]
            if sums_t is None or counts_t is None:
                raise ImatrixError(f"{p}: entry {name!r} has {'no sums' if sums_t is None else 'no counts'}")
            for t in (sums_t, counts_t):
                if t.type != GGMLType.F32:
                    raise ImatrixError(f"{p}: tensor {t.name!r} must be F32, is {t.type.name}")
            sums = f.read_tensor(sums_t).view(np.float32)
            counts = f.read_tensor(counts_t).view(np.float32)
            if counts.size == 0 or sums.size % counts.size:
                raise ImatrixError(
                    f"{p}: entry {name!r}: {sums.size} sums do not split into {counts.size} matrices"
                )
            entries[name] = ImatrixEntry(sums.reshape(counts.size, -1), counts)
        return Imatrix(
            entries,
            datasets=datasets,
            chunk_count=int(f.get(KEY_CHUNK_COUNT) or 0),
            chunk_size=int(f.get(KEY_CHUNK_SIZE) or 0),
        )


def _load_legacy(p: Path) -> Imatrix:
    data = read_input_bytes(p, "imatrix", max_bytes=1 << 30, error=ImatrixError)
    pos = 0

    def take(fmt: str, what: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(data):
            raise ImatrixError(f"{p}: not an imatrix (GGUF or legacy .dat): truncated while reading {what}")
        v = struct.unpack_from(fmt, data, pos)
        pos += n
        return v

    (n_entries,) = take("<i", "the entry count")
    if n_entries < 1 or n_entries > len(data) // 12:
        raise ImatrixError(f"{p}: not an imatrix (GGUF or legacy .dat): bad entry count {n_entries}")
    entries: dict[str, ImatrixEntry] = {}
    for i in range(n_entries):
        (ln,) = take("<i", f"the name length of entry {i}")
        if ln < 0 or pos + ln > len(data):
            raise ImatrixError(f"{p}: corrupt legacy imatrix: bad name length {ln} for entry {i}")
        name = data[pos : pos + ln].decode("utf-8", "surrogateescape")
        pos += ln
        ncall, nval = take("<ii", f"the sizes of entry {name!r}")
        if nval < 1 or pos + 4 * nval > len(data):
            raise ImatrixError(f"{p}: corrupt legacy imatrix: bad value count {nval} for entry {name!r}")
        sums = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        entries[name] = ImatrixEntry(sums.reshape(1, -1), np.array([ncall], dtype=np.int64))
    chunk_count, datasets = 0, []
    if pos + 4 <= len(data):
        (chunk_count,) = take("<i", "the chunk count")
        if pos + 4 <= len(data):
            (ln,) = take("<i", "the dataset name length")
            if 0 < ln <= len(data) - pos:
                datasets.append(data[pos : pos + ln].decode("utf-8", "surrogateescape"))
    return Imatrix(entries, datasets=datasets, chunk_count=chunk_count, chunk_size=0, is_legacy=True)


def save_imatrix(
    path: str | os.PathLike[str],
    sums: dict[str, np.ndarray],
    counts: dict[str, np.ndarray | Iterable[float] | float],
    *,
    datasets: Iterable[str] = (),
    chunk_count: int = 0,
    chunk_size: int = 0,
) -> None:
    """Write an imatrix in llama-imatrix's GGUF layout (names sorted, as llama-imatrix does).

    sums[name]: squared-activation sums, shape (n_mat, ne0) or (ne0,); counts[name]: rows seen per
    matrix, shape (n_mat,) or a scalar.
    """
    kvs = {
        "general.type": KV.string("imatrix"),
        KEY_DATASETS: KV.strings(datasets),
        KEY_CHUNK_COUNT: KV.u32(chunk_count),
        KEY_CHUNK_SIZE: KV.u32(chunk_size),
    }
    tensors: list[TensorInfo] = []
    blobs: list[np.ndarray] = []
    for name in sorted(sums):
        s = np.asarray(sums[name], dtype=np.float32)
        s = s.reshape(1, -1) if s.ndim == 1 else s
        c = np.asarray(counts[name], dtype=np.float32).reshape(-1)
        if s.ndim != 2 or c.size != s.shape[0]:
            raise ImatrixError(f"imatrix entry {name!r}: {c.size} counts for {s.shape[0]} matrices")
        if not (np.isfinite(s).all() and np.isfinite(c).all()):
            raise ImatrixError(f"imatrix entry {name!r} contains non-finite values")
        tensors.append(TensorInfo(name + SUMS_SUFFIX, (s.shape[1], s.shape[0]), GGMLType.F32))
        tensors.append(TensorInfo(name + COUNTS_SUFFIX, (1, c.size), GGMLType.F32))
        blobs += [np.ascontiguousarray(s), np.ascontiguousarray(c)]
    if not tensors:
        raise ImatrixError("refusing to write an imatrix with no entries")
    with create_gguf(path, kvs, tensors) as w:
        for b in blobs:
            w.write(b)
