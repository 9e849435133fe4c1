"""The calibration trial: each candidate calibrates what it should, cross-validation never lets a patient's films or
the test films choose, the adoption rules refuse a candidate that is worse on any source, and the committed
docs/MODEL.md block is rendered from the committed report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.calibrators_card import BEGIN, END, render_block
from cxrtriage.train.calibrator_trial import Films, cross_validate, judge, patient_folds, run_trial
from cxrtriage.train.calibrators import CALIBRATORS, view_of

ROOT = Path(__file__).resolve().parents[2]


def _films(n: int, t: float, shift: float, seed: int, view: str = "PA", repeat: int = 1) -> Films:
    """Logits whose true P(urgent) is sigmoid(z / t + shift); ``repeat`` films per patient."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(z / t + shift)))).astype(int)
    return Films(z, y, [f"p{seed}_{i // repeat}" for i in range(n)], [view] * n)


def test_temperature_recovers_an_overconfident_logit() -> None:
    f = _films(4000, 2.0, 0.0, 1)
    cal = CALIBRATORS["temperature"]
    params = cal.fit(f.logits, f.y, f.views)
    assert params["t"] == pytest.approx(2.0, rel=0.15)
    raw = metrics.expected_calibration_error(f.y, 1 / (1 + np.exp(-f.logits)))
    assert metrics.expected_calibration_error(f.y, cal.apply(params, f.logits, f.views)) < raw / 2


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_every_calibrator_is_monotonic_within_a_view_and_a_probability(name: str) -> None:
    f = _films(600, 1.5, 0.5, 2)
    cal = CALIBRATORS[name]
    params = cal.fit(f.logits, f.y, f.views)
    z = np.linspace(-8, 8, 200)
    for view in ("PA", "AP", ""):
        p = cal.apply(params, z, [view] * len(z))
        assert np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) >= -1e-12), (name, view)


def test_beta_keeps_its_slopes_non_negative_and_platt_view_learns_a_view_offset() -> None:
    params = CALIBRATORS["beta"].fit(*_pooled(_films(800, 0.7, -0.5, 3)))
    assert params["a"] >= 0 and params["b"] >= 0
    pa, ap = _films(1500, 1.0, 0.0, 4, "PA"), _films(1500, 1.0, 1.5, 5, "AP")
    both = Films(
        np.concatenate([pa.logits, ap.logits]),
        np.concatenate([pa.y, ap.y]),
        pa.patients + ap.patients,
        pa.views + ap.views,
    )
    fit = CALIBRATORS["platt_view"].fit(both.logits, both.y, both.views)
    assert fit["offset_AP"] == pytest.approx(1.5, abs=0.4) and view_of("") == view_of("LL") == "unknown"


def _pooled(f: Films) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return f.logits, f.y, f.views


def test_folds_keep_a_patients_films_together_and_spread_urgent_patients() -> None:
    f = _films(300, 1.0, 0.0, 6, repeat=3)
    folds = patient_folds(f, 5, np.random.default_rng(0))
    for p in set(f.patients):
        assert len({folds[i] for i, q in enumerate(f.patients) if q == p}) == 1
    urgent_patients = {p for p, y in zip(f.patients, f.y) if y}
    per_fold = [len({p for i, p in enumerate(f.patients) if folds[i] == k and p in urgent_patients}) for k in range(5)]
    assert max(per_fold) - min(per_fold) <= 1


def test_cross_validation_scores_every_film_out_of_fold() -> None:
    sets = {"a": _films(200, 1.0, 0.0, 7), "b": _films(100, 2.0, 1.0, 8)}
    out = cross_validate(sets, CALIBRATORS["platt"], 5, seed=0)
    assert set(out) == {"a", "b"}
    for f in out.values():
        assert 0 < f["ece"] < 0.5 and 0.5 < f["auc"] <= 1 and f["sensitivity"] >= 0.8 and f["ece_if_calibrated"] > 0


def _cv(ece_b: float, auc_b: float = 0.8, sens_b: float = 0.95) -> dict:
    row = {"ece": 0.10, "auc": 0.8, "sensitivity": 0.95}
    return {"a": dict(row), "b": {"ece": ece_b, "auc": auc_b, "sensitivity": sens_b}}


