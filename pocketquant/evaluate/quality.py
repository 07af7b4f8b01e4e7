"""Perplexity (llama.cpp style) and KL divergence / top-1 agreement against the base reference."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.errors import ReferenceMismatchError, TokenizerMismatchError
from pocketquant.evaluate.language_model import LanguageModel
from pocketquant.evaluate.reference import BaseReference, chunk_ids, corpus_ids
from pocketquant.evaluate.scoring import kl_full, row_blocks, score_rows
from pocketquant.evaluate.stats import TokenScores, quality_stats


def _setting(model: LanguageModel, n_ctx: int, n_chunks: int, n_scored: int) -> dict:
    # Every number carries how it was measured.
    return {"engine": model.engine, "n_ctx": n_ctx, "chunks": n_chunks, "tokens_scored": n_scored}


def perplexity(
    model: LanguageModel,
    corpus: Corpus,
    *,
    n_ctx: int = 512,
    n_chunks: int | None = 20,
    progress: bool = True,
) -> dict:
    """llama.cpp's `perplexity()`: BOS-led chunks of n_ctx, second half of each chunk scored."""
    ch = chunk_ids(model, corpus, corpus_ids(model, corpus, n_ctx, n_chunks), n_ctx, n_chunks)
    nll = np.empty((ch.n_chunks, ch.n_scored), np.float64)
    for i in tqdm(range(ch.n_chunks), desc=f"perplexity ({model.engine})", disable=not progress):
        rows, _ = score_rows(model.logits(ch.tokens[i], ch.first)[: ch.n_scored], ch.targets[i])
        nll[i] = rows.nll
    return {
        "ppl": float(np.exp(nll.mean())),
        "nll_mean": float(nll.mean()),
        **_setting(model, n_ctx, ch.n_chunks, ch.n_tokens_scored),
        "corpus": corpus.name,
    }


def check_tokenizer(model: LanguageModel, corpus: Corpus, ref: BaseReference) -> None:
    """The variant must see the very tokens the base was scored on."""
    meta = ref.meta
    if meta["corpus_sha256"] != corpus.sha256:
        raise ReferenceMismatchError(
            f"the base reference was computed on corpus {meta['corpus']!r} "
            f"(sha256 {meta['corpus_sha256'][:12]}), "
            f"not on {corpus.name!r} from {corpus.source} (sha256 {corpus.sha256[:12]}): recompute them"
        )
    where = f"variant {model.path} ({model.engine})"
    if model.n_vocab != meta["n_vocab"]:
        raise TokenizerMismatchError(
            f"{where} has a vocabulary of {model.n_vocab}, the base {meta['n_vocab']}"
        )
    if model.add_bos != meta["add_bos"] or (model.add_bos and model.bos_id != meta["bos_id"]):
        raise TokenizerMismatchError(
            f"{where} adds BOS={model.add_bos} (id {model.bos_id}), "
            f"the base BOS={meta['add_bos']} (id {meta['bos_id']})"
        )
    ids = corpus_ids(model, corpus, ref.n_ctx, ref.n_chunks)[: len(ref.ids)]
    if len(ids) != len(ref.ids) or not np.array_equal(ids, ref.ids):
        n = min(len(ids), len(ref.ids))
        diff = np.flatnonzero(ids[:n] != ref.ids[:n])
        at = int(diff[0]) if len(diff) else n
        raise TokenizerMismatchError(
            f"{where} tokenizes corpus {corpus.name!r} differently from the base: "
            f"first difference at token {at} "
            f"(variant {ids[at : at + 5].tolist()} vs base {ref.ids[at : at + 5].tolist()}; "
            f"{len(ids)} vs {len(ref.ids)} tokens)"
        )


# Positions scored at a time: the base's logits are computed for one block of rows (32 x 128,256
# float32 is 16 MB, a whole 255-row chunk 131 MB), as are the variant's NLL and the KL. Per-row
# results do not depend on the block (tested), so the numbers are those of a whole-chunk pass.
SCORE_BLOCK_ROWS = 32


def score_chunk(
    logits: np.ndarray,
    targets: np.ndarray,
    base_logits: torch.Tensor | Callable[[int, int], torch.Tensor],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's NLL, exact KL(base || model) and same-top-1 flags per scored position.

    `base_logits`: the base's logits [n, n_vocab], or a function (start, stop) -> rows start..stop
    of them, called once per block of SCORE_BLOCK_ROWS positions."""
    n = len(targets)
    nll, kld, same = np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, bool)
    for start, stop in row_blocks(n, SCORE_BLOCK_ROWS):
        block = np.asarray(logits[start:stop])  # computed here when `logits` is lazy (HeadLogits)
        rows, _ = score_rows(block, targets[start:stop])
        base = base_logits(start, stop) if callable(base_logits) else base_logits[start:stop]
        nll[start:stop] = rows.nll
        kld[start:stop] = kl_full(base, block)
        same[start:stop] = rows.top1 == base.argmax(dim=1).to(torch.int32).numpy()
    return nll, kld, same


def evaluate_quality(
    model: LanguageModel, corpus: Corpus, ref: BaseReference, *, progress: bool = True
) -> dict:
    """PPL of `model` plus KL(base || model) stats and top-1 agreement on the reference's tokens."""
    check_tokenizer(model, corpus, ref)
    ch = ref.chunks()
    nll = np.empty((ch.n_chunks, ch.n_scored), np.float64)
    kld = np.empty_like(nll)
    same = np.empty(nll.shape, bool)
    seqs = ((ch.tokens[i], ch.first) for i in range(ch.n_chunks))
    desc = f"PPL + KLD ({model.engine})"
    passes = tqdm(model.logits_many(seqs), total=ch.n_chunks, desc=desc, disable=not progress)
    for i, logits in enumerate(passes):
        logits = logits[: ch.n_scored]
        nll[i], kld[i], same[i] = score_chunk(
            logits, ch.targets[i], lambda start, stop, i=i: ref.chunk_logits(i, start, stop)
        )
        del logits  # a copy for transformers (131 MB at 128k): not alive during the next forward
    # Per-token scores travel with the summary (popped by evaluate_variant into their own file):
    # they give the uncertainties below and let two variants be compared on the same tokens.
    per_token = TokenScores(
        nll=nll.ravel().astype(np.float32),
        kld=kld.ravel().astype(np.float32),
        same_top1=same.ravel(),
        tokens_sha256=hashlib.sha256(np.ascontiguousarray(ch.targets, dtype=np.int32).tobytes()).hexdigest(),
    )
    return {
        **quality_stats(nll, kld, same, ref.nll),
        **_setting(model, ch.n_ctx, ch.n_chunks, ch.n_tokens_scored),
        "base_engine": ref.meta["engine"],
        "kld_exact": True,  # full vocabulary, base logits recomputed from its hidden states
        "corpus": corpus.name,
        "tokens_sha256": per_token.tokens_sha256,
        "per_token": per_token,
    }
