"""Tensors of a safetensors checkpoint, read one at a time (or a few rows of one) on demand.

Plain positioned reads, no memory map: the process holds exactly the tensors it asked for, and a
tensor read, converted and dropped leaves nothing resident (a mapped 6 GB checkpoint would count its
touched pages in the reader's RSS until unmapped). Works for one `model.safetensors` and for shards
listed in `model.safetensors.index.json`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pocketquant.errors import ConfigError

# safetensors dtype names -> torch dtypes (the ones checkpoints and our outputs use).
TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I32": torch.int32,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
}
SAFETENSORS_DTYPES = {v: k for k, v in TORCH_DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # safetensors' own limit


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes lie: file, dtype name, shape and absolute [start, end) offsets."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (one index along the first dimension)."""
        return (self.end - self.start) // self.shape[0] if self.shape and self.shape[0] else 0


def read_header(path: Path) -> tuple[dict, int]:
    """(header JSON, offset of the data section) of a safetensors file; ConfigError naming it if bad."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ConfigError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER:
                raise ConfigError(f"{path}: not a safetensors file (header size {n} is implausible)")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: the safetensors header is not a JSON object")
    return header, 8 + n


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the shards its index names, or every *.safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{index}: not a safetensors index (no weight_map): {exc}") from exc
        return [model_dir / n for n in sorted(set(weight_map.values()))]
    return sorted(model_dir.glob("*.safetensors"))


class CheckpointWeights:
    """Name -> tensor reader over the safetensors files of an HF checkpoint directory."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.model_dir = Path(model_dir)
        files = checkpoint_files(self.model_dir)
        if not files:
            raise ConfigError(f"{self.model_dir}: no .safetensors weights")
        self.entries: dict[str, TensorEntry] = {}
        for path in files:
            if not path.is_file():
                raise ConfigError(f"{path}: listed in the checkpoint's index but missing")
            header, data_start = read_header(path)
            size = path.stat().st_size
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                try:
                    begin, end = (int(x) for x in info["data_offsets"])
                    entry = TensorEntry(
                        name, path, str(info["dtype"]), tuple(int(s) for s in info["shape"]),
                        data_start + begin, data_start + end,
                    )  # fmt: skip
                except (KeyError, TypeError, ValueError) as exc:
                    raise ConfigError(f"{path}: tensor {name!r} has a malformed header entry") from exc
                if entry.dtype not in TORCH_DTYPES:
                    raise ConfigError(f"{path}: tensor {name!r} has unsupported dtype {entry.dtype}")
                if entry.end > size or entry.start > entry.end:
                    raise ConfigError(f"{path}: tensor {name!r} lies past the end of the file (truncated?)")
                self.entries[name] = entry

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))

    def entry(self, name: str) -> TensorEntry:
        if name not in self.entries:
            raise ConfigError(f"{self.model_dir}: tensor {name!r} not found in the checkpoint's safetensors")
        return self.entries[name]

    def _read_bytes(self, entry: TensorEntry, start: int, n: int) -> bytearray:
        buf = bytearray(n)
        with open(entry.file, "rb", buffering=0) as f:
            got = os.preadv(f.fileno(), [buf], start) if n else 0
        if got != n:
            raise ConfigError(f"{entry.file}: tensor {entry.name!r} is truncated")
        return buf

    @staticmethod
    def _as_tensor(buf: bytearray, entry: TensorEntry, shape: tuple[int, ...], dtype: torch.dtype | None):
        t = torch.frombuffer(buf, dtype=entry.torch_dtype) if buf else torch.empty(0, dtype=entry.torch_dtype)
        t = t.reshape(shape)
        return t if dtype is None or dtype == t.dtype else t.to(dtype)

    def read(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The whole tensor (in `dtype` if given: bf16/f16 -> f32 is exact)."""
        e = self.entry(name)
        return self._as_tensor(self._read_bytes(e, e.start, e.end - e.start), e, e.shape, dtype)

    def read_rows(self, name: str, start: int, stop: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Rows [start, stop) along the first dimension (a vocabulary slice of an output matrix)."""
        e = self.entry(name)
        stop = min(stop, e.shape[0])
        n = max(0, stop - start)
        buf = self._read_bytes(e, e.start + start * e.row_bytes, n * e.row_bytes)
        return self._as_tensor(buf, e, (n, *e.shape[1:]), dtype)

    def read_row_set(self, name: str, rows: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The given rows (e.g. the embeddings of the tokens a corpus uses), in the order given."""
        e = self.entry(name)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= e.shape[0]):
            raise ConfigError(f"{self.model_dir}: row {int(rows.max())} is outside tensor {name!r} {e.shape}")
        out = torch.empty((len(rows), *e.shape[1:]), dtype=dtype or e.torch_dtype)
        with open(e.file, "rb", buffering=0) as f:
            for i, r in enumerate(rows.tolist()):
                buf = bytearray(e.row_bytes)
                if os.preadv(f.fileno(), [buf], e.start + r * e.row_bytes) != e.row_bytes:
                    raise ConfigError(f"{e.file}: tensor {name!r} is truncated")
                out[i] = torch.frombuffer(buf, dtype=e.torch_dtype).reshape(e.shape[1:])
        return out
