"""Evaluation metrics for the Urgent / Non-Urgent triage decision and its evidence boxes.

Pure functions on numpy arrays, so that training scripts, the evaluation CLI and the
tests all compute a number the same way. ``1`` (positive) always means *Urgent*, and a
case is called positive when ``score >= threshold``.

scikit-learn's metrics are used where they exist (AUC, ROC curve, confusion matrix); it is
imported lazily so that the inference-only install can import this package without it.

Every function validates its inputs (1-D, same length, labels in {0, 1}, finite scores)
and raises :class:`ValueError` with a readable message, because a silently broadcast or
NaN-polluted metric is worse than a crash in a safety report.

The modules, by section: :mod:`.classification` (AUC, thresholds, operating point, curves),
:mod:`.bootstrap` (confidence intervals), :mod:`.calibration` (reliability, ECE),
:mod:`.localisation` (box IoU, pointing game), :mod:`.summary` (subgroups, headline summary)
and :mod:`.common` (input validation, lazy scikit-learn, :func:`to_jsonable`). Import the
names from here: ``from cxrtriage.evaluation import metrics; metrics.roc_auc(...)``.
"""

from __future__ import annotations

from cxrtriage.evaluation.metrics.bootstrap import (
    bootstrap_auc_ci,
    bootstrap_statistic_ci,
    bootstrap_threshold_interval,
)
from cxrtriage.evaluation.metrics.calibration import (
    ece_if_calibrated,
    expected_calibration_error,
    reliability_table,
)
from cxrtriage.evaluation.metrics.classification import (
    OperatingPoint,
    mean_specificity_at_high_sensitivity,
    operating_point,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    threshold_for_sensitivity,
)
from cxrtriage.evaluation.metrics.common import to_jsonable
from cxrtriage.evaluation.metrics.localisation import best_box_iou, box_iou, pointing_hit
from cxrtriage.evaluation.metrics.summary import subgroup_metrics, summarize

__all__ = [
    "OperatingPoint",
    "best_box_iou",
    "bootstrap_auc_ci",
    "bootstrap_statistic_ci",
    "bootstrap_threshold_interval",
    "box_iou",
    "ece_if_calibrated",
    "expected_calibration_error",
    "mean_specificity_at_high_sensitivity",
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
