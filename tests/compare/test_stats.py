"""pocketquant.evaluate.stats against llama.cpp's formulas (tools/perplexity/perplexity.cpp), written
out here as the C++ accumulates them: running float64 sums, one token at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pocketquant.evaluate import stats


def llamacpp_kld_report(nll: np.ndarray, nll_base: np.ndarray, kld: np.ndarray, same: np.ndarray) -> dict:
    """kl_divergence(): the kl_divergence_result sums, then the "Perplexity statistics" and
    "KL divergence statistics" lines it prints."""
    s = dict.fromkeys(("nll", "nll2", "base", "base2", "nb", "kld", "kld2"), 0.0)
    count = n_same = 0
    for a, b, k, t in zip(nll.tolist(), nll_base.tolist(), kld.tolist(), same.tolist(), strict=True):
        s["nll"] += a
        s["nll2"] += a * a
        s["base"] += b
        s["base2"] += b * b
        s["nb"] += a * b
        s["kld"] += k
        s["kld2"] += k * k
        count += 1
        n_same += bool(t)

    def mean_and_uncertainty(total: float, total2: float, n: int) -> tuple[float, float]:
        f = total / n
        df = total2 / n - f * f
        return f, (math.sqrt(df / (n - 1)) if df > 0 and n > 10 else 0.0)

    def covariance(sa: float, sb: float, sab: float, n: int) -> float:
        return 0.0 if n < 10 else (sab / n - (sa / n) * (sb / n)) / (n - 1)

    log_ppl = mean_and_uncertainty(s["nll"], s["nll2"], count)
    log_base = mean_and_uncertainty(s["base"], s["base2"], count)
    cov = covariance(s["nll"], s["base"], s["nb"], count)
    ppl, ppl_base = math.exp(log_ppl[0]), math.exp(log_base[0])
    ratio_unc = math.sqrt(log_ppl[1] ** 2 + log_base[1] ** 2 - 2.0 * cov)
    ppl_unc, ppl_base_unc = ppl * log_ppl[1], ppl_base * log_base[1]
    kl = mean_and_uncertainty(s["kld"], s["kld2"], count)
    p = n_same / count
    return {
        "ppl": (ppl, ppl_unc),
        "ppl_base": (ppl_base, ppl_base_unc),
        "ln_ratio": (log_ppl[0] - log_base[0], ratio_unc),
        "ppl_ratio": (math.exp(log_ppl[0] - log_base[0]), math.exp(log_ppl[0] - log_base[0]) * ratio_unc),
        "ppl_diff": (
            ppl - ppl_base,
            math.sqrt(ppl_unc**2 + ppl_base_unc**2 - 2.0 * ppl * ppl_base * cov),
        ),
        "kld": kl,
        "same_top": (p, math.sqrt(p * (1 - p) / (count - 1))),
    }


def llamacpp_perplexity_final(nll: np.ndarray) -> tuple[float, float]:
    """perplexity(): "Final estimate: PPL = %.4lf +/- %.5lf"."""
    total = total2 = 0.0
    for v in nll.tolist():
        total += v
        total2 += v * v
    count = len(nll)
    mean = total / count
    var = total2 / count - mean * mean
    ppl = math.exp(mean)
    return ppl, math.sqrt(var / (count - 1)) * ppl


@pytest.fixture
def scores():
    rng = np.random.default_rng(7)
    n = 1020
    nll_base = rng.gamma(2.0, 1.2, n)
    nll = nll_base + rng.normal(0.05, 0.3, n).clip(-nll_base + 1e-3)  # correlated with the base
    kld = rng.gamma(0.6, 0.08, n)
    same = rng.random(n) < 0.88
    return nll, nll_base, kld, same


def test_every_estimate_equals_llamacpp_formula(scores):
    nll, nll_base, kld, same = scores
    ref = llamacpp_kld_report(nll, nll_base, kld, same)
    got = {
        "ppl": stats.perplexity(nll),
        "ppl_base": stats.perplexity(nll_base),
        "ln_ratio": stats.ln_ppl_ratio(nll, nll_base),
        "ppl_ratio": stats.ppl_ratio(nll, nll_base),
        "ppl_diff": stats.ppl_difference(nll, nll_base),
        "kld": stats.mean_err(kld),
        "same_top": stats.same_top_fraction(same),
    }
    for key, (value, err) in ref.items():
        assert got[key].value == pytest.approx(value, rel=1e-12), key
        assert got[key].err == pytest.approx(err, rel=1e-9), key
        assert err > 0, key
    # perplexity()'s own final line agrees with kl_divergence's once n > 10
    assert (got["ppl"].value, got["ppl"].err) == pytest.approx(llamacpp_perplexity_final(nll), rel=1e-12)


def test_few_tokens_have_no_error_as_in_llamacpp():
    e = stats.mean_err(np.array([1.0, 2.0, 3.0]))
    assert e.value == 2.0 and e.err == 0.0  # llama.cpp: no uncertainty at n <= 10
    assert stats.covariance(1.0, 1.0, 1.0, 9) == 0.0


def test_percentile_and_median_are_llamacpps(scores):
    kld = scores[2].astype(np.float32)
    v = np.sort(kld.astype(np.float64))
    for fraction in (0.001, 0.01, 0.1, 0.9, 0.99, 0.999):
        p = fraction * (v.size - 1)
        i = int(p)
        expected = (1 - (p - i)) * v[i] + (p - i) * v[min(i + 1, v.size - 1)]
        assert stats.percentile(kld, fraction) == pytest.approx(expected, rel=1e-12)
    assert stats.percentile(kld, 0.0) == v[0] and stats.percentile(kld, 1.0) == v[-1]
    assert stats.median(kld) == pytest.approx(0.5 * (v[v.size // 2] + v[v.size // 2 - 1]))
    assert stats.median(kld[:-1]) == pytest.approx(np.sort(kld[:-1].astype(np.float64))[(v.size - 1) // 2])


def test_paired_difference_is_llamacpps_ln_ratio_uncertainty(scores):
    nll, nll_base, _, _ = scores
    d = stats.paired_difference(nll, nll_base)
    r = stats.ln_ppl_ratio(nll, nll_base)
    assert d.mean == pytest.approx(r.value, rel=1e-12) and d.err == pytest.approx(r.err, rel=1e-9)
    assert d.low == pytest.approx(d.mean - 1.959963984540054 * d.err)
    # the pairing is what makes it tight: unpaired errors would be far wider
    unpaired = math.hypot(stats.mean_err(nll).err, stats.mean_err(nll_base).err)
    assert d.err < unpaired / 2
    assert d.significant and "has a lower perplexity" in d.verdict("A", "B", "perplexity")


def test_a_variant_against_itself_shows_no_significant_difference(scores):
    nll = scores[0]
    d = stats.paired_difference(nll, nll.copy())
    assert d.mean == 0.0 and d.err == 0.0 and not d.significant
    assert d.verdict("q8_0", "q8_0", "perplexity").startswith("no significant difference")


def test_noise_alone_is_not_significant():
    rng = np.random.default_rng(3)
    a = rng.normal(2.0, 1.0, 2000)
    b = a + rng.normal(0.0, 0.5, 2000) - 0.0  # same mean: a difference of pure noise
    b -= b.mean() - a.mean()
    assert not stats.paired_difference(a, b).significant


def test_paired_comparison_needs_the_same_tokens():
    with pytest.raises(ValueError, match="same tokens"):
        stats.paired_difference(np.ones(10), np.ones(11))


def test_quality_stats_block(scores):
    nll, nll_base, kld, same = scores
    q = stats.quality_stats(nll, kld, same, nll_base)
    ref = llamacpp_kld_report(nll, nll_base, kld, same)
    assert (q["ppl"], q["ppl_err"]) == pytest.approx(ref["ppl"])
    assert (q["kld_mean"], q["kld_mean_err"]) == pytest.approx(ref["kld"])
    assert q["top1_agreement_pct"] == pytest.approx(100 * ref["same_top"][0])
    assert q["top1_agreement_pct_err"] == pytest.approx(100 * ref["same_top"][1])
    assert q["delta_ppl_pct"] == pytest.approx(100 * (ref["ppl_ratio"][0] - 1))
    assert q["delta_ppl_pct_err"] == pytest.approx(100 * ref["ppl_ratio"][1])
    assert q["kld_p99"] == pytest.approx(np.percentile(kld, 99))
