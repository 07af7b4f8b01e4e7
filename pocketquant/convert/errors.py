"""Errors of the HF -> GGUF converter."""

from pocketquant.errors import ConfigError


class ConversionError(ConfigError):
    """The checkpoint cannot be converted (unexpected tensor, unsupported tokenizer or rope type)."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (for errors that quote a library's multi-line text)."""
    return " ".join(str(exc).split()) or type(exc).__name__
