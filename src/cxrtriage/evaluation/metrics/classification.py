"""Classification metrics of the Urgent / Non-Urgent call: AUC, the sensitivity-target threshold, the operating
point at a threshold, and the ROC / precision-recall curves.

``1`` (positive) always means *Urgent*, and a case is called positive when ``score >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.evaluation.metrics.common import (
    check_fraction,
    check_pair,
    check_threshold,
    safe_div,
    sklearn_metrics,
    to_jsonable,
)

__all__ = [
    "OperatingPoint",
    "operating_point",
    "precision_recall_curve",
    "roc_auc",
    "roc_curve",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "threshold_for_sensitivity",
    "threshold_from_positives",
]


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; ties count one half.

    Returns NaN (not an exception) when only one class is present, because small
    subgroups legitimately have no urgent cases and the report should say "n/a".
    """
    y, s = check_pair(y_true, scores)
    if y.min() == y.max():
        return math.nan
    return float(sklearn_metrics().roc_auc_score(y, s))


def threshold_from_positives(positive_scores: np.ndarray, target: float) -> float:
    """The k-th largest of the (non-empty) positive cases' scores, k = ceil(target * n_pos)."""
    pos = np.sort(positive_scores)[::-1]
    # The small tolerance keeps e.g. 0.95 * 20 = 19.000000000000004 from becoming 20.
    k = max(1, math.ceil(target * pos.size - 1e-9))
    return float(pos[k - 1])


def threshold_for_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float = 0.95) -> float:
    """The highest threshold ``t`` with sensitivity(``scores >= t``) >= ``target``.

    Highest, because among thresholds meeting the safety target it flags the fewest
    non-urgent cases. It is always one of the positive cases' scores: the k-th largest,
    with k = ceil(target * n_pos).
    """
    y, s = check_pair(y_true, scores)
    target = check_fraction(target, "target", open_low=True)
    pos = s[y == 1]
    if pos.size == 0:
        raise ValueError("threshold_for_sensitivity needs at least one positive (Urgent) case")
    return threshold_from_positives(pos, target)


@dataclass(frozen=True)
class OperatingPoint:
    """Confusion counts and rates at one threshold (positive when score >= threshold).

    Rates whose denominator is zero are NaN rather than 0, so "undefined" is never
    mistaken for "bad".
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float
    specificity: float
    ppv: float
    npv: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-friendly dict (NaN becomes None)."""
        return to_jsonable(asdict(self))


def operating_point(y_true: ArrayLike, scores: ArrayLike, threshold: float) -> OperatingPoint:
    """Sensitivity, specificity, PPV and NPV when calling ``score >= threshold`` Urgent."""
    y, s = check_pair(y_true, scores)
    t = check_threshold(threshold)
    pred = (s >= t).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in sklearn_metrics().confusion_matrix(y, pred, labels=[0, 1]).ravel())
    return OperatingPoint(
        threshold=t,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=safe_div(tp, tp + fn),
        specificity=safe_div(tn, tn + fp),
        ppv=safe_div(tp, tp + fp),
        npv=safe_div(tn, tn + fn),
    )


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with every threshold kept."""
    return sklearn_metrics().roc_curve(y, s, drop_intermediate=False)


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> dict[str, list[float]]:
    """ROC points (false-positive rate, true-positive rate, threshold) for plotting; every threshold kept."""
    y, s = check_pair(y_true, scores)
    fpr, tpr, thr = _roc(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": thr.tolist()}


def precision_recall_curve(y_true: ArrayLike, scores: ArrayLike) -> dict[str, Any]:
    """Precision-recall points and average precision (area under the PR curve, step-wise) for plotting."""
    y, s = check_pair(y_true, scores)
    sk = sklearn_metrics()
    precision, recall, thr = sk.precision_recall_curve(y, s)
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "threshold": thr.tolist(),
        "average_precision": float(sk.average_precision_score(y, s)) if 0 < y.sum() < y.shape[0] else math.nan,
    }


def _best_rate_on_roc(y_true: ArrayLike, scores: ArrayLike, target: float, *, given: str) -> float:
    """Best sensitivity among ROC thresholds with specificity >= ``target`` (``given="specificity"``), or best
    specificity among those with sensitivity >= ``target`` (``given="sensitivity"``); NaN with one class only."""
    y, s = check_pair(y_true, scores)
    target = check_fraction(target, "target")
    if y.min() == y.max():
        return math.nan
    fpr, tpr, _ = _roc(y, s)
    spec = 1.0 - fpr
    if given == "specificity":
        return float(tpr[spec >= target - 1e-12].max())  # the ROC starts at (0, 0): never empty
    return float(spec[tpr >= target - 1e-12].max())  # the ROC ends at (1, 1): never empty


def sensitivity_at_specificity(y_true: ArrayLike, scores: ArrayLike, target: float) -> float:
    """Best sensitivity among ROC thresholds whose specificity is >= ``target``.

    NaN when only one class is present.
    """
    return _best_rate_on_roc(y_true, scores, target, given="specificity")


def specificity_at_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float) -> float:
    """Best specificity among ROC thresholds whose sensitivity is >= ``target``.

    NaN when only one class is present.
    """
    return _best_rate_on_roc(y_true, scores, target, given="sensitivity")


def mean_specificity_at_high_sensitivity(y_true: ArrayLike, scores: ArrayLike, low: float = 0.8) -> float:
    """Specificity averaged over sensitivities from ``low`` to 1 (each as :func:`specificity_at_sensitivity`).

    Why: a rule-out operating point lives at high sensitivity, but specificity at one sensitivity (0.95) on a few
    dozen urgent films is set by one or two of them; the mean over a band of sensitivities (a partial AUC of the
    high-sensitivity end, in specificity units) moves less when one film's score does. NaN with one class only.
    """
    y, s = check_pair(y_true, scores)
    low = check_fraction(low, "low")
    if y.min() == y.max():
        return math.nan
    fpr, tpr, _ = _roc(y, s)
    spec = 1.0 - fpr
    grid = np.linspace(low, 1.0, 101)
    return float(np.mean([spec[tpr >= g - 1e-12].max() for g in grid]))
