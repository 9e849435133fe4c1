"""Calibration and operating point of the shipped int8 urgency model, from its validation logits.

One function for ``cxrtriage export`` (fresh model) and ``cxrtriage recalibrate`` (the shipped model, refitted
without retraining). Platt scaling is fitted on the validation parts of every source pooled together, as a
deployment mixes them: NIH adults, pediatric films, JSRT normal adults of a site the classifier never trained on and,
when its data is there, Shenzhen adults (a third adult site, tuberculosis = urgent) as one more source like the others.
Generation 2 first shipped a fit on NIH validation only (test ECE NIH 0.141, pediatric 0.044, see
``card.json`` ``previous_calibration``). The threshold gives sensitivity >= 0.95 on EACH validation source
with positives (the lowest of the per-source thresholds), so the safety target does not depend on the mix.
Platt scaling is monotonic: it changes the scores and their calibration, not the ranking, so AUC and
specificity at a fixed sensitivity stay the same. A source that the classifier ranks worse than chance (an NIH-only
run on children: validation AUC 0.17) is left out of the fit and named: pooled in, it turned the fitted slope
negative and inverted every decision (measured on the leave-one-source-out run). Its own threshold still binds, so
sensitivity >= 0.95 holds on it too (by labelling most of its films Urgent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrtriage.backends.calibration import DEGENERATE_WARNING, degenerate, fit_platt, platt
from cxrtriage.data import Record, jsrt_urgency_parts, load_split_records
from cxrtriage.evaluation import metrics

#: central 50% interval: a 90% interval (first tried) spanned 0.08-0.34 and labelled 84% of non-urgent NIH test
#: images Urgent, which makes the band useless for triage; the interquartile range keeps "uncertain" meaningful
REVIEW_BAND_ALPHA = 0.5
SENSITIVITY_TARGET = 0.95
#: the source whose cluster-bootstrap threshold interval defines the review band (adults: the harder population)
BAND_SOURCE = "nih"
SOURCE_NAMES = {"nih": "NIH adult", "kermany": "pediatric", "jsrt": "JSRT normal adult", "shenzhen": "Shenzhen adult"}


@dataclass(frozen=True)
class ValidationSet:
    """Int8 logits, labels and patient ids of one source's validation part."""

    logits: np.ndarray
    labels: np.ndarray
    patients: list[str]


def fit_operating_point(sources: dict[str, ValidationSet]) -> dict:
    """model.json's ``calibration``, ``threshold``, ``review_band`` (with their rules) and per-source figures."""
    if BAND_SOURCE not in sources:
        raise ValueError(f"the validation sources must include {BAND_SOURCE!r}")
    aucs = {k: metrics.roc_auc(s.labels, s.logits) for k, s in sources.items() if 0 < s.labels.sum() < len(s.labels)}
    inverted = {k: auc for k, auc in aucs.items() if auc < 0.5}
    fitted = {k: s for k, s in sources.items() if k not in inverted}
    if not any(0 < s.labels.sum() < len(s.labels) for s in fitted.values()):
        raise ValueError(
            "the classifier ranks every validation source with both classes worse than chance "
            f"({', '.join(f'{k} AUC {v:.3f}' for k, v in inverted.items())}): no monotonic calibration fits"
        )
    logits = np.concatenate([s.logits for s in fitted.values()])
    labels = np.concatenate([s.labels for s in fitted.values()])
    a, b = fit_platt(logits, labels)
    per_source: dict[str, dict] = {}
    scores = {name: platt(s.logits, a, b) for name, s in sources.items()}
    for name, s in sources.items():
        p = scores[name]
        row = {
            "n": int(len(s.labels)),
            "n_pos": int(s.labels.sum()),
            "ece": metrics.expected_calibration_error(s.labels, p),
            "mean_score": float(p.mean()),
        }
        if 0 < s.labels.sum():
            row["threshold_for_sensitivity_0.95"] = metrics.threshold_for_sensitivity(s.labels, p, SENSITIVITY_TARGET)
        if name in aucs:
            row["auc"] = aucs[name]
        per_source[name] = row
    with_pos = {
        k: v["threshold_for_sensitivity_0.95"] for k, v in per_source.items() if "threshold_for_sensitivity_0.95" in v
    }
    threshold = float(min(with_pos.values()))
    band_set = sources[BAND_SOURCE]
    band = review_band(band_set.labels, scores[BAND_SOURCE], threshold, groups=band_set.patients)
    fit_on = ", ".join(f"{SOURCE_NAMES.get(k, k)} {v['n']}" for k, v in per_source.items() if k in fitted)
    calibration = {"type": "platt", "a": a, "b": b, "fit_on": f"validation images of every source pooled ({fit_on})"}
    if degenerate(a):
        calibration["warning"] = DEGENERATE_WARNING
    if inverted:
        calibration["left_out_of_fit"] = {
            k: f"{SOURCE_NAMES.get(k, k)} validation films ranked worse than chance, AUC {auc:.3f}"
            for k, auc in inverted.items()
        }
        calibration["fit_on"] += "; left out, ranked worse than chance: " + ", ".join(
            SOURCE_NAMES.get(k, k) for k in inverted
        )
    return {
        "calibration": calibration,
        "threshold": threshold,
        "threshold_rule": "highest calibrated score with sensitivity >= 0.95 on EACH validation source "
        "with urgent cases (" + " and ".join(SOURCE_NAMES.get(k, k) for k in with_pos) + ")",
        "review_band": band,
        "review_band_rule": f"{1 - REVIEW_BAND_ALPHA:.0%} cluster-bootstrap interval of the "
        f"{SOURCE_NAMES[BAND_SOURCE]} validation "
        "threshold, widened to contain the threshold; scores in [low, high) carry needs_review and are "
        "labelled Urgent (safety-first)",
        "validation_by_source": per_source,
    }


