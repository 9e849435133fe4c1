"""Train the MedSigLIP linear probe ([train] extra: scikit-learn). Kept apart from the backend so inference
never imports sklearn.

Same rules as the bundled model (cxrtriage.train.export): Platt calibration on validation logits, the operating
threshold is the highest calibrated score with sensitivity >= 0.95 on validation, and the review band is the 50%
(cluster-)bootstrap interval of that threshold, widened to contain it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrtriage.backends.calibration import fit_platt, platt
from cxrtriage.backends.medsiglip import LinearProbe
from cxrtriage.evaluation import metrics

TARGET_SENSITIVITY = 0.95
REVIEW_BAND_ALPHA = 0.5


def train_linear_probe(
    embeddings: np.ndarray,
    labels: np.ndarray,
    val_embeddings: np.ndarray,
    val_labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    C: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> LinearProbe:
    """Logistic regression on train embeddings; calibration and operating point on validation only.

    ``groups`` are validation patient ids so the bootstrap resamples patients, not images.
    ``class_weight="balanced"`` because urgent cases are the minority and the head must not ignore them.
    """
    from sklearn.linear_model import LogisticRegression

    x, y = np.asarray(embeddings, dtype=np.float64), np.asarray(labels).astype(int)
    xv, yv = np.asarray(val_embeddings, dtype=np.float64), np.asarray(val_labels).astype(int)
    if x.ndim != 2 or xv.ndim != 2 or x.shape[1] != xv.shape[1]:
        raise ValueError(f"embeddings must be (N, D) with the same D, got {x.shape} and {xv.shape}")
    for name, arr in (("labels", y), ("val_labels", yv)):
        if set(np.unique(arr)) != {0, 1}:
            raise ValueError(f"{name} must contain both classes 0 and 1")
    head = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed).fit(x, y)
    w, b = head.coef_[0].astype(np.float64), float(head.intercept_[0])
    val_logit = xv @ w + b
    a, pb = fit_platt(val_logit, yv)
    p_val = platt(val_logit, a, pb)
    threshold = metrics.threshold_for_sensitivity(yv, p_val, TARGET_SENSITIVITY)
    lo, hi = metrics.bootstrap_threshold_interval(
        yv, p_val, target=TARGET_SENSITIVITY, n_boot=n_boot, alpha=REVIEW_BAND_ALPHA, seed=seed, groups=groups
    )
    if np.isnan(lo) or np.isnan(hi):
        lo = hi = threshold
    band = (float(min(lo, threshold)), float(max(hi, threshold)))
    info = {
        "n_train": int(len(y)),
        "n_val": int(len(yv)),
        "dim": int(x.shape[1]),
        "val_auc": metrics.roc_auc(yv, p_val),
        "calibration": "platt on validation logits",
        "threshold_rule": f"highest calibrated score with sensitivity >= {TARGET_SENSITIVITY} on validation",
        "review_band_rule": f"{1 - REVIEW_BAND_ALPHA:.0%} {'cluster-' if groups is not None else ''}bootstrap interval "
        "of the validation threshold, widened to contain the threshold",
        **(meta or {}),
    }
    return LinearProbe(
        weight=w.tolist(), bias=b, platt_a=a, platt_b=pb, threshold=float(threshold), review_band=band, meta=info
    )
