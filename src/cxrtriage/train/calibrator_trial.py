"""Compare calibrations honestly: cross-validated within the validation sources, then checked once on test.

Each candidate of :data:`~cxrtriage.train.calibrators.CALIBRATORS` is fitted on the validation logits of every
source pooled (as the shipped Platt fit is). Cross-validation: ``k`` folds by patient, stratified by source and by
the patient's label, repeated with ``repeats`` seeds; in each fold the calibrator *and* the threshold rule
(sensitivity >= 0.95 on each source with urgent films, the lowest per-source threshold, as
:func:`~cxrtriage.train.operating_point.fit_operating_point`) are fitted on the other folds and applied to the
held-out one. Per source, on the held-out predictions: ECE (and the ECE the same scores would show if perfectly
calibrated), Brier score, AUC, sensitivity and specificity at the fold's threshold (means over repeats). A candidate
is adopted only if, against Platt, its CV ECE is lower on every validation source, its CV AUC is not lower (by more
than :data:`AUC_TOLERANCE`) and its CV sensitivity is not lower on any source; in-sample, fitted on all validation
films, the threshold rule must still give sensitivity >= 0.95 on each. Test films are read once, after, with every
candidate fitted on all validation films: they do not choose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrtriage.evaluation import metrics
from cxrtriage.train.calibrators import CALIBRATORS, Calibrator
from cxrtriage.train.operating_point import SENSITIVITY_TARGET

BASELINE = "platt"
#: pooled out-of-fold AUC moves a little with the fold split even for a monotonic map: a drop below this is noise
AUC_TOLERANCE = 0.005
#: labels drawn per CV run for the ECE a perfectly calibrated score would show on the same films
FLOOR_DRAWS = 500


@dataclass(frozen=True)
class Films:
    """Logits, labels, patient ids and views of one source's films."""

    logits: np.ndarray
    y: np.ndarray
    patients: list[str]
    views: list[str]

    def take(self, idx: np.ndarray) -> Films:
        return Films(self.logits[idx], self.y[idx], [self.patients[i] for i in idx], [self.views[i] for i in idx])


