"""Uncertainty of the quality metrics, computed exactly as llama.cpp's `llama-perplexity` does
(tools/perplexity/perplexity.cpp, its `perplexity` and `kl_divergence` functions), plus the paired
comparison of two variants scored on the same tokens.

llama.cpp's estimates treat the scored tokens as independent samples:

    mean_and_uncertainty(sum, sum2, n):  f = sum/n;  v = sum2/n - f^2
                                         err = sqrt(v / (n-1))  if v > 0 and n > 10, else 0
    PPL = exp(mean NLL)                  err(PPL) = PPL * err(mean NLL)       (delta method)
    mean KLD                             err from mean_and_uncertainty of the per-token KLD
    same top p = k/n                     err = sqrt(p (1-p) / (n-1))
    ln(PPL(Q)/PPL(base))                 err = sqrt(err_Q^2 + err_base^2 - 2 cov),
                                         cov = (sum(ab)/n - mean(a) mean(b)) / (n-1)  (0 if n < 10)

Sums are accumulated in float64 as llama.cpp does. Tokens within a chunk are correlated, so these
errors understate the real spread a little; they are still the figures llama.cpp users know, and
what the study quoted (PPL 8.57 +/- 0.06).

The paired comparison of variants A and B on the same tokens uses the per-token differences
d = a - b: mean(d) +/- err(d) is llama.cpp's ln-PPL-ratio uncertainty when a and b are NLLs
(err(d)^2 = err_a^2 + err_b^2 - 2 cov algebraically), and the 95% interval is mean +/- 1.96 err.
A difference is significant when that interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


@dataclass(frozen=True)
class Estimate:
    """A mean and its standard error."""

    value: float
    err: float

    def __str__(self) -> str:
        return f"{self.value:.6g} +/- {self.err:.2g}"


def mean_and_uncertainty(total: float, total2: float, count: int) -> Estimate:
    """llama.cpp's `mean_and_uncertainty` lambda (kl_divergence), from running sums."""
    if count < 1:
        return Estimate(0.0, 0.0)
    f = total / count
    df = total2 / count - f * f
    df = math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0
    return Estimate(f, df)


def covariance(total_a: float, total_b: float, total_ab: float, count: int) -> float:
    """llama.cpp's `covariance` lambda: the covariance of the two means (0 below 10 samples)."""
    if count < 10:
        return 0.0
    return (total_ab / count - (total_a / count) * (total_b / count)) / (count - 1)


