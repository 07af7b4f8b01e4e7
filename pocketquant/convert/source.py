"""The tensors of an HF checkpoint, indexed from the safetensors headers and read in row ranges.

Handles one `model.safetensors`, or shards listed by `model.safetensors.index.json` (the index and
the shards must agree). Data is read with plain positioned reads (no memory map), a range of rows
at a time, so converting a model holds one chunk, not the model, in memory. Values come back as
llama.cpp's converter works on them: F16 stays F16, F32 stays F32, BF16 becomes F32 (exactly).
A non-finite value (NaN, Inf) is refused naming the tensor; it is found on the raw bits.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from pocketquant.convert.errors import ConversionError

# safetensors dtype -> (bytes per element, numpy dtype of its raw bits)
_DTYPES = {"F32": (4, np.dtype("<u4")), "F16": (2, np.dtype("<u2")), "BF16": (2, np.dtype("<u2"))}
FLOAT_DTYPES = tuple(_DTYPES)
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the checkpoint: its file, HF shape (row-major, PyTorch order), dtype and the
    absolute byte offset of its data in the file."""

    name: str
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name: F32, F16, BF16
    offset: int

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_elements(self) -> int:
        return math.prod(self.shape[1:]) if len(self.shape) > 1 else 1

    @property
    def itemsize(self) -> int:
        return _DTYPES[self.dtype][0]


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's safetensors files: the shards named by the index when there is one."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _weight_map(index)
        files = sorted({model_dir / str(f) for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConversionError(f"{index}: shard file(s) missing: {', '.join(missing)}")
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"{model_dir}: no *.safetensors weights (only safetensors checkpoints convert)")
    return files


def _weight_map(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConversionError(f"{index}: not a safetensors index ({exc})") from exc
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConversionError(f"{index}: 'weight_map' is empty or not an object")
    return weight_map


def read_header(path: Path) -> dict[str, SourceTensor]:
    """The tensors of one safetensors file, checked against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConversionError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise ConversionError(f"{path}: not a safetensors file (header length {n} in a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConversionError(f"{path}: corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: corrupt safetensors header (not an object)")
    base = 8 + n
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, (start, end) = entry["dtype"], entry["data_offsets"]
            shape = tuple(int(d) for d in entry["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConversionError(f"{path}: corrupt header entry for tensor {name!r}") from exc
        if dtype not in _DTYPES:
            raise ConversionError(
                f"{path}: tensor {name!r} has dtype {dtype}; only {', '.join(FLOAT_DTYPES)} checkpoints "
                "convert (dequantize a quantized checkpoint first)"
            )
        expected = math.prod(shape) * _DTYPES[dtype][0]
        if any(d < 0 for d in shape) or end - start != expected or not 0 <= start <= end <= size - base:
            raise ConversionError(
                f"{path}: tensor {name!r} (shape {list(shape)}, {dtype}) does not fit its data range "
                f"[{start}, {end}) of a {size}-byte file"
            )
        tensors[name] = SourceTensor(name, path, shape, dtype, base + start)
    return tensors


def index_checkpoint(model_dir: Path) -> dict[str, SourceTensor]:
    """name -> SourceTensor for every tensor of the checkpoint, from the safetensors headers only."""
    tensors: dict[str, SourceTensor] = {}
    for path in safetensors_files(model_dir):
        for name, t in read_header(path).items():
            if name in tensors:
                raise ConversionError(f"{path}: tensor {name!r} is also in {tensors[name].file.name}")
            tensors[name] = t
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        _check_index_agrees(index, tensors)
    return tensors


def _check_index_agrees(index: Path, tensors: dict[str, SourceTensor]) -> None:
    weight_map = _weight_map(index)
    for name, file in sorted(weight_map.items()):
        if name not in tensors:
            raise ConversionError(f"{index}: tensor {name!r} is listed for {file} but is not in it")
        if tensors[name].file.name != file:
            raise ConversionError(
                f"{index}: tensor {name!r} is listed for {file} but is in {tensors[name].file.name}"
            )
    extra = sorted(set(tensors) - set(weight_map))
    if extra:
        raise ConversionError(f"{index}: tensor {extra[0]!r} is in the shards but not in the index")


class CheckpointReader:
    """Open safetensors files for the duration of a conversion; reads row ranges of tensors."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._files: dict[Path, IO[bytes]] = {}
        # scratch buffers reused by every read: fresh multi-megabyte arrays per chunk would spend
        # more time in page faults than in the conversion
        self._buffers: dict[str, np.ndarray] = {}

    def _buffer(self, key: str, count: int, dtype: np.dtype) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.size < count or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty(count, dtype=dtype)
        return buf[:count]

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _file(self, path: Path) -> IO[bytes]:
        if path not in self._files:
            self._files[path] = self._stack.enter_context(open(path, "rb", buffering=0))  # noqa: SIM115
        return self._files[path]

    def read(self, t: SourceTensor, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of `t` (all by default) in the working dtype: float16 or float32.
        The array lives in a buffer the next read reuses."""
        stop = t.rows if stop is None else min(stop, t.rows)
        count = (stop - start) * t.row_elements
        raw = self._buffer("raw", count, _DTYPES[t.dtype][1])
        f = self._file(t.file)
        f.seek(t.offset + start * t.row_elements * t.itemsize)
        if f.readinto(memoryview(raw).cast("B")) != raw.nbytes:
            raise ConversionError(f"{t.file}: tensor {t.name!r} is truncated")
        bits = raw
        if t.dtype == "BF16":  # the upper half of a float32: widening is exact
            bits = self._buffer("widened", count, np.dtype(np.uint32))
            np.left_shift(raw, 16, out=bits, dtype=np.uint32)
        if _count_nonfinite(bits):
            raise ConversionError(f"{t.file}: tensor {t.name!r} contains NaN or Inf")
        shape = (stop - start, *t.shape[1:]) if t.shape else ()
        return bits.view(np.float16 if t.dtype == "F16" else np.float32).reshape(shape)


def _count_nonfinite(bits: np.ndarray) -> int:
    """Values whose exponent bits are all set (NaN, +-Inf) in float32 (uint32) or float16 (uint16)
    bits: the kernel's parallel test for float32, NumPy otherwise (or without the kernel)."""
    if bits.dtype == np.uint32:
        try:
            from pocketquant.quants import count_nonfinite
        except ImportError:
            pass
        else:
            return count_nonfinite(bits.view(np.float32))
    exponent = 0x7F800000 if bits.dtype == np.uint32 else 0x7C00
    return int(np.count_nonzero((bits & exponent) == exponent))
