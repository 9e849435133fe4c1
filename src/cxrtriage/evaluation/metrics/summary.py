"""Report-level combinations of the metrics: per-subgroup breakdowns and the JSON-ready headline summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.evaluation.metrics.bootstrap import bootstrap_auc_ci
from cxrtriage.evaluation.metrics.calibration import expected_calibration_error
from cxrtriage.evaluation.metrics.classification import operating_point, roc_auc
from cxrtriage.evaluation.metrics.common import check_pair, check_threshold, to_jsonable

__all__ = ["subgroup_metrics", "summarize"]


def subgroup_metrics(
    y_true: ArrayLike, scores: ArrayLike, groups: Sequence[str], threshold: float
) -> dict[str, dict[str, Any]]:
    """Per subgroup (e.g. view AP/PA, sex): n, n_pos, AUC and the operating point.

    Same global threshold for every group, because that is what will be deployed; the
    question is whether it under-serves any group. Undefined values are NaN.
    """
    y, s = check_pair(y_true, scores)
    t = check_threshold(threshold)
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
    y, s = check_pair(y_true, scores)
    t = check_threshold(threshold)
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
