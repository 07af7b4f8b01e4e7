"""HF checkpoint directories: validation (is this a model family we can handle?) and
deterministic saving (same model -> byte-identical files, so DVC's cache can rely on them)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketquant.errors import ConfigError

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Files worth carrying from a source checkpoint; everything else (README, .git, optimizer state,
# original/ consolidated weights) is left behind.
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def read_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of `model_dir` as a dict; a ConfigError naming the directory when missing/bad."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {model_dir} does not exist (or is not a directory)")
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{model_dir} is not a Hugging Face model directory: config.json is missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config.json ({exc})") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: config.json is not a JSON object")
    return config


def weight_files(model_dir: Path) -> list[Path]:
    """Weight files of a checkpoint, safetensors preferred (sorted, so iteration order is stable)."""
    files = sorted(model_dir.glob("*.safetensors"))
    return files or sorted(model_dir.glob("pytorch_model*.bin"))


def supported_architectures() -> tuple[str, ...]:
    """HF architectures the native converter handles: the family registry's names."""
    from pocketquant.convert.families import native_architectures

    return native_architectures()


def validate_model_dir(
    model_dir: str | os.PathLike[str], *, need_tokenizer: bool = True, any_architecture: bool = False
) -> dict[str, Any]:
    """Check that `model_dir` holds a checkpoint we can handle; return its config.

    Errors name the directory and what is wrong with it (missing config.json, an architecture no
    native family converts, no weights, no tokenizer). any_architecture: skip the family check
    (llama.cpp's converter decides for itself)."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    archs = config.get("architectures") or []
    if not any_architecture:
        supported = supported_architectures()
        if not any(a in supported for a in archs):
            found = ", ".join(archs) or f"model_type={config.get('model_type')!r} (no 'architectures')"
            raise ConfigError(
                f"{model_dir / 'config.json'}: unsupported architecture {found} for the native converter "
                f"(native: {', '.join(supported)}); set convert.backend=llamacpp to convert it with "
                "llama.cpp's own converter"
            )
    if not weight_files(model_dir):
        raise ConfigError(f"{model_dir}: no weights found (*.safetensors or pytorch_model*.bin)")
    if need_tokenizer and not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(f"{model_dir}: no tokenizer found (tokenizer.json or tokenizer.model)")
    return config


def _normalize_json(path: Path) -> None:
    """Rewrite a JSON file with sorted keys and a trailing newline: stable bytes across runs."""
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


# Keys transformers writes that say how the files were made, not what the model is: the library
# version (a library upgrade would change the checkpoint's bytes and the hash of everything after
# it) and the flags the tokenizer happened to be loaded with. Nothing reads them back.
INCIDENTAL_KEYS: dict[str, tuple[str, ...]] = {
    "config.json": ("transformers_version",),
    "generation_config.json": ("transformers_version",),
    "tokenizer_config.json": ("is_local", "local_files_only"),
}


def drop_incidental_keys(out_dir: Path) -> None:
    """Remove INCIDENTAL_KEYS from an acquired checkpoint's JSON files, keeping their layout
    (sorted keys, 2-space indent, trailing newline: the files are already written that way)."""
    for name, keys in INCIDENTAL_KEYS.items():
        path = out_dir / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and any(k in data for k in keys):
            for k in keys:
                data.pop(k, None)
            path.write_text(
                json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
            )


def normalize_checkpoint_files(out_dir: Path) -> None:
    """Make the small JSON files of a saved checkpoint byte-stable and version-free.

    tokenizer.json is left alone: its key order is significant to nobody but is already written
    deterministically by `tokenizers`, and sorting would bloat the diff against upstream files."""
    for name in ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json"):
        path = out_dir / name
        if path.is_file():
            _normalize_json(path)
    drop_incidental_keys(out_dir)


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """save_pretrained model (one safetensors file) + tokenizer into `out_dir`, deterministically."""
    # One shard: the file list (and so the DVC hash) does not depend on a size threshold.
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="1000GB")
    tokenizer.save_pretrained(out_dir)
    normalize_checkpoint_files(out_dir)
