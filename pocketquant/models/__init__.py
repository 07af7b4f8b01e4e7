"""Model sources and HF checkpoints: acquire (embedded GGUF, local dir, hub id), validation."""

from pocketquant.models.acquire import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    ModelSource,
    acquire_model,
    embedded_gguf_path,
)
from pocketquant.models.checkpoint import supported_architectures, validate_model_dir

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "supported_architectures",
    "ModelSource",
    "acquire_model",
    "embedded_gguf_path",
    "validate_model_dir",
]