def test_a_candidate_better_on_one_source_and_worse_on_another_is_not_adopted() -> None:
    cv = {"platt": _cv(0.10), "x": {**_cv(0.05), "a": {"ece": 0.11, "auc": 0.8, "sensitivity": 0.95}}}
    cv["better"] = {
        "a": {"ece": 0.09, "auc": 0.8, "sensitivity": 0.95},
        "b": {"ece": 0.05, "auc": 0.8, "sensitivity": 0.96},
    }
    cv["unsafe"] = {
        "a": {"ece": 0.09, "auc": 0.8, "sensitivity": 0.95},
        "b": {"ece": 0.05, "auc": 0.8, "sensitivity": 0.9},
    }
    in_sample = {n: {"a": {"sensitivity": 0.96}, "b": {"sensitivity": 0.95}} for n in cv}
    fails = judge(cv, in_sample)
    assert fails["better"] == [] and fails["x"] == ["a: CV ECE 0.110 not below Platt's 0.100"]
    assert fails["unsafe"] == ["b: CV sensitivity 0.900 below Platt's 0.950"]


def test_trial_reads_test_films_only_after_fitting_on_validation() -> None:
    val = {"a": _films(300, 1.0, 0.0, 9), "b": _films(120, 1.0, 0.5, 10)}
    test = {"a": _films(100, 1.0, 0.0, 11), "b": _films(60, 1.0, 0.5, 12)}
    r1 = run_trial(val, test, k=3, repeats=2)
    # test labels flipped: the CV figures, the fits and the verdict stay the same; only the test figures move
    flipped = {n: Films(f.logits, 1 - f.y, f.patients, f.views) for n, f in test.items()}
    r2 = run_trial(val, flipped, k=3, repeats=2)
    for key in ("cv", "fitted_on_all_validation", "fails", "adopted"):
        assert r1[key] == r2[key]
    assert r1["test"] != r2["test"] and set(r1["test"]) == set(CALIBRATORS)


def test_markdown_block_names_each_calibrator_and_its_verdict(tmp_path: Path) -> None:
    val = {"a": _films(300, 1.0, 0.0, 13)}
    report = {
        "created": "now",
        "command": "python scripts/calibrator_trial.py",
        "model": {"version": "0", "sha256": "f" * 64},
        "source_names": {"a": "Source A"},
        **run_trial(val, {"a": _films(100, 1.0, 0.0, 14)}, k=3, repeats=1),
    }
    (tmp_path / "calibrators.json").write_text(json.dumps(report))
    text = render_block(tmp_path)
    assert text.startswith(BEGIN) and text.endswith(END) and "CV ECE Source A" in text
    assert all(f"| {name} |" in text for name in CALIBRATORS) and "| platt | " in text and "shipped" in text
    assert "Not measured yet" in render_block(tmp_path / "none")


def test_committed_markdown_is_rendered_from_the_committed_report() -> None:
    doc = (ROOT / "docs" / "MODEL.md").read_text(encoding="utf-8")
    assert render_block(ROOT / "prototype" / "eval") in doc


def test_trial_logits_are_what_predict_scores(data_dir: Path) -> None:
    """The trial (and ``cxrtriage recalibrate``) read films through ``bundle_logits``: the bundle's own calibration of
    those logits must be the score ``Triage.predict`` gives the same films, or the trial measures another model."""
    from cxrtriage import config
    from cxrtriage.backends.bundle_config import BundleConfig
    from cxrtriage.backends.calibration import platt
    from cxrtriage.pipeline import Triage
    from cxrtriage.train.operating_point import validation_records
    from cxrtriage.train.recalibrate import bundle_logits

    recs = {name: r[:4] for name, r in validation_records(data_dir).items() if name in ("nih", "shenzhen")}
    logits = bundle_logits(config.BUNDLED_WEIGHTS_DIR, recs, "val")
    cal = BundleConfig.load(config.BUNDLED_WEIGHTS_DIR / "model.json").calibration
    engine = Triage()
    for name, r in recs.items():
        scores = [engine.predict(x.path, save_crops=False).score for x in r]
        assert np.allclose(platt(logits[name], cal.a, cal.b), scores, atol=1e-4), name
