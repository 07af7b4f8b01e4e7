"""A safetensors file written one tensor at a time, byte-identical to safetensors.torch.save_file.

save_file needs every tensor in memory at once; a streamed model is written layer by layer instead.
safetensors puts the header (names, dtypes, shapes, offsets) first, in its own order: dtype from the
widest to the narrowest, then name. When all shapes are known in advance (`layout=`) each tensor is
written straight to its place; otherwise tensors are spilled to a scratch file beside the output and
copied into order at the end.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from pocketquant.layerwise.weights import SAFETENSORS_DTYPES, TORCH_DTYPES

# safetensors' Dtype enum order (Rust derive(Ord)); the header lists tensors from the highest down.
_DTYPE_RANK = {
    "BOOL": 0,
    "U8": 4,
    "I8": 5,
    "I16": 9,
    "F16": 11,
    "BF16": 12,
    "I32": 13,
    "F32": 15,
    "F64": 17,
    "I64": 18,
}
_COPY_CHUNK = 64 * 2**20


@dataclass(frozen=True)
class TensorSpec:
    dtype: str  # safetensors name: "F32", "BF16", "U8", ...
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = torch.empty((), dtype=TORCH_DTYPES[self.dtype]).element_size()
        for s in self.shape:
            n *= s
        return n


def spec_of(t: torch.Tensor) -> TensorSpec:
    return TensorSpec(SAFETENSORS_DTYPES[t.dtype], tuple(int(s) for s in t.shape))


def header_bytes(
    specs: dict[str, TensorSpec], metadata: dict[str, str] | None
) -> tuple[bytes, dict[str, int]]:
    """(8-byte size + padded JSON header, name -> data offset) in safetensors' order."""
    order = sorted(specs, key=lambda n: (-_DTYPE_RANK[specs[n].dtype], n))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offsets: dict[str, int] = {}
    pos = 0
    for name in order:
        s = specs[name]
        offsets[name] = pos
        header[name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [pos, pos + s.nbytes]}
        pos += s.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text, offsets


def _raw_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().contiguous()
    return memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


class SafetensorsWriter:
    """`with SafetensorsWriter(path) as w: w.write(name, tensor) ...`; the file appears on success.

    The caller writes to a temporary path of its own (pocketquant.atomic) for an atomic output."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        metadata: dict[str, str] | None = None,
        layout: dict[str, TensorSpec] | None = None,
    ):
        self.path = Path(path)
        self.metadata = metadata
        self.layout = layout
        self._written: dict[str, TensorSpec] = {}
        self._spill_at: dict[str, int] = {}
        if layout is not None:
            head, offsets = header_bytes(layout, metadata)
            self._data_start = len(head)
            self._offsets = offsets
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._file.write(head)
            self._file.truncate(len(head) + sum(s.nbytes for s in layout.values()))
        else:
            fd, spill = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".spill", dir=self.path.parent)
            self._spill = Path(spill)
            self._file = os.fdopen(fd, "wb")

    def write(self, name: str, tensor: torch.Tensor) -> None:
        self.write_pieces(name, [tensor])

    def write_pieces(self, name: str, pieces: Iterable[torch.Tensor]) -> None:
        """One tensor given as consecutive row slices (converted one slice at a time by the caller)."""
        if name in self._written:
            raise ValueError(f"{self.path}: tensor {name!r} written twice")
        if self.layout is not None:
            if name not in self.layout:
                raise ValueError(f"{self.path}: tensor {name!r} is not in the layout")
            self._file.seek(self._data_start + self._offsets[name])
        else:
            self._spill_at[name] = self._file.tell()
        spec: TensorSpec | None = None
        for piece in pieces:
            s = spec_of(piece)
            if spec is None:
                spec = s
            elif s.dtype != spec.dtype or s.shape[1:] != spec.shape[1:] or not s.shape:
                raise ValueError(f"{self.path}: slices of tensor {name!r} do not line up ({spec} + {s})")
            else:
                spec = TensorSpec(spec.dtype, (spec.shape[0] + s.shape[0], *spec.shape[1:]))
            self._file.write(_raw_bytes(piece))
        if spec is None:
            raise ValueError(f"{self.path}: tensor {name!r} has no data")
        if self.layout is not None and self.layout[name] != spec:
            raise ValueError(f"{self.path}: tensor {name!r} is {spec}, the layout says {self.layout[name]}")
        self._written[name] = spec

    def close(self) -> None:
        if self.layout is not None:
            self._file.close()
            missing = sorted(set(self.layout) - set(self._written))
            if missing:
                raise ValueError(f"{self.path}: tensors {missing[:3]} of the layout were never written")
            return
        self._file.close()
        try:
            head, offsets = header_bytes(self._written, self.metadata)
            with open(self.path, "wb") as out, open(self._spill, "rb") as spill:
                out.write(head)
                for name in sorted(offsets, key=offsets.__getitem__):
                    spill.seek(self._spill_at[name])
                    _copy_exactly(spill, out, self._written[name].nbytes)
        finally:
            self._spill.unlink(missing_ok=True)

    def abort(self) -> None:
        self._file.close()
        if self.layout is None:
            self._spill.unlink(missing_ok=True)

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _copy_exactly(src, dst, n: int) -> None:  # noqa: ANN001 - binary files
    left = n
    while left:
        chunk = src.read(min(left, _COPY_CHUNK))
        if not chunk:
            raise OSError("scratch file shorter than what was written to it")
        dst.write(chunk)
        left -= len(chunk)
