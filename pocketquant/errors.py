"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

import errno


class PocketquantError(Exception):
    """Base class: bad input or a failed check, with a message naming the file, tensor or key."""


class GGUFFormatError(PocketquantError):
    """A file is not GGUF, is truncated, or has a corrupt header or tensor table."""


class QuantizationError(PocketquantError):
    """A tensor cannot be quantized as asked (NaN/Inf, unknown type, requantization refused)."""


class ImatrixError(PocketquantError):
    """An importance matrix is unreadable or does not fit the model."""


class ConfigError(PocketquantError):
    """A configuration value or model source is invalid."""


class EvaluationError(PocketquantError):
    """An evaluation cannot be run on the given inputs."""


class PackageError(PocketquantError):
    """A package is incomplete or fails verification."""


class InputError(PocketquantError):
    """An input path cannot be read as asked (missing, a directory, a FIFO or device, unreadable)."""


class OutputError(PocketquantError):
    """An output cannot be written (a directory in the way, no permission, disk full, would
    overwrite an input)."""


class HparamsError(ConfigError):
    """Model hyperparameters (GGUF metadata or config.json) that llama.cpp would refuse."""


def os_reason(exc: OSError) -> str:
    """The reason part of an OSError's message, worded for a user ("disk full" said outright)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device (disk full)"
    return exc.strerror or str(exc) or type(exc).__name__
