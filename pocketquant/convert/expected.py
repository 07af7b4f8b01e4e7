"""Does a checkpoint hold exactly the tensors its config.json describes?

The expectation comes from transformers itself: the model class of the config is built on the
`meta` device (no memory, no weights) and its state dict lists every tensor name and shape the
config implies. A checkpoint whose tensors disagree (a missing layer, a missing tensor of one
layer, a wrong shape, an extra dimension, a 2-D norm, more layers in config.json than in the
files, tensors of a layer the config does not have) is refused naming the first tensor at fault,
before anything is written: llama.cpp could not load the GGUF it would give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketquant.convert.errors import ConversionError
from pocketquant.convert.source import SourceTensor


def expected_tensors(config: Any) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """(name -> shape of every parameter and persistent buffer, names that may be absent because
    they share storage with another tensor, e.g. a tied lm_head)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    tied: set[str] = set()
    if getattr(config, "tie_word_embeddings", False):
        tied_keys = getattr(model, "_tied_weights_keys", None) or {}
        tied = set(tied_keys if isinstance(tied_keys, dict) else tied_keys)
    return shapes, tied


def check_tensors_match_config(
    model_dir: Path,
    config: Any,
    tensors: dict[str, SourceTensor],
    ignored: tuple[str, ...] = (),
) -> None:
    """Raise ConversionError naming the first tensor that disagrees with config.json.

    ignored: name suffixes of checkpoint tensors nobody uses (the converter drops them)."""
    shapes, optional = expected_tensors(config)
    cfg = model_dir / "config.json"
    n_layers = getattr(config, "num_hidden_layers", None)
    for name, t in sorted(tensors.items(), key=lambda kv: _natural(kv[0])):
        if name.endswith(ignored):
            continue
        if name not in shapes:
            layer = _layer_of(name)
            if layer is not None and n_layers is not None and layer >= n_layers:
                raise ConversionError(
                    f"{t.file}: tensor {name!r} belongs to layer {layer}, but {cfg} says "
                    f"num_hidden_layers={n_layers}"
                )
            raise ConversionError(f"{t.file}: tensor {name!r} is not part of the model {cfg} describes")
        want = shapes[name]
        if t.shape != want:
            raise ConversionError(
                f"{t.file}: tensor {name!r} has shape {list(t.shape)}, but {cfg} implies {list(want)}"
            )
    missing = [n for n in shapes if n not in tensors and n not in optional]
    if missing:
        first = min(missing, key=_natural)
        layer = _layer_of(first)
        where = f" (layer {layer} of num_hidden_layers={n_layers})" if layer is not None else ""
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ConversionError(f"{model_dir}: tensor {first!r}{where} is missing from the checkpoint{more}")


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layers", "h", "blocks") and parts[i + 1].isdecimal():
            return int(parts[i + 1])
    return None


def _natural(name: str) -> tuple:
    """Sort key: layer numbers numerically (layer 2 before layer 10)."""
    return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in name.split("."))
