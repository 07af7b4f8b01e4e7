"""Tensor rows to float32 and back, for any type we read or write.

F32/F16/BF16 are exact NumPy bit operations (what ggml's row converters do); block types go through
the Cython kernel (pocketquant.quants), imported lazily so `--help` and dry runs stay fast.
"""

from __future__ import annotations

import numpy as np

from pocketquant.errors import QuantizationError
from pocketquant.gguf_file import GGMLType, type_size

_T = GGMLType


def _kernel():
    from pocketquant import quants

    return quants


def _qtype(t: GGMLType):
    q = _kernel()
    try:
        return q.QType[t.name]
    except KeyError:
        raise QuantizationError(f"the kernel has no {t.name} support") from None


def to_float32(raw: np.ndarray, src: GGMLType, n_per_row: int, threads: int | None) -> np.ndarray:
    """Rows of `src`-typed bytes -> float32 array of shape (rows, n_per_row)."""
    raw = np.ascontiguousarray(raw).reshape(-1)
    if src == _T.F32:
        return raw.view(np.float32).reshape(-1, n_per_row)
    if src == _T.F16:
        return raw.view(np.float16).astype(np.float32).reshape(-1, n_per_row)
    if src == _T.BF16:
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(-1, n_per_row)
    blck, size = type_size(src)
    rows = raw.size // (n_per_row // blck * size)
    q = _kernel()
    return q.dequantize(raw.reshape(rows, -1), _qtype(src), n_per_row, threads=threads)


def fp32_to_bf16(x: np.ndarray) -> np.ndarray:
    """ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet (no subnormal flush)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 64).astype(np.uint16)
    return rounded


def from_float32(x: np.ndarray, dst: GGMLType, imatrix: np.ndarray | None, threads: int | None) -> np.ndarray:
    """float32 rows (rows, n_per_row) -> the bytes of `dst`, shape (rows, row_nbytes)."""
    rows = x.shape[0]
    if dst == _T.F32:
        return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8).reshape(rows, -1)
    if dst == _T.F16:
        # IEEE round-to-nearest-even, as ggml_fp32_to_fp16_row
        return x.astype(np.float16).view(np.uint8).reshape(rows, -1)
    if dst == _T.BF16:
        return fp32_to_bf16(x).view(np.uint8).reshape(rows, -1)
    q = _kernel()
    return q.quantize(
        np.ascontiguousarray(x, dtype=np.float32), _qtype(dst), imatrix=imatrix, threads=threads
    )


def count_nonfinite(x: np.ndarray) -> int:
    # one thread: the scan is memory-bound, and a thread team per slab costs more than it saves
    return int(_kernel().count_nonfinite(x, threads=1))
