"""Size of a variant: bytes on disk, GiB, bits per weight, reduction vs the base model's BF16 size.

GiB throughout (2**30 bytes): the seeds' "6.00 -> 1.88 GB" for Llama 3.2 3B are GiB.
- GGUF: tensor types and byte counts from the file's tensor table (gguf package).
- HF dirs (the base, NF4): all files of the dir; for bitsandbytes 4-bit weights the original shape is
  read from each `*.quant_state.bitsandbytes__nf4` entry, and the packed weight plus its absmax /
  quant_map / nested statistics count as that tensor's bytes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from pocketquant.evaluate.errors import ModelLoadError

GIB = 1 << 30
_QUANT_STATE = ".quant_state.bitsandbytes__"


def _summary(
    file_bytes: int, n_params: int, q_bytes: int, q_elems: int, base_n_params: int | None, fmt: str
) -> dict:
    base = base_n_params or n_params
    bf16 = 2 * base
    return {
        "format": fmt,
        "bytes": file_bytes,
        "gib": file_bytes / GIB,
        "n_params": n_params,
        "bpw": 8.0 * file_bytes / base,
        "bpw_quantized": 8.0 * q_bytes / q_elems if q_elems else None,
        "quantized_params_pct": 100.0 * q_elems / n_params if n_params else 0.0,
        "bf16_bytes": bf16,
        "bf16_gib": bf16 / GIB,
        "reduction_vs_bf16_pct": 100.0 * (1.0 - file_bytes / bf16),
    }


def gguf_size(path: str | os.PathLike[str], base_n_params: int | None = None) -> dict:
    """Size of a GGUF file; `base_n_params` (the HF base's parameter count) sets the BF16 baseline."""
    import gguf

    path = Path(path)
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError/struct errors on corrupt files
        raise ModelLoadError(f"cannot read GGUF tensor table of {path}: {exc}") from exc
    float_types = {
        gguf.GGMLQuantizationType.F32,
        gguf.GGMLQuantizationType.F16,
        gguf.GGMLQuantizationType.BF16,
        gguf.GGMLQuantizationType.F64,
    }
    n_params = q_bytes = q_elems = 0
    types: dict[str, int] = {}
    for t in reader.tensors:
        n = int(t.n_elements)
        n_params += n
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        if t.tensor_type not in float_types:
            q_bytes += int(t.n_bytes)
            q_elems += n
    out = _summary(path.stat().st_size, n_params, q_bytes, q_elems, base_n_params, "gguf")
    out["tensor_types"] = dict(sorted(types.items()))
    return out


def _safetensors_header(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelLoadError(f"{path} is not a readable safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path} is not a readable safetensors file (bad header)")
    return header


def hf_dir_size(path: str | os.PathLike[str], base_n_params: int | None = None) -> dict:
    """Size of an HF checkpoint dir (full precision or bitsandbytes 4-bit): all files counted."""
    from safetensors import safe_open

    path = Path(path)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"no *.safetensors weights in {path}")
    file_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    n_params = q_bytes = q_elems = 0
    for st in files:
        header = {k: v for k, v in _safetensors_header(st).items() if k != "__metadata__"}
        nbytes = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()}
        quant_roots = {k.split(_QUANT_STATE)[0]: k for k in header if _QUANT_STATE in k}
        with safe_open(str(st), framework="numpy") as f:
            for root, state_key in quant_roots.items():
                state = json.loads(bytes(f.get_tensor(state_key).astype(np.uint8)))
                n = math.prod(state["shape"])
                q_elems += n
                n_params += n
                q_bytes += sum(b for k, b in nbytes.items() if k == root or k.startswith(root + "."))
        for k, v in header.items():
            if not any(k == r or k.startswith(r + ".") for r in quant_roots):
                n_params += math.prod(v["shape"])
    fmt = "hf-bnb-4bit" if q_elems else "hf"
    return _summary(file_bytes, n_params, q_bytes, q_elems, base_n_params, fmt)


def model_size(path: str | os.PathLike[str], base_n_params: int | None = None) -> dict:
    path = Path(path)
    if path.is_file():
        return gguf_size(path, base_n_params)
    if path.is_dir():
        return hf_dir_size(path, base_n_params)
    raise ModelLoadError(f"model not found: {path}")