def review_band(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    groups: list[str] | None = None,
    target: float = SENSITIVITY_TARGET,
) -> list[float]:
    """The review band's construction (the bundled model's, and a site profile's): the central
    :data:`REVIEW_BAND_ALPHA` cluster-bootstrap interval of the threshold for sensitivity ``target`` on these
    cases, widened to contain ``threshold``."""
    lo, hi = metrics.bootstrap_threshold_interval(
        labels, scores, target=target, n_boot=1000, alpha=REVIEW_BAND_ALPHA, seed=0, groups=groups
    )
    return [float(min(lo, threshold)), float(max(hi, threshold))]


#: model.json keys an operating-point fit writes
OPERATING_POINT_KEYS = ("calibration", "threshold", "threshold_rule", "review_band", "review_band_rule")


def validation_records(data_dir: Path) -> dict[str, list[Record]]:
    """The validation part of every source, by source name (the calibration set of a deployment's mix); Shenzhen's
    only when its table (``shenzhen/labels.csv``) is in ``data_dir``."""
    shenzhen = (Path(data_dir) / "shenzhen" / "labels.csv").is_file()
    val = load_split_records(data_dir, ("nih", "kermany") + (("shenzhen",) if shenzhen else ()))["val"]
    out = {
        "nih": [r for r in val if r.dataset == "nih"],
        "kermany": [r for r in val if r.dataset == "kermany"],
        "jsrt": jsrt_urgency_parts(data_dir)["val"],
    }
    if shenzhen:
        out["shenzhen"] = [r for r in val if r.dataset == "shenzhen"]
    return out


def validation_set(records: list[Record], logits: np.ndarray) -> ValidationSet:
    return ValidationSet(
        logits=np.asarray(logits, np.float64),
        labels=np.array([r.urgent for r in records]),
        patients=[r.patient for r in records],
    )


def apply_operating_point(meta: dict, op: dict) -> dict:
    """model.json with the fitted operating point; each source's own threshold is in ``validation.by_source``."""
    out = {**meta, **{k: op[k] for k in OPERATING_POINT_KEYS}}
    stale = ("threshold_nih", "threshold_pediatric")  # written by earlier exports; by_source holds them now
    out["validation"] = {
        **{k: v for k, v in meta.get("validation", {}).items() if k not in stale},
        "by_source": op["validation_by_source"],
    }
    return out
