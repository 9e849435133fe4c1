"""Evaluation metrics for the Urgent / Non-Urgent triage decision and its evidence boxes.

Pure functions on numpy arrays, so that training scripts, the evaluation CLI and the
tests all compute a number the same way. ``1`` (positive) always means *Urgent*, and a
case is called positive when ``score >= threshold``.

scikit-learn's metrics are used where they exist (AUC, ROC curve, confusion matrix); it is
imported lazily so that the inference-only install can import this module without it.

Every function validates its inputs (1-D, same length, labels in {0, 1}, finite scores)
and raises :class:`ValueError` with a readable message, because a silently broadcast or
NaN-polluted metric is worse than a crash in a safety report.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "OperatingPoint",
    "best_box_iou",
    "bootstrap_auc_ci",
    "bootstrap_threshold_interval",
    "box_iou",
    "expected_calibration_error",
    "operating_point",
    "pointing_hit",
    "reliability_table",
    "roc_auc",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "subgroup_metrics",
    "summarize",
    "threshold_for_sensitivity",
    "roc_curve",
    "precision_recall_curve",
    "to_jsonable",
]

_SKLEARN_HINT = "scikit-learn is needed for evaluation metrics: pip install 'cxrtriage[eval]'"


def _sklearn_metrics() -> Any:
    """Import ``sklearn.metrics`` on first use (it is an optional 'eval' extra)."""
    try:
        from sklearn import metrics
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_SKLEARN_HINT) from exc
    return metrics


# --------------------------------------------------------------------------- validation


def _as_labels(y_true: ArrayLike, name: str = "y_true") -> np.ndarray:
    """Return labels as a 1-D int array, refusing anything that is not 0/1."""
    try:
        y = np.asarray(y_true)
    except Exception as exc:  # ragged nested lists, etc.
        raise ValueError(f"{name} could not be read as a 1-D array: {exc}") from exc
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric 0/1 labels (1 = Urgent), got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite values")
    bad = ~np.isin(y, (0, 1))
    if np.any(bad):
        examples = ", ".join(repr(v) for v in np.unique(y[bad])[:5].tolist())
        raise ValueError(f"{name} must contain only 0 and 1 (1 = Urgent); found {examples}")
    return y.astype(np.int64)


def _as_scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """Return scores as a 1-D float array, refusing NaN/inf (they would sort arbitrarily)."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(s)):
        n_bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s)")
    return s


