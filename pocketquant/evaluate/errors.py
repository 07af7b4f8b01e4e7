"""Named evaluation errors (all EvaluationError, so the CLI exits 2 with the message)."""

from pocketquant.errors import EvaluationError


class CorpusError(EvaluationError):
    """The corpus is missing, unreadable, or too short for one chunk."""


class ModelLoadError(EvaluationError):
    """A model or variant file cannot be loaded by its engine."""


class TokenizerMismatchError(EvaluationError):
    """A variant tokenizes the corpus differently from the base model (or has another vocabulary)."""


class ReferenceMismatchError(EvaluationError):
    """The base reference was computed on another corpus, setting or base model than the one asked for."""
