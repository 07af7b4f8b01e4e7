"""Cut a corpus into perplexity chunks the way llama.cpp's `perplexity()` does.

llama.cpp (tools/perplexity/perplexity.cpp): tokens = tokenize(whole text, add_special=true), so BOS
leads the text when the vocab's add_bos flag is set; n_chunk_max = n_tokens / n_ctx; chunk i is
tokens[i*n_ctx:(i+1)*n_ctx] with its first token replaced by BOS (again only when add_bos); the
logits at positions first = n_ctx/2 .. n_ctx-2 score the next tokens, i.e. n_ctx - 1 - first
tokens per chunk (255 of 512).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.errors import CorpusError

# Tokenizers see a prefix of a long corpus: enough characters for the tokens we need plus a margin,
# cut at a line break. Pre-tokenization never looks further than a few characters ahead, so the first
# tokens of a prefix are the first tokens of the whole text; the margin keeps the cut far away.
_CHARS_PER_TOKEN_GUESS = 6
_MARGIN_TOKENS = 64


@dataclass(frozen=True)
class Chunks:
    """Token chunks ready for the model, plus which positions are scored."""

    tokens: np.ndarray  # int32 [n_chunks, n_ctx], BOS already in column 0 when add_bos
    targets: np.ndarray  # int32 [n_chunks, n_scored]: the scored next tokens (original text tokens)
    n_ctx: int
    first: int  # first logit row scored (n_ctx // 2)
    add_bos: bool
    bos_id: int | None

    @property
    def n_chunks(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_scored(self) -> int:
        return self.n_ctx - 1 - self.first

    @property
    def n_tokens_scored(self) -> int:
        return self.n_chunks * self.n_scored


def tokenize_for_chunks(
    tokenize: Callable[[str], list[int]], text: str, n_tokens_needed: int | None
) -> np.ndarray:
    """Token ids of `text` (as `tokenize` makes them, BOS included when the model adds one).
    With `n_tokens_needed`, only a long-enough prefix of the text is tokenized (same first ids)."""
    if n_tokens_needed is None:
        return np.asarray(tokenize(text), dtype=np.int32)
    limit = (n_tokens_needed + _MARGIN_TOKENS) * _CHARS_PER_TOKEN_GUESS
    while True:
        if limit >= len(text):
            return np.asarray(tokenize(text), dtype=np.int32)
        cut = text.rfind("\n", 0, limit)
        cut = limit if cut <= 0 else cut
        ids = tokenize(text[:cut])
        if len(ids) >= n_tokens_needed + _MARGIN_TOKENS:
            return np.asarray(ids[:n_tokens_needed], dtype=np.int32)
        limit *= 2


def make_chunks(
    token_ids: np.ndarray,
    n_ctx: int,
    n_chunks: int | None,
    *,
    add_bos: bool,
    bos_id: int | None,
    corpus_name: str = "corpus",
) -> Chunks:
    """llama.cpp's chunking. `n_chunks` None means all; more than available is clamped (llama.cpp
    does the same); fewer tokens than one chunk is an EvaluationError."""
    if n_ctx < 4 or n_ctx % 2:
        raise EvaluationError(f"n_ctx must be an even number >= 4, got {n_ctx}")
    ids = np.asarray(token_ids, dtype=np.int32)
    available = len(ids) // n_ctx
    if available < 1:
        raise CorpusError(
            f"{corpus_name} tokenizes to {len(ids)} tokens, fewer than one chunk of n_ctx={n_ctx}: "
            "use a longer corpus or a smaller n_ctx"
        )
    if n_chunks is not None and n_chunks < 1:
        raise EvaluationError(f"chunks must be >= 1 (or null for all), got {n_chunks}")
    n = available if n_chunks is None else min(n_chunks, available)
    tokens = ids[: n * n_ctx].reshape(n, n_ctx).copy()
    first = n_ctx // 2
    targets = tokens[:, first + 1 :].copy()
    if add_bos:
        if bos_id is None:
            raise EvaluationError("the model asks for BOS but has no BOS token id")
        tokens[:, 0] = bos_id
    return Chunks(tokens=tokens, targets=targets, n_ctx=n_ctx, first=first, add_bos=add_bos, bos_id=bos_id)