def _check_pair(y_true: ArrayLike, scores: ArrayLike, score_name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    y = _as_labels(y_true)
    s = _as_scores(scores, score_name)
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true and {score_name} must have the same length, got {y.shape[0]} and {s.shape[0]}")
    return y, s


def _check_probs(y_true: ArrayLike, probs: ArrayLike, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    y, p = _check_pair(y_true, probs, "probs")
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("probs must lie in [0, 1] for calibration metrics (pass calibrated probabilities)")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return y, p


def _check_fraction(value: float, name: str, *, open_low: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    low_ok = v > 0.0 if open_low else v >= 0.0
    if not (low_ok and v <= 1.0):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a number, got {threshold!r}") from exc
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return t


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (0.0 < a < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def _check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


# --------------------------------------------------------------------------- ranking


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; ties count one half.

    Returns NaN (not an exception) when only one class is present, because small
    subgroups legitimately have no urgent cases and the report should say "n/a".
    """
    y, s = _check_pair(y_true, scores)
    if y.min() == y.max():
        return math.nan
    return float(_sklearn_metrics().roc_auc_score(y, s))


def _auc_from_levels(y: np.ndarray, levels: np.ndarray, n_levels: int) -> float:
    """Exact AUC (Mann-Whitney, ties = 1/2) from precomputed score ranks.

    Same value as ``roc_auc_score`` but ~100x faster, which matters inside a
    2000-resample bootstrap; ``tests/test_metrics.py`` checks the two agree.
    """
    pos_w = np.bincount(levels[y == 1], minlength=n_levels)
    neg_w = np.bincount(levels[y == 0], minlength=n_levels)
    n_pos, n_neg = int(pos_w.sum()), int(neg_w.sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    neg_below = np.cumsum(neg_w) - neg_w
    return float((pos_w * (neg_below + 0.5 * neg_w)).sum() / (n_pos * n_neg))


def _cluster_indices(n: int, groups: ArrayLike | None) -> list[np.ndarray]:
    """Row indices per resampling unit: one per row, or one per cluster (e.g. patient)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(f"groups must be 1-D with one entry per case ({n}), got shape {g.shape}")
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in g.tolist()):
        raise ValueError("groups contains missing ids (None/NaN); give each such case its own id")
    _, inverse = np.unique(g.astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def _bootstrap_indices(clusters: list[np.ndarray], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield row indices of ``n_boot`` resamples drawn cluster-wise with replacement."""
    rng = np.random.default_rng(seed)
    k = len(clusters)
    order = np.concatenate(clusters)
    sizes = np.array([len(c) for c in clusters])
    starts = np.cumsum(sizes) - sizes
    for _ in range(n_boot):
        chosen = rng.integers(0, k, size=k)
        if order.shape[0] == k:  # one row per cluster: plain bootstrap
            yield order[chosen]
            continue
        lens = sizes[chosen]
        # positions inside `order`: each chosen cluster's start, then start+1, ... (vectorised concat)
        offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        yield order[np.repeat(starts[chosen], lens) + offsets]


def bootstrap_auc_ci(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the AUC.

    Pass ``groups`` (e.g. patient ids) to resample whole patients: several images of one
    patient are correlated, and resampling images would give a falsely narrow interval.
    Resamples containing a single class are skipped; (NaN, NaN) if none is usable.
    """
    y, s = _check_pair(y_true, scores)
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    clusters = _cluster_indices(y.shape[0], groups)
    if y.min() == y.max():
        return (math.nan, math.nan)
    levels = np.unique(s, return_inverse=True)[1].reshape(-1)
    aucs = []
    for idx in _bootstrap_indices(clusters, n_boot, seed):
        auc = _auc_from_levels(y[idx], levels[idx], int(levels.max()) + 1)
        if not math.isnan(auc):
            aucs.append(auc)
    if not aucs:
        return (math.nan, math.nan)
    lo, hi = np.quantile(np.asarray(aucs), [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------- thresholds


def threshold_for_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float = 0.95) -> float:
    """The highest threshold ``t`` with sensitivity(``scores >= t``) >= ``target``.

    Highest, because among thresholds meeting the safety target it flags the fewest
    non-urgent cases. It is always one of the positive cases' scores: the k-th largest,
    with k = ceil(target * n_pos).
    """
    y, s = _check_pair(y_true, scores)
    target = _check_fraction(target, "target", open_low=True)
    pos = np.sort(s[y == 1])[::-1]
    if pos.size == 0:
        raise ValueError("threshold_for_sensitivity needs at least one positive (Urgent) case")
    # The small tolerance keeps e.g. 0.95 * 20 = 19.000000000000004 from becoming 20.
    k = max(1, math.ceil(target * pos.size - 1e-9))
    return float(pos[k - 1])


def bootstrap_threshold_interval(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    target: float = 0.95,
    n_boot: int = 1000,
    alpha: float = 0.10,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile interval of :func:`threshold_for_sensitivity` over bootstrap resamples.

    It shows how unstable the operating threshold is and defines the "review band"
    around it. ``groups`` resamples clusters (patients); resamples without a positive
    case are skipped; (NaN, NaN) if none is usable.
    """
    y, s = _check_pair(y_true, scores)
    target = _check_fraction(target, "target", open_low=True)
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    clusters = _cluster_indices(y.shape[0], groups)
    if not np.any(y == 1):
        raise ValueError("bootstrap_threshold_interval needs at least one positive (Urgent) case")
    thresholds = []
    for idx in _bootstrap_indices(clusters, n_boot, seed):
        pos = np.sort(s[idx][y[idx] == 1])[::-1]
        if pos.size == 0:
            continue
        k = max(1, math.ceil(target * pos.size - 1e-9))
        thresholds.append(pos[k - 1])
    if not thresholds:
        return (math.nan, math.nan)
    lo, hi = np.quantile(np.asarray(thresholds), [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


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
    y, s = _check_pair(y_true, scores)
    t = _check_threshold(threshold)
    pred = (s >= t).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in _sklearn_metrics().confusion_matrix(y, pred, labels=[0, 1]).ravel())
    return OperatingPoint(
        threshold=t,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=_safe_div(tp, tp + fn),
        specificity=_safe_div(tn, tn + fp),
        ppv=_safe_div(tp, tp + fp),
        npv=_safe_div(tn, tn + fn),
    )


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = _sklearn_metrics().roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> dict[str, list[float]]:
    """ROC points (false-positive rate, true-positive rate, threshold) for plotting; every threshold kept."""
    y, s = _check_pair(y_true, scores)
    fpr, tpr, thr = _sklearn_metrics().roc_curve(y, s, drop_intermediate=False)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": thr.tolist()}


def precision_recall_curve(y_true: ArrayLike, scores: ArrayLike) -> dict[str, Any]:
    """Precision-recall points and average precision (area under the PR curve, step-wise) for plotting."""
    y, s = _check_pair(y_true, scores)
    sk = _sklearn_metrics()
    precision, recall, thr = sk.precision_recall_curve(y, s)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "threshold": thr.tolist(),
            "average_precision": float(sk.average_precision_score(y, s)) if 0 < y.sum() < y.shape[0] else math.nan}


def sensitivity_at_specificity(y_true: ArrayLike, scores: ArrayLike, target: float) -> float:
    """Best sensitivity among ROC thresholds whose specificity is >= ``target``.

    NaN when only one class is present.
    """
    y, s = _check_pair(y_true, scores)
    target = _check_fraction(target, "target")
    if y.min() == y.max():
        return math.nan
    fpr, tpr = _roc(y, s)
    ok = (1.0 - fpr) >= target - 1e-12
    return float(tpr[ok].max())  # the ROC starts at (0, 0), so `ok` is never empty


def specificity_at_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float) -> float:
    """Best specificity among ROC thresholds whose sensitivity is >= ``target``.

    NaN when only one class is present.
    """
    y, s = _check_pair(y_true, scores)
    target = _check_fraction(target, "target")
    if y.min() == y.max():
        return math.nan
    fpr, tpr = _roc(y, s)
    ok = tpr >= target - 1e-12
    return float((1.0 - fpr[ok]).max())  # the ROC ends at (1, 1), so `ok` is never empty


# --------------------------------------------------------------------------- calibration


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


# --------------------------------------------------------------------------- localisation


def _as_box(box: Sequence[float], name: str) -> tuple[float, float, float, float]:
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 4 numbers (x, y, w, h), got {box!r}") from exc
    if len(vals) != 4:
        raise ValueError(f"{name} must be 4 numbers (x, y, w, h), got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} contains NaN or infinite values: {box!r}")
    if vals[2] < 0 or vals[3] < 0:
        raise ValueError(f"{name} has negative width or height: {box!r}")
    return vals[0], vals[1], vals[2], vals[3]


def _as_boxes(boxes: Sequence[Sequence[float]], name: str) -> list[tuple[float, float, float, float]]:
    if isinstance(boxes, np.ndarray):
        if boxes.size == 0:
            return []
        if boxes.ndim != 2:
            raise ValueError(f"{name} must be a list of (x, y, w, h) boxes, got array shape {boxes.shape}")
    return [_as_box(b, f"{name}[{i}]") for i, b in enumerate(boxes)]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0.0 if both have zero area."""
    ax, ay, aw, ah = _as_box(a, "a")
    bx, by, bw, bh = _as_box(b, "b")
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def best_box_iou(pred_boxes: Sequence[Sequence[float]], gt_boxes: Sequence[Sequence[float]]) -> float:
    """Max IoU over all (predicted, expert) pairs: did any evidence box find any lesion?

    0.0 when there are no predicted boxes (a miss); ValueError when there are no expert
    boxes, since the image cannot be scored for localisation then.
    """
    preds = _as_boxes(pred_boxes, "pred_boxes")
    gts = _as_boxes(gt_boxes, "gt_boxes")
    if not gts:
        raise ValueError("gt_boxes is empty: localisation is only scored on images with expert boxes")
    if not preds:
        return 0.0
    return max(box_iou(p, g) for p in preds for g in gts)


def pointing_hit(point_xy: Sequence[float], gt_boxes: Sequence[Sequence[float]]) -> bool:
    """Pointing game: is the point (e.g. the saliency peak) inside any expert box (edges count)?"""
    try:
        px, py = (float(v) for v in point_xy)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"point_xy must be 2 numbers (x, y), got {point_xy!r}") from exc
    if not (math.isfinite(px) and math.isfinite(py)):
        raise ValueError(f"point_xy contains NaN or infinite values: {point_xy!r}")
    gts = _as_boxes(gt_boxes, "gt_boxes")
    if not gts:
        raise ValueError("gt_boxes is empty: the pointing game is only scored on images with expert boxes")
    return any(x <= px <= x + w and y <= py <= y + h for x, y, w, h in gts)


# --------------------------------------------------------------------------- reports


def subgroup_metrics(
    y_true: ArrayLike, scores: ArrayLike, groups: Sequence[str], threshold: float
) -> dict[str, dict[str, Any]]:
    """Per subgroup (e.g. view AP/PA, sex): n, n_pos, AUC and the operating point.

    Same global threshold for every group, because that is what will be deployed; the
    question is whether it under-serves any group. Undefined values are NaN.
    """
    y, s = _check_pair(y_true, scores)
    t = _check_threshold(threshold)
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != y.shape[0]:
        raise ValueError(f"groups must be 1-D with one entry per case ({y.shape[0]}), got shape {g.shape}")
    g = g.astype(str)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(np.unique(g).tolist()):
        mask = g == name
        op = operating_point(y[mask], s[mask], t)
        out[name] = {
            "n": int(mask.sum()),
            "n_pos": int(y[mask].sum()),
            "auc": roc_auc(y[mask], s[mask]),
            "sensitivity": op.sensitivity,
            "specificity": op.specificity,
            "ppv": op.ppv,
            "npv": op.npv,
        }
    return out


def to_jsonable(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python types and NaN/inf into None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def summarize(
    y_true: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    *,
    groups: ArrayLike | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Headline numbers, JSON-ready (NaN -> None): n, n_pos, prevalence, AUC + 95% CI,
    operating point at ``threshold`` and ECE.

    ``groups`` are *cluster* ids (patient ids) for the bootstrap, not subgroups; use
    :func:`subgroup_metrics` for view / sex breakdowns. ECE is None when the scores are
    not probabilities in [0, 1].
    """
    y, s = _check_pair(y_true, scores)
    t = _check_threshold(threshold)
    lo, hi = bootstrap_auc_ci(y, s, n_boot=n_boot, alpha=0.05, seed=seed, groups=groups)
    is_prob = bool(np.all((s >= 0.0) & (s <= 1.0)))
    result = {
        "n": int(y.shape[0]),
        "n_pos": int(y.sum()),
        "prevalence": float(y.mean()),
        "auc": roc_auc(y, s),
        "auc_ci95": [lo, hi],
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "cluster": groups is not None},
        "operating_point": asdict(operating_point(y, s, t)),
        "ece": expected_calibration_error(y, s) if is_prob else None,
    }
    return to_jsonable(result)
