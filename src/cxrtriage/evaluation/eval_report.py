"""The evaluation report of a predictions file against a gold file (``prototype/eval/eval_metrics.py``, notebook 03):
counts, AUC + CI, operating points, calibration, subgroups, images the gate rejected, localisation.

Every number comes from :mod:`cxrtriage.evaluation.metrics`; this module only reads, joins and arranges.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.gold import load_gold
from cxrtriage.evaluation.input_files import InputProblem, is_number
from cxrtriage.evaluation.joining import join
from cxrtriage.evaluation.localisation import localisation
from cxrtriage.evaluation.prediction_files import PredictionsFile, load_predictions
from cxrtriage.evaluation.reference_boxes import load_boxes

__all__ = [
    "SUBGROUP_FIELDS",
    "choose_threshold",
    "evaluate_files",
]


SUBGROUP_FIELDS = ("view", "sex", "age_band")


def choose_threshold(cli_threshold: float | None, matched: list[dict[str, Any]]) -> tuple[float, str]:
    """The operating threshold: the caller's, else the single threshold every prediction row carries."""
    if cli_threshold is not None:
        return float(cli_threshold), "--threshold"
    values = {p["threshold"] for p in matched}
    if None in values:
        raise InputProblem("some predictions have no 'threshold' field; pass --threshold")
    if len(values) != 1:
        shown = ", ".join(str(v) for v in sorted(values, key=str)[:5])
        raise InputProblem(f"predictions use different thresholds ({shown}); pass --threshold")
    value = values.pop()
    if not is_number(value):
        raise InputProblem(f"the predictions' 'threshold' is not a number: {value!r}; pass --threshold")
    return float(value), "predictions"


def _at_target_recall(y: np.ndarray, s: np.ndarray, target: float) -> dict[str, Any]:
    """The highest threshold reaching ``target`` sensitivity on these cases, and what it costs there."""
    try:
        t = metrics.threshold_for_sensitivity(y, s, target)
    except ValueError as exc:  # no urgent case: no such threshold
        return {"target": target, "threshold": None, "operating_point": None, "note": str(exc)}
    return {"target": target, "threshold": t, "operating_point": metrics.operating_point(y, s, t).to_dict()}


def _not_scored(gold: dict[str, dict[str, Any]], preds: PredictionsFile, ids: list[str]) -> dict[str, Any]:
    urgent = [k for k in ids if gold[k]["y"] == 1]
    return {
        "n": len(ids),
        "n_urgent": len(urgent),
        "n_non_urgent": len(ids) - len(urgent),
        "urgent_ids": urgent,
        "ids": ids,
        "error_types": dict(sorted(Counter(preds.errors[k]["error_type"] for k in ids).items())),
    }


def evaluate_files(
    preds_path: Path,
    gold_path: Path,
    *,
    threshold: float | None = None,
    target_recall: float = 0.95,
    target_specificity: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    allow_unmatched: bool = False,
    boxes_path: Path | None = None,
) -> dict[str, Any]:
    """The full report dict (JSON-ready): counts, AUC + CI, operating points, calibration, subgroups,
    images the gate rejected, and localisation when ``boxes_path`` is given. Raises :class:`InputProblem`."""
    preds_path, gold_path = Path(preds_path), Path(gold_path)
    gold = load_gold(gold_path)
    preds = load_predictions(preds_path)
    boxes = load_boxes(Path(boxes_path)) if boxes_path is not None else None
    j = join(gold, preds, gold_path=gold_path, allow_unmatched=allow_unmatched)
    keys = j.matched
    counts = {
        "pred_rows": len(preds),
        "pred_errors": len(preds.errors),
        "pred_errors_in_gold": len(j.not_scored),
        "pred_unmatched": sum(k not in gold for k in preds.scored),
        "gold_rows": len(gold),
        "gold_without_prediction": len(j.gold_only),
        "matched": len(keys),
    }
    thr, source = choose_threshold(threshold, [preds.scored[k] for k in keys])
    y = np.array([gold[k]["y"] for k in keys])
    s = np.array([preds.scored[k]["score"] for k in keys])
    # Images without a patient id are their own cluster.
    has_pid = any(gold[k]["patient_id"] is not None for k in keys)
    clusters = (
        [str(gold[k]["patient_id"]) if gold[k]["patient_id"] is not None else f"image:{k}" for k in keys]
        if has_pid
        else None
    )

    report: dict[str, Any] = {
        "inputs": {"preds": str(preds_path), "gold": str(gold_path), **counts},
        "threshold": thr,
        "threshold_source": source,
        "bootstrap_unit": "patient_id" if has_pid else "image",
        **metrics.summarize(y, s, thr, groups=clusters, n_boot=n_boot, seed=seed),
        "target_sensitivity": target_recall,
        "specificity_at_target_sensitivity": metrics.specificity_at_sensitivity(y, s, target_recall),
        "target_recall": _at_target_recall(y, s, target_recall),
        "target_specificity": target_specificity,
        "sensitivity_at_target_specificity": metrics.sensitivity_at_specificity(y, s, target_specificity),
        # Ties are worth a note: with 4-decimal scores one case sat exactly on the shipped threshold.
        "n_scores_equal_threshold": int(np.sum(s == thr)),
        "not_scored": _not_scored(gold, preds, j.not_scored),
        "unmatched": {"gold_without_prediction": j.gold_only, "predictions_without_gold": j.preds_only},
    }
    # The emitted label can differ from score >= threshold (the review band is labelled Urgent).
    labels = [preds.scored[k]["label"] for k in keys]
    if all(lab in ("Urgent", "Non-Urgent") for lab in labels):
        called = np.array([lab == "Urgent" for lab in labels], dtype=float)
        report["label_operating_point"] = metrics.operating_point(y, called, 0.5).to_dict()
    report["subgroups"] = {
        f: metrics.subgroup_metrics(y, s, [str(gold[k][f] or "unknown") for k in keys], thr)
        for f in SUBGROUP_FIELDS
        if any(gold[k][f] is not None for k in keys)
    }
    if boxes is not None:
        report["localisation"] = localisation(preds, boxes, boxes_path=boxes_path or "boxes")
    return metrics.to_jsonable(report)
