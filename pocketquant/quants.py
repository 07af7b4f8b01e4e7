"""Public API of the quantization kernel: NumPy arrays in, GGUF block bytes out, and back.

Every other area goes through this module; the Cython extension `pocketquant._quants` (built
from kernels/) does the work with the GIL released, rows in parallel. Output bytes are identical
to llama.cpp's `ggml_quantize_chunk` and never depend on the thread count.
"""

from __future__ import annotations

import os

import numpy as np
from gguf import GGMLQuantizationType as QType

from pocketquant import _quants
from pocketquant.errors import QuantizationError
from pocketquant.gguf_file import type_size

__all__ = [
    "QType",
    "QUANTIZABLE",
    "KernelInputError",
    "block_info",
    "row_nbytes",
    "parse_qtype",
    "quantize",
    "dequantize",
    "count_nonfinite",
]

QUANTIZABLE: frozenset[QType] = frozenset(
    {
        QType.F32,
        QType.F16,
        QType.BF16,
        QType.Q8_0,
        QType.Q4_0,
        QType.Q4_1,
        QType.Q5_0,
        QType.Q5_1,
        QType.Q2_K,
        QType.Q3_K,
        QType.Q4_K,
        QType.Q5_K,
        QType.Q6_K,
    }
)

_CONVERSIONS = frozenset({QType.F32, QType.F16, QType.BF16})


class KernelInputError(QuantizationError, ValueError):
    """Bad arguments to quantize/dequantize. A ValueError for library callers, and a
    PocketquantError so the CLI reports it on one line with exit status 2."""


def parse_qtype(qtype: QType | int | str) -> QType:
    """A QType from a QType, its ggml id, or its name in any case ("q4_k")."""
    if isinstance(qtype, QType):
        t = qtype
    elif isinstance(qtype, str):
        try:
            t = QType[qtype.strip().upper()]
        except KeyError:
            raise KernelInputError(f"unknown tensor type {qtype!r}; valid: {_valid_names()}") from None
    elif isinstance(qtype, (int, np.integer)):
        try:
            t = QType(int(qtype))
        except ValueError:
            raise KernelInputError(f"unknown ggml type id {qtype}; valid: {_valid_names()}") from None
    else:
        raise KernelInputError(f"tensor type must be a QType, int or str, not {type(qtype).__name__}")
    if t not in QUANTIZABLE:
        raise KernelInputError(f"type {t.name} is not supported by the kernel; valid: {_valid_names()}")
    return t


def _valid_names() -> str:
    return ", ".join(t.name for t in sorted(QUANTIZABLE, key=int))


def block_info(qtype: QType | int | str) -> tuple[int, int]:
    """(elements per block, bytes per block), from the gguf package's table (gguf_file.type_size)."""
    return type_size(parse_qtype(qtype))


def row_nbytes(qtype: QType | int | str, n_per_row: int) -> int:
    """Bytes of one encoded row of n_per_row values (which must be a whole number of blocks)."""
    t = parse_qtype(qtype)
    blck, size = type_size(t)
    if n_per_row % blck != 0:
        raise KernelInputError(f"row length {n_per_row} is not a multiple of the {t.name} block size {blck}")
    return n_per_row // blck * size


# GNU OpenMP (libgomp) is not fork-safe: a child forked after the parent ran a parallel region
# hangs in its first one. A forked child therefore runs the kernel on its own thread (same bytes);
# processes started fresh (subprocess, DVC stages) are unaffected.
_omp_started = False
_forked_after_omp = False


def _after_fork_in_child() -> None:
    global _forked_after_omp
    _forked_after_omp = _omp_started


os.register_at_fork(after_in_child=_after_fork_in_child)


def _threads(threads: int | None) -> int:
    global _omp_started
    if threads is None:
        threads = os.cpu_count() or 1
    elif threads < 1:
        raise KernelInputError(f"threads must be >= 1, got {threads}")
    if _forked_after_omp:
        return 1
    if threads > 1:
        _omp_started = True
    return int(threads)


def quantize(
    x: np.ndarray,
    qtype: QType | int | str,
    *,
    imatrix: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Encode float rows (shape (..., n_per_row)) as `qtype`; returns uint8 (..., row_nbytes).

    imatrix: optional importance weights, one per column (n_per_row values), applied to every
    row, as llama-quantize does. It is ignored for Q8_0 and the F32/F16/BF16 conversions.
    """
    t = parse_qtype(qtype)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise KernelInputError(f"quantize needs a floating-point array, got dtype {x.dtype}")
    if x.ndim == 0:
        raise KernelInputError("quantize needs at least one dimension (the row)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[-1]
    nbytes = row_nbytes(t, n)
    out_shape = x.shape[:-1] + (nbytes,)
    nt = _threads(threads)
    if t in _CONVERSIONS:
        out = np.empty(out_shape, dtype=np.uint8)
        _quants.convert_flat(int(t), x.reshape(-1), out.reshape(-1), nt)
        return out
    qw = None
    if imatrix is not None:
        qw = np.ascontiguousarray(imatrix, dtype=np.float32)
        if qw.ndim != 1 or qw.shape[0] != n:
            raise KernelInputError(
                f"imatrix has shape {tuple(np.shape(imatrix))}, expected ({n},): one weight per column"
            )
    out = np.empty(out_shape, dtype=np.uint8)
    _quants.quantize_rows(int(t), x.reshape(-1, n), out.reshape(-1, nbytes), qw, nt)
    return out


def dequantize(
    data: np.ndarray, qtype: QType | int | str, n_per_row: int, *, threads: int | None = None
) -> np.ndarray:
    """Decode `qtype` bytes back to float32 of shape (..., n_per_row).

    data: uint8 with last dimension row_nbytes, or a flat buffer holding whole rows.
    """
    t = parse_qtype(qtype)
    if n_per_row < 1:
        raise KernelInputError(f"n_per_row must be >= 1, got {n_per_row}")
    nbytes = row_nbytes(t, n_per_row)
    data = np.ascontiguousarray(data)
    if data.dtype != np.uint8:
        # e.g. an F16 tensor handed over as float16: reinterpret the bytes, keeping the rows
        data = data.reshape(-1).view(np.uint8) if data.ndim == 0 else data.view(np.uint8)
    if data.ndim >= 1 and data.shape[-1] == nbytes:
        lead = data.shape[:-1]
    elif data.size % nbytes == 0:
        lead = (data.size // nbytes,)
    else:
        raise KernelInputError(
            f"{data.size} bytes are not a whole number of {t.name} rows of {n_per_row} values "
            f"({nbytes} bytes each)"
        )
    out = np.empty(lead + (n_per_row,), dtype=np.float32)
    _quants.dequantize_rows(int(t), data.reshape(-1, nbytes), out.reshape(-1, n_per_row), _threads(threads))
    return out


def count_nonfinite(x: np.ndarray, threads: int | None = None) -> int:
    """Number of NaN and +-Inf values (a parallel bit test for float32; NumPy for other dtypes)."""
    x = np.asarray(x)
    if x.dtype == np.float32:
        return int(_quants.count_nonfinite(np.ascontiguousarray(x).reshape(-1), _threads(threads)))
    if x.dtype.kind == "f":
        return int(x.size - np.count_nonzero(np.isfinite(x)))
    return 0