def _f64(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def mean_err(values: np.ndarray) -> Estimate:
    """Mean +/- standard error of per-token values (sums of x and x^2 in float64)."""
    x = _f64(values)
    return mean_and_uncertainty(float(x.sum()), float((x * x).sum()), x.size)


def perplexity(nll: np.ndarray) -> Estimate:
    """PPL = exp(mean NLL) +/- PPL * err(mean NLL)."""
    m = mean_err(nll)
    ppl = math.exp(m.value)
    return Estimate(ppl, ppl * m.err)


def ln_ppl_ratio(nll: np.ndarray, nll_base: np.ndarray) -> Estimate:
    """ln(PPL(Q)/PPL(base)) +/- llama.cpp's uncertainty, which accounts for the correlation of the
    two models' NLLs on the same tokens."""
    a, b = _f64(nll), _f64(nll_base)
    _check_paired(a, b)
    ea, eb = mean_err(a), mean_err(b)
    cov = covariance(float(a.sum()), float(b.sum()), float((a * b).sum()), a.size)
    return Estimate(ea.value - eb.value, math.sqrt(max(ea.err**2 + eb.err**2 - 2.0 * cov, 0.0)))


def ppl_ratio(nll: np.ndarray, nll_base: np.ndarray) -> Estimate:
    """PPL(Q)/PPL(base) +/- (delta method on ln ratio), as llama.cpp prints it."""
    r = ln_ppl_ratio(nll, nll_base)
    v = math.exp(r.value)
    return Estimate(v, v * r.err)


def ppl_difference(nll: np.ndarray, nll_base: np.ndarray) -> Estimate:
    """PPL(Q) - PPL(base) +/- sqrt(u^2 + u_base^2 - 2 PPL PPL_base cov), llama.cpp's formula."""
    a, b = _f64(nll), _f64(nll_base)
    _check_paired(a, b)
    pa, pb = perplexity(a), perplexity(b)
    cov = covariance(float(a.sum()), float(b.sum()), float((a * b).sum()), a.size)
    ppl_cov = pa.value * pb.value * cov
    return Estimate(pa.value - pb.value, math.sqrt(max(pa.err**2 + pb.err**2 - 2.0 * ppl_cov, 0.0)))


def same_top_fraction(same: np.ndarray) -> Estimate:
    """Fraction of tokens whose top-1 agrees with the base +/- sqrt(p (1-p) / (n-1))."""
    s = np.asarray(same, dtype=bool).ravel()
    n = s.size
    if n < 2:
        return Estimate(float(s.mean()) if n else 0.0, 0.0)
    p = float(np.count_nonzero(s)) / n
    return Estimate(p, math.sqrt(p * (1.0 - p) / (n - 1)))


def percentile(values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear interpolation between the sorted values."""
    v = np.sort(_f64(values))
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = fraction * (v.size - 1)
    i = int(p)
    p -= i
    return float((1 - p) * v[i] + p * v[min(i + 1, v.size - 1)])


def median(values: np.ndarray) -> float:
    """llama.cpp's median: the mean of the two middle values for an even count."""
    v = np.sort(_f64(values))
    n = v.size
    return float(0.5 * (v[n // 2] + v[n // 2 - 1]) if n % 2 == 0 else v[n // 2])


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) on the same tokens, its standard error and 95% interval."""

    mean: float
    err: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def verdict(self, a: str, b: str, what: str) -> str:
        """One sentence: which of the two has the lower `what`, or that they do not differ."""
        if not self.significant:
            return f"no significant difference in {what} between {a} and {b} (95% interval includes 0)"
        lower, higher = (a, b) if self.mean < 0 else (b, a)
        return f"{lower} has a lower {what} than {higher} (95% interval excludes 0)"


def _check_paired(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs the same tokens: {a.size} vs {b.size} values")


def paired_difference(a: np.ndarray, b: np.ndarray, *, z: float = Z95) -> PairedDifference:
    """Mean of a - b per token +/- its standard error, with the interval mean +/- z err."""
    x, y = _f64(a), _f64(b)
    _check_paired(x, y)
    e = mean_err(x - y)
    return PairedDifference(e.value, e.err, e.value - z * e.err, e.value + z * e.err, x.size)


def quality_stats(nll: np.ndarray, kld: np.ndarray, same_top1: np.ndarray, nll_base: np.ndarray) -> dict:
    """The quality block of a metrics file from per-token scores (llama.cpp's KL-divergence report):
    PPL +/- err, the base's PPL, ln(PPL ratio) +/- err, ΔPPL %, KLD mean +/- err, median, p99, max,
    same top-1 % +/- err."""
    ppl, ppl_base = perplexity(nll), perplexity(nll_base)
    ratio = ln_ppl_ratio(nll, nll_base)
    kl = mean_err(kld)
    top = same_top_fraction(same_top1)
    return {
        "ppl": ppl.value,
        "ppl_err": ppl.err,
        "ppl_base": ppl_base.value,
        "ppl_base_err": ppl_base.err,
        "delta_ppl_pct": 100.0 * (ppl.value / ppl_base.value - 1.0),
        # ΔPPL % = 100 (exp(ln ratio) - 1): its error by the delta method
        "delta_ppl_pct_err": 100.0 * math.exp(ratio.value) * ratio.err,
        "ln_ppl_ratio": ratio.value,
        "ln_ppl_ratio_err": ratio.err,
        "kld_mean": kl.value,
        "kld_mean_err": kl.err,
        "kld_median": median(kld),
        "kld_p99": percentile(kld, 0.99),
        "kld_max": float(np.max(kld)),
        "top1_agreement_pct": 100.0 * top.value,
        "top1_agreement_pct_err": 100.0 * top.err,
    }


@dataclass(frozen=True)
class TokenScores:
    """One model's scores at every scored token of the evaluation corpus (what the evaluate stage
    keeps per variant: pocketquant.evaluate.metrics.write_token_scores)."""

    nll: np.ndarray  # float32 [n]: -log q(next token)
    kld: np.ndarray  # float32 [n]: KL(base || model)
    same_top1: np.ndarray  # bool [n]: the model's most likely token is the base's
    tokens_sha256: str  # of the scored target ids (int32): equal hashes = the same tokens

    @property
    def n(self) -> int:
        return int(self.nll.size)
