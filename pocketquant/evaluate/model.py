"""Open a model in the engine made for it: a GGUF file in llama.cpp (the runtime it is made for), an
HF checkpoint dir (the full-precision base, NF4 4-bit dirs) in transformers."""

from __future__ import annotations

import os
from pathlib import Path

from pocketquant.evaluate.errors import ModelLoadError
from pocketquant.evaluate.language_model import LanguageModel, default_threads


def open_model(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    n_ctx: int = 512,
    max_resident_bytes: int | None = None,
) -> LanguageModel:
    """A GGUF file opens in llama.cpp, an HF checkpoint dir (config.json) in transformers.

    `max_resident_bytes`: a GGUF bigger than this is run one group of layers at a time
    (evaluate/layer_groups.py: same logits, no generation) where its architecture allows."""
    path = Path(path)
    threads = threads or default_threads()
    if path.is_file() and path.suffix == ".gguf":
        from pocketquant.evaluate.llamacpp import LlamaCppModel

        if max_resident_bytes is not None:
            from pocketquant.errors import PocketquantError
            from pocketquant.evaluate.layer_groups import LayerGroupedLlamaCpp, plan_groups
            from pocketquant.gguf_file import GGUFFile

            try:
                with GGUFFile(path) as f:
                    groups = plan_groups(f, max_resident_bytes)
            except PocketquantError:
                groups = None  # not a readable GGUF: llama.cpp says what is wrong with it below
            if groups is not None and len(groups) > 1:
                return LayerGroupedLlamaCpp(path, groups, n_ctx=n_ctx, threads=threads)
        return LlamaCppModel(path, n_ctx=n_ctx, threads=threads)
    if path.is_dir() and (path / "config.json").is_file():
        from pocketquant.evaluate.hf import TransformersModel

        return TransformersModel(path, threads=threads)
    if not path.exists():
        raise ModelLoadError(f"model not found: {path}")
    raise ModelLoadError(
        f"cannot evaluate {path}: expected a .gguf file or an HF checkpoint dir with config.json"
    )
