"""Which converter turns an HF checkpoint into GGUF: `native` (ours, one module per family) or
`llamacpp` (llama.cpp's own converter, for any other architecture it supports)."""

from __future__ import annotations

import os
from pathlib import Path

from pocketquant.convert.errors import ConversionError

BACKENDS = ("native", "llamacpp")
DEFAULT_BACKEND = "native"


def convert_model(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    outtype: str = "f16",
    *,
    name: str | None = None,
    backend: str = DEFAULT_BACKEND,
    progress: bool = True,
) -> Path:
    """Convert `model_dir` to a GGUF at `out_path` with the chosen backend (written atomically).
    Either backend first checks the checkpoint's files and hyperparameters and that the output is
    none of them (pocketquant.checkpoint_check): one named error, nothing written."""
    from pocketquant.checkpoint_check import preflight_convert

    preflight_convert(model_dir, out_path)
    if backend == "native":
        from pocketquant.convert.hf_to_gguf import convert_hf_to_gguf

        return convert_hf_to_gguf(model_dir, out_path, outtype, name=name, progress=progress)
    if backend == "llamacpp":
        from pocketquant.convert.llamacpp import convert_with_llamacpp

        return convert_with_llamacpp(model_dir, out_path, outtype, name=name)
    raise ConversionError(f"unknown convert backend {backend!r}; choose one of {', '.join(BACKENDS)}")
