"""The statistics that compare a recent window with a reference: population stability index on fixed bins, the
two-sample Kolmogorov-Smirnov test (scipy's when installed, else the numpy implementation here; each result names
which), the two-proportion z-test and the standardised mean difference. Plain numpy, no model, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SCORE_BINS",
    "KsResult",
    "ks_two_sample",
    "ks_two_sample_numpy",
    "chi2_sf",
    "psi",
    "psi_p_value",
    "smd",
    "two_proportion_p",
]

#: the score's fixed bins: ten of width 0.1 on the calibrated probability, the same for every site and window, so
#: that two reports' PSI values compare
SCORE_BINS = tuple(round(0.1 * i, 1) for i in range(11))
_SMOOTHING = 0.5  # added to every bin's count (Jeffreys-like), so an empty bin does not make the PSI infinite


def psi(reference: Sequence[float], recent: Sequence[float], bins: Sequence[float] = SCORE_BINS) -> float:
    """Population stability index of ``recent`` against ``reference`` on fixed ``bins`` (the last edge inclusive):
    sum over bins of (recent share - reference share) x ln(recent share / reference share), each share smoothed by
    half a count. Under 0.1 the usual reading is stable, 0.1-0.25 a moderate shift, over 0.25 a major one."""
    if not len(reference) or not len(recent):
        raise ValueError("both samples need at least one value")
    edges = np.asarray(bins, dtype=float)
    ref = np.histogram(np.clip(reference, edges[0], edges[-1]), bins=edges)[0] + _SMOOTHING
    new = np.histogram(np.clip(recent, edges[0], edges[-1]), bins=edges)[0] + _SMOOTHING
    p, q = ref / ref.sum(), new / new.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def psi_p_value(value: float, n_reference: int, n_recent: int, bins: int = len(SCORE_BINS) - 1) -> float:
    """How often two samples of these sizes from one distribution reach this PSI: the PSI is a symmetrised
    chi-square divergence, so ``PSI x n m / (n + m)`` is about chi-square with ``bins - 1`` degrees of freedom under
    no change. With 50 results a side a PSI of 0.25 is ordinary noise (p about 0.6), so the alert needs both."""
    return chi2_sf(value * n_reference * n_recent / (n_reference + n_recent), bins - 1)


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable with ``df`` degrees of freedom (the regularised upper incomplete gamma
    function, from its power series: x here is at most a few hundred)."""
    if x <= 0:
        return 1.0
    a, half = df / 2.0, x / 2.0
    term = total = 1.0 / a
    k = 0
    while term > total * 1e-15 and k < 10_000:
        k += 1
        term *= half / (a + k)
        total += term
    lower = math.exp(a * math.log(half) - half - math.lgamma(a)) * total
    return float(min(1.0, max(0.0, 1.0 - lower)))


@dataclass(frozen=True)
class KsResult:
    statistic: float  # D, the largest distance between the two empirical distribution functions
    p_value: float
    method: str  # which implementation computed it


def ks_two_sample(reference: Sequence[float], recent: Sequence[float]) -> KsResult:
    """Two-sample Kolmogorov-Smirnov test: ``scipy.stats.ks_2samp`` (exact p for small samples) when scipy is
    installed (it is not a dependency of the run-time package), else :func:`ks_two_sample_numpy`."""
    try:
        from scipy.stats import ks_2samp
    except ImportError:
        return ks_two_sample_numpy(reference, recent)
    result = ks_2samp(np.asarray(reference, float), np.asarray(recent, float))
    return KsResult(float(result.statistic), float(result.pvalue), "scipy.stats.ks_2samp")


def ks_two_sample_numpy(reference: Sequence[float], recent: Sequence[float]) -> KsResult:
    """The same test in numpy: D from the two empirical distribution functions at every pooled value, p from the
    asymptotic Kolmogorov distribution with Stephens' small-sample correction (Numerical Recipes' ``kstwo``):
    p = Q((sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) D), ne = n m / (n + m), Q(x) = 2 sum_j (-1)^(j-1) exp(-2 j^2 x^2)."""
    a, b = np.sort(np.asarray(reference, float)), np.sort(np.asarray(recent, float))
    if not a.size or not b.size:
        raise ValueError("both samples need at least one value")
    pooled = np.concatenate([a, b])
    d = float(
        np.max(np.abs(np.searchsorted(a, pooled, "right") / a.size - np.searchsorted(b, pooled, "right") / b.size))
    )
    root = math.sqrt(a.size * b.size / (a.size + b.size))
    return KsResult(d, _kolmogorov_q((root + 0.12 + 0.11 / root) * d), "numpy (asymptotic Kolmogorov distribution)")


def _kolmogorov_q(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (1 for x near 0, where the series does not converge)."""
    if x < 0.2:
        return 1.0
    total = sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * x * x) for j in range(1, 101))
    return float(min(1.0, max(0.0, 2.0 * total)))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of the pooled two-proportion z-test (k1 of n1 against k2 of n2); 1.0 when it is undefined."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return 1.0
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2.0))


def smd(reference: Sequence[float], recent: Sequence[float]) -> float:
    """Standardised mean difference (recent - reference) / pooled standard deviation (Cohen's d): a shift of 0.5 is
    half a typical spread. 0 when both samples are constant and equal, +-inf when constant and different."""
    a, b = np.asarray(reference, float), np.asarray(recent, float)
    if a.size < 2 or b.size < 2:
        raise ValueError("both samples need at least two values")
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    diff = float(b.mean() - a.mean())
    scale = max(1.0, abs(float(a.mean())))
    if abs(diff) <= 1e-9 * scale:  # equal up to rounding (the mean of 40 copies of 0.8 is not exactly 0.8)
        return 0.0
    if pooled <= 1e-12 * scale:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / pooled
