"""ctypes binding to the libggml that llama-cpp-python ships: the reference our kernel must match.

Used by tests and benchmarks only (never on the product path). The shared libraries live in
site-packages/llama_cpp/lib/; POCKETQUANT_LIBGGML_DIR overrides that directory.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path

import numpy as np

# (elements per block, bytes per block) of the types the reference is asked about
_BLOCKS = {
    0: (1, 4),
    1: (1, 2),
    30: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
}


def lib_dir() -> Path | None:
    """Directory holding libggml-base.so, or None when llama-cpp-python is not installed."""
    override = os.environ.get("POCKETQUANT_LIBGGML_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "lib"
        if any(d.glob("libggml-base.*")):
            return d
    return None


def available() -> bool:
    return lib_dir() is not None


def _find(d: Path, stem: str) -> Path:
    for name in (f"{stem}.so", f"{stem}.dylib", f"{stem}.dll"):
        if (d / name).exists():
            return d / name
    matches = sorted(d.glob(f"{stem}.*"))
    if not matches:
        raise FileNotFoundError(f"{stem} not found in {d}")
    return matches[0]


class GGMLRef:
    """llama.cpp's quantizers through `ggml_quantize_chunk` (libggml-base)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        d = Path(directory) if directory is not None else lib_dir()
        if d is None:
            raise FileNotFoundError("llama-cpp-python (llama_cpp/lib/libggml-base.so) is not installed")
        self.path = _find(d, "libggml-base")
        self._lib = ctypes.CDLL(str(self.path), mode=ctypes.RTLD_GLOBAL)
        f = self._lib.ggml_quantize_chunk
        f.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        f.restype = ctypes.c_size_t
        self._lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        self._lib.ggml_row_size.restype = ctypes.c_size_t
        self._lib.ggml_quantize_init.argtypes = [ctypes.c_int]
        self._lib.ggml_quantize_init.restype = None

    def row_size(self, qtype: int, n_per_row: int) -> int:
        return int(self._lib.ggml_row_size(int(qtype), int(n_per_row)))

    def quantize_chunk(self, qtype: int, x2d: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
        """Quantize a 2-D float32 array row by row; returns uint8 of shape (rows, row_size)."""
        t = int(qtype)
        x = np.ascontiguousarray(x2d, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D array, got shape {x.shape}")
        nrows, n = x.shape
        if t in _BLOCKS and n % _BLOCKS[t][0] != 0:
            raise ValueError(f"row length {n} is not a multiple of block size {_BLOCKS[t][0]}")
        qw = None
        if imatrix is not None:
            qw = np.ascontiguousarray(imatrix, dtype=np.float32)
            if qw.shape != (n,):
                raise ValueError(f"imatrix shape {qw.shape} != ({n},)")
        rs = self.row_size(t, n)
        out = np.zeros((nrows, rs), dtype=np.uint8)
        if nrows:
            self._lib.ggml_quantize_init(t)
            got = self._lib.ggml_quantize_chunk(
                t, x.ctypes.data, out.ctypes.data, 0, nrows, n, None if qw is None else qw.ctypes.data
            )
            if got != nrows * rs:
                raise RuntimeError(f"ggml_quantize_chunk wrote {got} bytes, expected {nrows * rs}")
        return out
