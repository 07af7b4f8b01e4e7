"""ctypes bindings to the llama.cpp that llama-cpp-python ships: the references we must match.

GGMLRef wraps `ggml_quantize_chunk` (the block quantizers, for the kernel); `llama_quantize` runs
`llama_model_quantize` (the whole llama-quantize pipeline, for pocketquant.quantize).

Used by tests and benchmarks only (never on the product path). The shared libraries live in
site-packages/llama_cpp/lib/; POCKETQUANT_LIBGGML_DIR overrides that directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
from pathlib import Path

import numpy as np

from pocketquant.gguf_file import GGMLType, type_size


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
        blck = type_size(GGMLType(t))[0]
        if n % blck != 0:
            raise ValueError(f"row length {n} is not a multiple of block size {blck}")
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


# --------------------------------------------------------------------------------------------
# llama_model_quantize: llama.cpp's own file-level quantizer (what the llama-quantize tool runs)
# --------------------------------------------------------------------------------------------

_KV_OVERRIDE_INT, _KV_OVERRIDE_STR = 0, 3  # enum llama_model_kv_override_type


def _llama_api():
    """llama-cpp-python's ctypes bindings of libllama (structs match the shipped library)."""
    import llama_cpp.llama_cpp as L

    return L


@contextlib.contextmanager
def _quiet_llama_logs(quiet: bool):
    """llama_model_quantize logs every tensor through llama-cpp-python's logger; show only errors
    for the duration of the call (the logger's previous level is restored afterwards)."""
    import logging

    from llama_cpp._logger import logger as log  # importing it installs the log callback

    before = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(before)


def llama_quantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    ftype: str,
    *,
    nthread: int = 2,
    imatrix=None,
    quiet: bool = True,
    **options: object,
) -> None:
    """Run llama.cpp's `llama_model_quantize` in-process, with the parameters llama-quantize's CLI
    would pass for the same options (including the quantize.imatrix.* KV overrides it adds).

    options: pocketquant.quantize.QuantizeOptions fields (pure=True, tensor_types=[(regex, type)]).

    imatrix: a pocketquant.imatrix.Imatrix (or a path); its normalized values are passed as the
    `imatrix` array of llama_model_quantize_params, exactly what llama-quantize builds.
    """
    from pocketquant.gguf_file import ggml_type_from_name
    from pocketquant.imatrix import Imatrix, load_imatrix
    from pocketquant.quantize.ftypes import parse_ftype
    from pocketquant.quantize.run import QuantizeOptions

    o = QuantizeOptions().with_changes(**options)
    pure, leave_output_tensor, allow_requantize = o.pure, o.leave_output_tensor, o.allow_requantize
    output_tensor_type, token_embedding_type = o.output_tensor_type, o.token_embedding_type
    tensor_types = [tuple(t.split("=", 1)) if isinstance(t, str) else t for t in o.tensor_types]
    L = _llama_api()
    ft = parse_ftype(ftype)
    params = L.llama_model_quantize_default_params()
    params.nthread = nthread
    params.ftype = ft.id
    params.allow_requantize = allow_requantize
    params.quantize_output_tensor = not leave_output_tensor
    params.pure = pure

    def type_id(t: object) -> int:
        return int(t) if isinstance(t, GGMLType) else int(ggml_type_from_name(str(t)))

    if output_tensor_type:
        params.output_tensor_type = type_id(output_tensor_type)
    if token_embedding_type:
        params.token_embedding_type = type_id(token_embedding_type)

    keep: list = []  # ctypes buffers that must outlive the call
    if tensor_types:
        arr = (L.llama_model_tensor_override * (len(tensor_types) + 1))()
        for i, (pattern, tname) in enumerate(tensor_types):
            arr[i].pattern = pattern.lower().encode()
            arr[i].type = type_id(tname)
        arr[len(tensor_types)].pattern = None
        arr[len(tensor_types)].type = 0
        params.tt_overrides = ctypes.cast(arr, ctypes.POINTER(L.llama_model_tensor_override))
        keep.append(arr)

    if imatrix is not None:
        im = imatrix if isinstance(imatrix, Imatrix) else load_imatrix(imatrix)
        names = list(im.entries)
        data = (L.llama_model_imatrix_data * (len(names) + 1))()
        for i, name in enumerate(names):
            v = np.ascontiguousarray(im.values(name), dtype=np.float32)
            keep.append(v)
            data[i].name = name.encode()
            data[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            data[i].size = v.size
        data[len(names)].name = None
        params.imatrix = ctypes.cast(data, ctypes.POINTER(L.llama_model_imatrix_data))
        keep.append(data)

        kvs: list[tuple[str, int, object]] = [("quantize.imatrix.file", _KV_OVERRIDE_STR, im.path or "")]
        if im.datasets:
            kvs.append(("quantize.imatrix.dataset", _KV_OVERRIDE_STR, im.datasets[0]))
        kvs.append(("quantize.imatrix.entries_count", _KV_OVERRIDE_INT, len(im.entries)))
        if im.chunk_count > 0:
            kvs.append(("quantize.imatrix.chunks_count", _KV_OVERRIDE_INT, im.chunk_count))
        ov = (L.llama_model_kv_override * (len(kvs) + 1))()
        for i, (key, tag, val) in enumerate(kvs):
            ov[i].tag = tag
            ov[i].key = key.encode()
            if tag == _KV_OVERRIDE_STR:
                ov[i].value.val_str = str(val).encode("utf-8", "surrogateescape")[:127]
            else:
                ov[i].value.val_i64 = int(val)
        ov[len(kvs)].key = b""
        params.kv_overrides = ctypes.cast(ov, ctypes.POINTER(L.llama_model_kv_override))
        keep.append(ov)

    with _quiet_llama_logs(quiet):
        rc = L.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    del keep
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, {ft.name}) failed with status {rc}")
