"""``cxrtriage commission``: the fits and their cross-validated figures on arrays, and the whole command on real
radiographs (variants of the bundled samples): the profile it writes loads and names itself in every result, the
report stands alone, the reference records carry no identifier, and too small a sample is an error, not a profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtriage.backends.calibration import platt
from cxrtriage.config import BUNDLED_WEIGHTS_DIR, Settings
from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.commissioning import REFERENCE_KEYS
from cxrtriage.evaluation.commissioning_fit import (
    Cases,
    TooFewCases,
    check_sample,
    clopper_pearson,
    figures,
    fit_site,
    more_urgent_needed,
)

SAMPLES = BUNDLED_WEIGHTS_DIR.parent / "samples"


def synthetic(n_per_class: int = 40, *, head_signal: float = 0.0, seed: int = 0) -> Cases:
    """Base logits shifted by a site (every film scores high: the bundled point calls nearly all Urgent), and a
    small embedding that carries ``head_signal`` of the truth the logit does not."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_per_class), np.zeros(n_per_class)].astype(int)
    logits = rng.normal(size=2 * n_per_class) + 1.2 * y + 2.0
    emb = rng.normal(size=(2 * n_per_class, 8))
    emb[:, 0] += head_signal * (y - 0.5)
    return Cases(logits, np.asarray(platt(logits, 1.25, 0.18)), emb, y)


def test_fewer_than_20_of_a_class_is_an_error() -> None:
    with pytest.raises(TooFewCases, match="19 non-urgent"):
        check_sample(np.r_[np.ones(30), np.zeros(19)].astype(int))
    check_sample(np.r_[np.ones(20), np.zeros(20)].astype(int))


def test_clopper_pearson_is_exact() -> None:
    from scipy.stats import binomtest

    for k, n in ((38, 40), (0, 25), (25, 25), (60, 70)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))


def test_more_urgent_needed_is_the_least_that_reaches_the_target() -> None:
    need = more_urgent_needed(38, 40, 0.95)
    extra = need["if_all_found"]
    assert clopper_pearson(38 + extra, 40 + extra)[0] >= 0.95 > clopper_pearson(37 + extra, 39 + extra)[0]
    assert need["at_observed_rate"] is None  # 0.95 observed never gives a lower bound of 0.95
    assert more_urgent_needed(40, 40, 0.9)["at_observed_rate"] is not None


def test_the_site_threshold_keeps_the_target_sensitivity_on_its_films_and_lifts_specificity() -> None:
    cases = synthetic()
    fit = fit_site(cases, 0.95)
    scores = fit.scores(cases)
    assert metrics.operating_point(cases.labels, scores, fit.threshold).sensitivity >= 0.95
    assert fit.review_band[0] <= fit.threshold <= fit.review_band[1]
    base = metrics.operating_point(cases.labels, cases.base_scores, 0.0707)
    assert base.specificity < 0.1  # the bundled point calls this site's films Urgent
    assert metrics.operating_point(cases.labels, scores, fit.threshold).specificity > base.specificity + 0.1


def test_the_figures_are_cross_validated_and_say_so() -> None:
    out, folds = figures(synthetic(), (0.0707, (0.0707, 0.1863)), 0.95, head="off")
    rec = out["recalibration"]
    assert "cross-validation" in rec["how"] and len(rec["fold_thresholds"]) == out["folds"] == 5
    assert len(set(rec["fold_thresholds"])) > 1  # each fold's own threshold, fitted on the other folds
    assert out["base"]["specificity"] < rec["specificity"]
    assert rec["tp"] + rec["fn"] == 40 and out["sensitivity"]["found"] == rec["tp"]
    assert out["adopted"] == "recalibration" and "site_head" not in out
    assert set(rec["specificity_at_sensitivity"]) == {"0.95", "0.98", "0.99"}
    assert rec["ece"] < out["base"]["ece"]
    assert folds["recalibration"].scores.shape == (80,)
    # recalibration is monotone: it ranks as the base model does, never as five pooled folds' scales would
    assert (
        rec["auc"] == out["base"]["auc"]
        and rec["specificity_at_sensitivity"] == out["base"]["specificity_at_sensitivity"]
    )


