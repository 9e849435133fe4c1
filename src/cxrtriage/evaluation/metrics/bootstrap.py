"""Bootstrap confidence intervals: of the AUC, of the sensitivity-target threshold (the "review band") and of any
other statistic of (labels, scores), such as the specificity at a sensitivity target.

Resampling can be cluster-wise (``groups`` = patient ids), because several images of one patient are correlated
and resampling images would give a falsely narrow interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.evaluation.metrics.classification import threshold_from_positives
from cxrtriage.evaluation.metrics.common import check_alpha, check_fraction, check_n_boot, check_pair

__all__ = ["auc_from_levels", "bootstrap_auc_ci", "bootstrap_statistic_ci", "bootstrap_threshold_interval"]


def auc_from_levels(y: np.ndarray, levels: np.ndarray, n_levels: int) -> float:
    """Exact AUC (Mann-Whitney, ties = 1/2) from precomputed score ranks.

    Same value as ``roc_auc_score`` but ~100x faster, which matters inside a
    2000-resample bootstrap; ``tests/evaluation/test_metrics.py`` checks the two agree.
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
    y, s = check_pair(y_true, scores)
    n_boot = check_n_boot(n_boot)
    alpha = check_alpha(alpha)
    clusters = _cluster_indices(y.shape[0], groups)
    if y.min() == y.max():
        return (math.nan, math.nan)
    levels = np.unique(s, return_inverse=True)[1].reshape(-1)
    aucs = []
    for idx in _bootstrap_indices(clusters, n_boot, seed):
        auc = auc_from_levels(y[idx], levels[idx], int(levels.max()) + 1)
        if not math.isnan(auc):
            aucs.append(auc)
    if not aucs:
        return (math.nan, math.nan)
    lo, hi = np.quantile(np.asarray(aucs), [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


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
    y, s = check_pair(y_true, scores)
    target = check_fraction(target, "target", open_low=True)
    n_boot = check_n_boot(n_boot)
    alpha = check_alpha(alpha)
    clusters = _cluster_indices(y.shape[0], groups)
    if not np.any(y == 1):
        raise ValueError("bootstrap_threshold_interval needs at least one positive (Urgent) case")
    thresholds = []
    for idx in _bootstrap_indices(clusters, n_boot, seed):
        pos = s[idx][y[idx] == 1]
        if pos.size == 0:
            continue
        thresholds.append(threshold_from_positives(pos, target))
    if not thresholds:
        return (math.nan, math.nan)
    lo, hi = np.quantile(np.asarray(thresholds), [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


def bootstrap_statistic_ci(
    y_true: ArrayLike,
    scores: ArrayLike,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: ArrayLike | None = None,
    one_class_ok: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(y, scores)`` (e.g. specificity at sensitivity 0.95), with the
    same cluster-wise resampling as :func:`bootstrap_auc_ci`. Resamples with one class only (unless
    ``one_class_ok``: a statistic such as ECE is defined on them), or where the statistic is NaN, are skipped;
    (NaN, NaN) if none is usable."""
    y, s = check_pair(y_true, scores)
    n_boot = check_n_boot(n_boot)
    alpha = check_alpha(alpha)
    clusters = _cluster_indices(y.shape[0], groups)
    if y.min() == y.max() and not one_class_ok:
        return (math.nan, math.nan)
    values = []
    for idx in _bootstrap_indices(clusters, n_boot, seed):
        yb = y[idx]
        if yb.min() == yb.max() and not one_class_ok:
            continue
        v = statistic(yb, s[idx])
        if not math.isnan(v):
            values.append(v)
    if not values:
        return (math.nan, math.nan)
    lo, hi = np.quantile(np.asarray(values), [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))
