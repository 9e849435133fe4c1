"""Calibration metrics of P(Urgent): the reliability table and the expected calibration error (ECE).

They measure calibration; fitting and applying the Platt calibration itself is
:mod:`cxrtriage.backends.calibration`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.evaluation.metrics.common import check_pair

__all__ = ["expected_calibration_error", "reliability_table"]


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
