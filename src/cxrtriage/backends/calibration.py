"""Platt scaling: the one calibration used for every urgency head (bundled CNN, MedSigLIP probe)."""

from __future__ import annotations

import numpy as np


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit ``p = sigmoid(a * logit + b)`` on validation logits (needs scikit-learn: the [train] extra)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(logits, dtype=np.float64)[:, None], np.asarray(y))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def platt(logits: np.ndarray | float, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(logits) + b)))
