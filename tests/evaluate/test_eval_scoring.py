"""Vectorized NLL / top-k / KL math against direct full-vocabulary computations."""

from __future__ import annotations

import numpy as np

from pocketquant.evaluate.scoring import kl_from_topk, kl_full, score_rows, top_k_summary


def _logits(seed: int, n: int = 6, v: int = 500, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, v)) * scale).astype(np.float32)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def test_nll_and_top1_match_a_direct_computation():
    L = _logits(0)
    targets = np.array([3, 1, 499, 0, 250, 7])
    rows, _ = score_rows(L, targets)
    expected = -_log_softmax(L)[np.arange(6), targets]
    np.testing.assert_allclose(rows.nll, expected, rtol=1e-5)
    assert rows.top1.tolist() == L.argmax(axis=1).tolist()


def test_topk_summary_keeps_exact_logprobs_and_the_rest_mass():
    L = _logits(1)
    tk = top_k_summary(L, 16)
    lp = _log_softmax(L)
    order = np.argsort(-L, axis=1)[:, :16]
    assert (tk.ids == order).all()
    np.testing.assert_allclose(tk.logprobs, np.take_along_axis(lp, order, 1), atol=1e-5)
    mass = np.exp(tk.logprobs.astype(np.float64)).sum(1) + np.exp(tk.rest_logprob.astype(np.float64))
    np.testing.assert_allclose(mass, 1.0, atol=1e-5)


def test_kl_with_full_topk_is_exact_and_truncated_is_a_close_lower_bound():
    base, var = _logits(2), _logits(2) + _logits(3, scale=0.3)
    exact = kl_full(base, var)
    np.testing.assert_allclose(kl_from_topk(var, top_k_summary(base, 500)), exact, rtol=1e-4, atol=1e-7)
    approx = kl_from_topk(var, top_k_summary(base, 64))
    assert (approx <= exact + 1e-6).all()
    assert approx.mean() > 0.5 * exact.mean()
    # Identical distributions: zero divergence.
    np.testing.assert_allclose(kl_from_topk(base, top_k_summary(base, 64)), 0.0, atol=1e-6)
