"""Platt scaling: the one calibration used for every urgency head (bundled CNN, MedSigLIP probe)."""

from __future__ import annotations

import numpy as np

#: the slope given when the fit finds none above zero: a negative slope would invert every decision, so the
#: scores stay in the logits' order but carry almost nothing (``degenerate``), and the result says so
DEGENERATE_SLOPE = 1e-3
DEGENERATE_WARNING = (
    "the calibration found no usable ranking in the validation logits (fitted slope <= 0): scores "
    "are uninformative and the thresholds label nearly every film Urgent"
)


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit ``p = sigmoid(a * logit + b)`` on validation logits (needs scikit-learn: the [train] extra). Never a
    non-positive slope: then ``a`` = :data:`DEGENERATE_SLOPE` and ``b`` puts the mean score at the prevalence."""
    from sklearn.linear_model import LogisticRegression

    x, t = np.asarray(logits, dtype=np.float64), np.asarray(y)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(x[:, None], t)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a > 0:
        return a, b
    prev = float(np.clip(t.mean(), 1e-3, 1 - 1e-3))
    return DEGENERATE_SLOPE, float(np.log(prev / (1 - prev)) - DEGENERATE_SLOPE * x.mean())


def degenerate(a: float) -> bool:
    return a <= DEGENERATE_SLOPE


def platt(logits: np.ndarray | float, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(logits) + b)))
