"""Calibration metrics of P(Urgent): the reliability table and the expected calibration error (ECE).

They measure calibration; fitting and applying the Platt calibration itself is
:mod:`cxrtriage.backends.calibration`. On a small set ECE is biased upwards: with 70 films in ten bins, labels drawn
from a perfectly calibrated score still leave gaps in every bin. :func:`ece_if_calibrated` measures that floor for a
given set of scores, so a reader can tell a calibration error from sample noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.evaluation.metrics.common import check_pair

__all__ = ["ece_if_calibrated", "expected_calibration_error", "reliability_table"]


def _check_probs(y_true: ArrayLike, probs: ArrayLike, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    y, p = check_pair(y_true, probs, "probs")
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("probs must lie in [0, 1] for calibration metrics (pass calibrated probabilities)")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return y, p


def _bin_ids(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin index: bin i holds [i/n, (i+1)/n); the last bin also holds 1.0."""
    return np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)


def reliability_table(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> list[dict[str, Any]]:
    """Per equal-width bin: count, mean predicted P(Urgent) and observed Urgent rate.

    All bins are listed; an empty bin has n = 0 and None for its means.
    """
    y, p = _check_probs(y_true, probs, n_bins)
    ids = _bin_ids(p, n_bins)
    rows: list[dict[str, Any]] = []
    for b in range(n_bins):
        mask = ids == b
        n = int(mask.sum())
        conf = float(p[mask].mean()) if n else None
        acc = float(y[mask].mean()) if n else None
        rows.append(
            {
                "bin": b,
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "n": n,
                "mean_confidence": conf,
                "observed_rate": acc,
                "gap": abs(acc - conf) if n else None,
            }
        )
    return rows


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    """ECE of P(Urgent): sum over equal-width bins of (n_bin / n) * |observed rate - mean prob|.

    This is the binary (positive-class) reliability form, which is what matters for a
    score that is shown to users as a probability of urgency.
    """
    y, p = _check_probs(y_true, probs, n_bins)
    ids = _bin_ids(p, n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y.astype(np.float64), minlength=n_bins)
    # |sum_y - sum_p| / n equals (n_bin / n) * |rate - conf| and is 0 for empty bins.
    return float(np.abs(sum_y - sum_p).sum() / y.shape[0])


def ece_if_calibrated(
    probs: ArrayLike, measured: float | None = None, *, n_bins: int = 10, n_draws: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The ECE these very scores would show if they were perfectly calibrated: labels drawn as Bernoulli(p) for
    every film, ``n_draws`` times. Returns the mean, the 90% range (5th and 95th percentiles) and, when ``measured``
    is given, the share of draws at or above it (a one-sided p-value: small means the measured ECE is more than
    sample noise)."""
    p = np.asarray(probs, dtype=np.float64)
    _check_probs(np.zeros(p.shape[0], dtype=np.int64), p, n_bins)
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    ids = _bin_ids(p, n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    onehot = np.zeros((p.shape[0], n_bins))
    onehot[np.arange(p.shape[0]), ids] = 1.0
    rng = np.random.default_rng(seed)
    draws = np.empty(n_draws)
    for start in range(0, n_draws, 500):  # 500 draws at a time keeps the label matrix small
        y = (rng.random((min(500, n_draws - start), p.shape[0])) < p).astype(np.float64)
        draws[start : start + y.shape[0]] = np.abs(y @ onehot - sum_p).sum(axis=1) / p.shape[0]
    lo, hi = np.quantile(draws, [0.05, 0.95])
    out: dict[str, Any] = {"mean": float(draws.mean()), "range90": [float(lo), float(hi)], "n_draws": int(n_draws)}
    if measured is not None:
        out["share_at_or_above_measured"] = float((draws >= measured - 1e-12).mean())
    return out