def test_a_site_head_is_adopted_only_when_nested_cross_validation_says_it_beats_recalibration() -> None:
    strong, _ = figures(synthetic(head_signal=4.0), (0.0707, (0.0707, 0.1863)), 0.95, head="auto")
    assert strong["adopted"] == "site_head" and strong["site_head"]["auc"] > strong["recalibration"]["auc"]
    noise, _ = figures(synthetic(head_signal=0.0, seed=3), (0.0707, (0.0707, 0.1863)), 0.95, head="auto")
    assert noise["adopted"] == "recalibration"


def _variants(source: Path, folder: Path, n: int, stem: str) -> list[Path]:
    """``n`` real radiographs from one sample: crops and exposure changes of its pixels."""
    grey = np.asarray(Image.open(source).convert("L"), dtype=np.float64) / 255.0
    h, w = grey.shape
    paths = []
    for i in range(n):
        m = 4 + 3 * (i % 6)
        crop = grey[m : h - (i % 4) * 3 - 2, (i % 5) * 3 : w - m]
        out = np.clip(crop ** (0.8 + 0.04 * i / n * 10), 0, 1)
        path = folder / f"{stem}_{i:02d}.png"
        Image.fromarray((out * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def site_gold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("site_films")
    urgent = _variants(SAMPLES / "nih" / "00001383_000.png", folder, 12, "u1")
    urgent += _variants(SAMPLES / "kermany" / "person1019_bacteria_2950.jpeg", folder, 10, "u2")
    normal = _variants(SAMPLES / "nih" / "00001323_001.png", folder, 22, "n")
    rows = [{"path": p.name, "label": "Urgent"} for p in urgent] + [
        {"path": p.name, "label": "Non-Urgent"} for p in normal
    ]
    gold = folder / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return gold, folder


def test_commission_writes_a_profile_that_serves_and_a_report_that_stands_alone(
    site_gold: tuple[Path, Path], tmp_path: Path
) -> None:
    from cxrtriage.cli.main import main
    from cxrtriage.pipeline import Triage

    gold, films = site_gold
    out = tmp_path / "site"
    argv = ["commission", "--gold", str(gold), "--name", "Test Site", "--out", str(out), "--data-dir", str(films)]
    assert main([*argv, "--site-head", "off"]) == 0
    site = json.loads((out / "site.json").read_text())
    assert site["sample"] == {"n": 44, "urgent": 22, "non_urgent": 22, "refused_by_gate": 0, "unreadable_rows": 0}
    assert site["figures"]["adopted"] == "recalibration" and site["site_head"] is None
    figures_file = json.loads((out / "commissioning.json").read_text())
    assert figures_file["command"].startswith("cxrtriage commission")
    assert figures_file["figures"]["recalibration"]["how"].startswith("5-fold stratified cross-validation")
    report = (out / "commissioning.html").read_text()
    assert report.count("data:image/png;base64,") == 2 and "http" not in report.split("<body>")[1]
    records = [json.loads(line) for line in (out / "reference.jsonl").read_text().splitlines()]
    assert len(records) == 44 and all(tuple(r) == REFERENCE_KEYS for r in records)
    assert {r["source"] for r in records} == {"commissioning"} and {r["site"] for r in records} == {"Test Site"}
    assert not any(".png" in json.dumps(r) or "u1_" in json.dumps(r) for r in records)  # no file name or path
    from cxrtriage.monitoring.monitor import choose_reference
    from cxrtriage.monitoring.store import MonitorStore

    reference = choose_reference(MonitorStore(tmp_path / "monitor.jsonl"), site_dir=out)  # the monitor reads them all
    assert reference.kind == "commissioning" and len(reference.records) == 44

    engine = Triage(settings=Settings(site_dir=out), crops_dir=tmp_path / "crops")
    p = engine.predict(films / "n_00.png", save_crops=False)
    assert p.site.name == "Test Site" and p.site.n_cases == 44 and p.site.validated
    assert p.threshold == pytest.approx(site["threshold"], abs=1e-4)


def test_readers_judgement_re_commissions_the_site_without_its_images(
    site_gold: tuple[Path, Path], tmp_path: Path
) -> None:
    """The loop a site runs after go-live: results filed on the worklist, readers' assessments exported
    (``cxrtriage feedback export``: ``worklist:KEY`` rows), and ``commission --worklist`` fits the same calibration and
    threshold from those stored results as from the films themselves (each result keeps the model's logit)."""
    from cxrtriage.cli.main import main
    from cxrtriage.evaluation.gold import gold_rows
    from cxrtriage.pipeline import Triage
    from cxrtriage.worklist import Worklist
    from cxrtriage.worklist.feedback import FeedbackStore

    gold, films = site_gold
    engine = Triage(settings=Settings(), crops_dir=tmp_path / "crops")
    worklist = Worklist(tmp_path / "state" / "worklist.sqlite")
    readers = FeedbackStore(worklist)
    for n, row in gold_rows(gold):
        p = engine.predict(films / row["path"], save_crops=False)
        assert p.model_logit is not None
        worklist.add(p, f"ACC-{n}")
        readers.record(f"ACC-{n}", agrees=p.label == row["label"], label=row["label"], reader="dr-a")
    exported = tmp_path / "readers.jsonl"
    assert main(["feedback", "export", "--worklist", str(worklist.path), "--out", str(exported)]) == 0
    by_films, by_readers = tmp_path / "films", tmp_path / "readers"
    common = ["--name", "Test Site", "--site-head", "off"]
    assert main(["commission", "--gold", str(gold), "--data-dir", str(films), "--out", str(by_films), *common]) == 0
    argv = ["commission", "--gold", str(exported), "--worklist", str(worklist.path), "--out", str(by_readers)]
    assert main([*argv, *common]) == 0
    a, b = (json.loads((d / "site.json").read_text()) for d in (by_films, by_readers))
    assert b["sample"] == a["sample"]  # 44 films, none unreadable
    assert b["calibration"]["a"] == pytest.approx(a["calibration"]["a"], abs=1e-3)
    assert b["calibration"]["b"] == pytest.approx(a["calibration"]["b"], abs=1e-3)
    assert b["threshold"] == pytest.approx(a["threshold"], abs=1e-3)
    records = [json.loads(line) for line in (by_readers / "reference.jsonl").read_text().splitlines()]
    assert len(records) == 44 and all(r["image"] is None for r in records)  # no pixels were there to describe


def test_too_few_films_of_a_class_exits_2_and_writes_no_profile(
    site_gold: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cxrtriage.cli.main import main

    gold, films = site_gold
    rows = gold.read_text().splitlines()
    small = tmp_path / "small.csv"  # the CSV form of the gold file, 19 non-urgent films
    small.write_text(
        "path,label\n" + "".join(f"{json.loads(r)['path']},{json.loads(r)['label']}\n" for r in rows[:41]),
        encoding="utf-8",
    )
    out = tmp_path / "site"
    assert main(["commission", "--gold", str(small), "--name", "X", "--out", str(out), "--data-dir", str(films)]) == 2
    assert "19 non-urgent" in capsys.readouterr().err
    assert not (out / "site.json").exists()


def test_the_shenzhen_halves_split_patients_and_hold_20_films_of_each_class(data_dir: Path) -> None:
    from cxrtriage.evaluation.commissioning_holdout import halves

    first, second = halves(data_dir)
    assert not {r["path"] for r in first} & {r["path"] for r in second}  # one film per patient: disjoint patients
    for half in (first, second):
        urgent = sum(r["label"] == "Urgent" for r in half)
        assert urgent >= 20 and len(half) - urgent >= 20
        assert all((data_dir / r["path"]).is_file() for r in half)
    committed = json.loads((Path(__file__).parents[2] / "prototype/eval/commissioning_shenzhen.json").read_text())
    assert committed["commission_half"] == {"n": len(first), "urgent": sum(r["label"] == "Urgent" for r in first)}
    assert committed["measure_half"]["n"] == len(second)
