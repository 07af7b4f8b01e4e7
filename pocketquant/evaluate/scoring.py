"""Vectorized scoring of one chunk's logits: NLL of the next tokens, the exact full-vocabulary KL
divergence (`kl_full`, what evaluation reports), and the older top-k summary estimate (kept for
error analysis: how much a top-k reference would miss).

All work is whole-matrix torch ops on the [n_scored, n_vocab] logits (never a Python loop per
token), so scoring costs a small fraction of the forward pass that produced the logits.

KL divergence from a top-k summary (what we store instead of llama.cpp's 2-byte-per-vocab-entry
`--kl-divergence-base` file): for each scored position the base keeps its k most likely tokens'
exact log-probs and the log of the probability mass of all other tokens ("rest"). The KL divergence
of the variant is then computed exactly on the k+1 outcomes {top-k tokens, rest}:

    KL = sum_{i in topk} p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest)

This is KL of the distributions coarsened to k+1 outcomes: a lower bound of the full-vocabulary KL
that misses only p_rest * KL(p|rest || q|rest), the divergence *inside* the tail (docs/evaluation.md
gives the size of that error measured on SmolLM2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RowScores:
    """Per scored position of one chunk."""

    nll: np.ndarray  # float64 [n]: -log q(target)
    top1: np.ndarray  # int32 [n]: the model's most likely next token


@dataclass(frozen=True)
class TopK:
    """The base model's compact distribution at each scored position."""

    ids: np.ndarray  # int32 [n, k], most likely first
    logprobs: np.ndarray  # float32 [n, k]
    rest_logprob: np.ndarray  # float32 [n]: log of the mass outside the top k (-inf if none)


def _as_tensor(logits: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(logits))
    return t if t.dtype == torch.float32 else t.float()


def score_rows(logits: np.ndarray, targets: np.ndarray) -> tuple[RowScores, torch.Tensor]:
    """NLL of `targets` under softmax(logits) and the argmax; also returns logsumexp for reuse."""
    L = _as_tensor(logits)
    lse = torch.logsumexp(L, dim=1)
    tgt = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    picked = L.gather(1, tgt[:, None])[:, 0]
    nll = (lse.double() - picked.double()).numpy()
    top1 = L.argmax(dim=1).to(torch.int32).numpy()
    return RowScores(nll=nll, top1=top1), lse


def top_k_summary(logits: np.ndarray, k: int, lse: torch.Tensor | None = None) -> TopK:
    """The k most likely tokens' log-probs and the log of the remaining mass, per row."""
    L = _as_tensor(logits)
    if lse is None:
        lse = torch.logsumexp(L, dim=1)
    k = min(k, L.shape[1])
    vals, idx = torch.topk(L, k, dim=1, sorted=True)
    # Mass outside the top k, summed exactly over those entries (no 1 - sum cancellation).
    rest = torch.logsumexp(L.scatter(1, idx, float("-inf")), dim=1) - lse
    return TopK(
        ids=idx.to(torch.int32).numpy(),
        logprobs=(vals - lse[:, None]).numpy(),
        rest_logprob=rest.numpy(),
    )


def kl_from_topk(logits: np.ndarray, base: TopK, lse: torch.Tensor | None = None) -> np.ndarray:
    """KL(base || variant) per row on the base's top-k + rest outcomes (float64 [n])."""
    L = _as_tensor(logits)
    if lse is None:
        lse = torch.logsumexp(L, dim=1)
    ids = torch.from_numpy(base.ids.astype(np.int64, copy=False))
    q_top = L.gather(1, ids).double() - lse.double()[:, None]
    q_rest = (torch.logsumexp(L.scatter(1, ids, float("-inf")), dim=1) - lse).double()
    p_top = torch.from_numpy(base.logprobs).double()
    p_rest = torch.from_numpy(base.rest_logprob).double()
    kl = (p_top.exp() * (p_top - q_top)).sum(dim=1)
    has_rest = torch.isfinite(p_rest)
    tail = torch.where(has_rest, p_rest.exp() * (p_rest - q_rest), torch.zeros_like(p_rest))
    # Tiny negatives are rounding (KL >= 0 on any coarsening); clamp so percentiles stay meaningful.
    return torch.clamp(kl + tail, min=0.0).numpy()


# Rows per block of the exact KL: the float64 temporaries of a block of a 128,256-token vocabulary
# are ~16 MB each instead of ~260 MB for a whole 255-row chunk. Each row's result does not depend on
# the block as long as a block has many rows (torch reduces a row the same way; a 1-row block can
# split the row across threads): blocks never have fewer than half this many rows.
KL_BLOCK_ROWS = 16


def row_blocks(n: int, rows: int = KL_BLOCK_ROWS) -> list[tuple[int, int]]:
    """[start, stop) blocks of `rows` rows over n rows; a remainder shorter than half a block is
    merged into the last full one (a longer one is a block of its own: no double-size block)."""
    starts = list(range(0, n, rows))
    if len(starts) > 1 and n - starts[-1] < rows // 2:
        starts.pop()
    return [(a, starts[i + 1] if i + 1 < len(starts) else n) for i, a in enumerate(starts)]


def kl_full(base_logits: np.ndarray | torch.Tensor, logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Exact full-vocabulary KL(base || variant) per row (float64): what evaluation reports.

    float64 log-softmax: KL is a small difference of O(1) sums, float32 would leave ~1e-6 of noise.
    Computed in blocks of rows (KL_BLOCK_ROWS), in place where a temporary is not needed again:
    the same values as sum(exp(P) * (P - Q)), bit for bit, in a fraction of the memory."""
    b = base_logits if isinstance(base_logits, torch.Tensor) else _as_tensor(base_logits)
    v = logits if isinstance(logits, torch.Tensor) else _as_tensor(logits)
    out = np.empty(b.shape[0], np.float64)
    for start, stop in row_blocks(b.shape[0]):
        # dtype=float64 casts inside the op: the same values as .double() first, one temporary less
        P = torch.log_softmax(b[start:stop], dim=1, dtype=torch.float64)
        D = torch.log_softmax(v[start:stop], dim=1, dtype=torch.float64)  # Q
        D.sub_(P).neg_()  # P - Q, exactly: IEEE subtraction is sign-symmetric
        D.mul_(P.exp_())  # p * (log p - log q)
        # Rounding can leave tiny negatives (KL >= 0): clamp so percentiles stay meaningful.
        out[start:stop] = torch.clamp(D.sum(dim=1), min=0.0).numpy()
        del P, D
    return out
