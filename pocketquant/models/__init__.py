"""Model sources and HF checkpoints: acquire (embedded GGUF, local dir, hub id), validation,
tiny test models."""

from pocketquant.models.acquire import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    ModelSource,
    acquire_model,
    embedded_gguf_path,
)
from pocketquant.models.checkpoint import SUPPORTED_ARCHITECTURES, validate_model_dir
from pocketquant.models.tiny import build_tiny_llama

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "SUPPORTED_ARCHITECTURES",
    "ModelSource",
    "acquire_model",
    "build_tiny_llama",
    "embedded_gguf_path",
    "validate_model_dir",
]
