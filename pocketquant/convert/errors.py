"""Errors of the HF -> GGUF converter."""

from pocketquant.errors import ConfigError


class ConversionError(ConfigError):
    """The checkpoint cannot be converted (unexpected tensor, unsupported tokenizer or rope type)."""