def patient_folds(films: Films, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id per film: a patient's films share a fold; patients with an urgent film spread evenly over folds."""
    patients = sorted(set(films.patients))
    urgent = {p: 0 for p in patients}
    for p, y in zip(films.patients, films.y):
        urgent[p] = max(urgent[p], int(y))
    order = [p for label in (1, 0) for p in rng.permutation([q for q in patients if urgent[q] == label]).tolist()]
    fold_of = {p: i % k for i, p in enumerate(order)}
    return np.array([fold_of[p] for p in films.patients])


def _pooled(sets: dict[str, Films]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    z = np.concatenate([s.logits for s in sets.values()])
    y = np.concatenate([s.y for s in sets.values()])
    return z, y, [v for s in sets.values() for v in s.views]


def fit_on(sets: dict[str, Films], cal: Calibrator) -> tuple[dict, float]:
    """The calibrator fitted on every set pooled, and the threshold rule's threshold on its scores."""
    params = cal.fit(*_pooled(sets))
    per_source = [
        metrics.threshold_for_sensitivity(s.y, cal.apply(params, s.logits, s.views), SENSITIVITY_TARGET)
        for s in sets.values()
        if s.y.sum() > 0
    ]
    return params, float(min(per_source))


def figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """ECE, Brier score, AUC and the operating point at ``threshold`` of one source's films."""
    op = metrics.operating_point(y, p, threshold)
    return {
        "ece": metrics.expected_calibration_error(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "auc": metrics.roc_auc(y, p) if 0 < y.sum() < len(y) else None,
        "sensitivity": op.sensitivity,
        "specificity": op.specificity,
    }


def cross_validate(sets: dict[str, Films], cal: Calibrator, k: int, seed: int) -> dict[str, dict]:
    """One k-fold run: every film scored by a fit (and threshold) made without its fold; figures per source."""
    rng = np.random.default_rng(seed)
    folds = {name: patient_folds(s, k, rng) for name, s in sets.items()}
    probs = {name: np.zeros(len(s.y)) for name, s in sets.items()}
    called = {name: np.zeros(len(s.y), dtype=bool) for name, s in sets.items()}
    for f in range(k):
        train = {n: s.take(np.flatnonzero(folds[n] != f)) for n, s in sets.items()}
        params, threshold = fit_on(train, cal)
        for n, s in sets.items():
            idx = np.flatnonzero(folds[n] == f)
            held = s.take(idx)
            probs[n][idx] = cal.apply(params, held.logits, held.views)
            called[n][idx] = probs[n][idx] >= threshold
    out = {}
    for n, s in sets.items():
        op = metrics.operating_point(s.y, called[n].astype(float), 0.5)
        out[n] = {**figures(s.y, probs[n], 0.5), "sensitivity": op.sensitivity, "specificity": op.specificity}
        out[n]["ece_if_calibrated"] = metrics.ece_if_calibrated(probs[n], n_draws=FLOOR_DRAWS, seed=seed)["mean"]
    return out


def _mean(runs: list[dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for n in runs[0]:
        out[n] = {}
        for key in runs[0][n]:
            vals = [r[n][key] for r in runs if r[n][key] is not None]
            out[n][key] = float(np.mean(vals)) if vals else None
        eces = [r[n]["ece"] for r in runs]
        out[n]["ece_range"] = [float(min(eces)), float(max(eces))]
    return out


def judge(cv: dict[str, dict[str, dict]], in_sample: dict[str, dict[str, dict]]) -> dict[str, list[str]]:
    """Per candidate, the adoption rules it fails against :data:`BASELINE` (an empty list: it passes all)."""
    base = cv[BASELINE]
    out: dict[str, list[str]] = {}
    for name, by_source in cv.items():
        if name == BASELINE:
            continue
        fails = []
        for src, f in by_source.items():
            b = base[src]
            if f["ece"] >= b["ece"]:
                fails.append(f"{src}: CV ECE {f['ece']:.3f} not below Platt's {b['ece']:.3f}")
            if f["auc"] is not None and b["auc"] is not None and f["auc"] < b["auc"] - AUC_TOLERANCE:
                fails.append(f"{src}: CV AUC {f['auc']:.3f} below Platt's {b['auc']:.3f}")
            if f["sensitivity"] is not None and f["sensitivity"] < b["sensitivity"]:
                fails.append(f"{src}: CV sensitivity {f['sensitivity']:.3f} below Platt's {b['sensitivity']:.3f}")
            sens = in_sample[name][src]["sensitivity"]
            if sens is not None and sens < SENSITIVITY_TARGET:
                fails.append(f"{src}: in-sample sensitivity {sens:.3f} below {SENSITIVITY_TARGET}")
        out[name] = fails
    return out


def run_trial(val: dict[str, Films], test: dict[str, Films], *, k: int = 5, repeats: int = 20) -> dict:
    """Every candidate: CV figures (means over ``repeats`` seeds), in-sample validation figures, the adoption
    verdict, then the test figures of a fit on all validation films (with the ECE a perfectly calibrated score
    would show on the same test films)."""
    cv: dict[str, dict] = {}
    in_sample: dict[str, dict] = {}
    tested: dict[str, dict] = {}
    params_of: dict[str, dict] = {}
    for name, cal in CALIBRATORS.items():
        cv[name] = _mean([cross_validate(val, cal, k, seed) for seed in range(repeats)])
        params, threshold = fit_on(val, cal)
        params_of[name] = {
            "params": params if name != "isotonic" else {"knots": len(params["x"])},
            "threshold": threshold,
        }
        in_sample[name] = {n: figures(s.y, cal.apply(params, s.logits, s.views), threshold) for n, s in val.items()}
        tested[name] = {}
        for n, s in test.items():
            p = cal.apply(params, s.logits, s.views)
            f = figures(s.y, p, threshold)
            tested[name][n] = {**f, "ece_if_calibrated": metrics.ece_if_calibrated(p, f["ece"], n_draws=2000)}
    verdicts = judge(cv, in_sample)
    passing = [n for n, fails in verdicts.items() if not fails]
    adopted = min(passing, key=lambda n: np.mean([f["ece"] for f in cv[n].values()])) if passing else None
    return metrics.to_jsonable(
        {
            "calibrators": {n: c.what for n, c in CALIBRATORS.items()},
            "fitted_on_all_validation": params_of,
            "cv": cv,
            "validation_in_sample": in_sample,
            "fails": verdicts,
            "adopted": adopted,
            "test": tested,
        }
    )
