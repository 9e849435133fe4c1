"""Seed spread and leave-one-source-out: which runs count as seeds of the shipped recipe, what a left-out source
is compared with, the leave-one-source-out table against the adult target, the previous generation kept beside,
and the card section that reports them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.cli.main import main
from cxrtriage.evaluation.generalisation import RunScores, previous_generation, summarise
from cxrtriage.evaluation.generalisation_card import generalisation_lines

RECIPE = {"epochs": 30, "kermany_per_epoch": 1000, "box_weight": 0.3}


def _meta(seed: int, counts: dict, **cfg) -> dict:
    return {
        "sha256": f"sha{seed}",
        "training": {
            "command": "cxrtriage train",
            "counts": counts,
            "config": {**RECIPE, "seed": seed, "out_dir": f"runs/{seed}", **cfg},
        },
    }


def _labels(n: int = 40) -> dict:
    return {
        "nih": {f"n{i}": int(i % 2) for i in range(n)},
        "kermany": {f"k{i}": int(i % 3 > 0) for i in range(n)},
        "jsrt": {f"j{i}": 0 for i in range(10)},
    }


def _scores(labels: dict, skill: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        src: {k: float(np.clip(0.5 + skill * (y - 0.5) + rng.normal(0, 0.2), 0, 1)) for k, y in labels[src].items()}
        for src in ("nih", "kermany", "jsrt")
    }


@pytest.fixture()
def report() -> dict:
    labels = _labels()
    both = {"tr_nih": 585, "tr_ker": 4159}
    runs = [
        RunScores("shipped", _meta(1129, both), _scores(labels, 0.6, 1), {"nih": 0, "kermany": 0, "jsrt": 0}, 0.3),
        RunScores("seed_1130", _meta(1130, both), _scores(labels, 0.6, 2), {"nih": 0, "kermany": 0, "jsrt": 0}, 0.3),
        RunScores(
            "nih_only",
            _meta(1129, {"tr_nih": 585, "tr_ker": 0}, kermany_per_epoch=0),
            _scores(labels, 0.1, 3),
            {"nih": 0, "kermany": 1, "jsrt": 0},
            0.3,
        ),
    ]
    return summarise(runs, labels, "shipped")


def test_only_runs_of_the_shipped_recipe_make_the_seed_spread(report):
    assert report["seed_runs"] == ["shipped", "seed_1130"]
    auc = report["seed_spread"]["nih"]["auc"]
    assert auc["n"] == 2 and auc["min"] <= auc["mean"] <= auc["max"]
    assert report["runs"]["nih_only"]["same_recipe_as_shipped"] is False
    assert report["runs"]["nih_only"]["trained_on"] == ["nih"]


def test_a_left_out_source_is_compared_with_the_seed_mean_on_that_source(report):
    lo = report["leave_one_source_out"]["nih_only"]
    assert lo["left_out"] == ["kermany"]
    auc = lo["test"]["kermany"]["auc"]
    assert auc["left_out_run"] < auc["seed_mean"]  # the weak run was built to rank children worse
    assert auc["seed_mean"] == pytest.approx(report["seed_spread"]["kermany"]["auc"]["mean"])


def test_negatives_only_source_reports_share_non_urgent_not_auc(report):
    jsrt = report["runs"]["shipped"]["test"]["jsrt"]
    assert "auc" not in jsrt and jsrt["n_urgent"] == 0
    assert 0.0 <= jsrt["specificity_at_threshold"] <= 1.0 and jsrt["median_score"] is not None


def test_ensemble_uses_only_images_every_seed_run_triaged(report):
    ens = report["ensemble_of_seed_runs"]
    assert ens["nih"]["n"] == 40 and "sensitivity_at_threshold" not in ens["nih"]  # no fitted threshold: none reported


def test_card_section_names_every_run_and_the_left_out_source(report):
    text = "\n".join(generalisation_lines({**report, "command": "cxrtriage evaluate-generalisation --run ..."}))
    assert "shipped (shipped)" in text and "nih_only (ablation)" in text and "seed_1130" in text
    assert "trained without pediatric" in text
    assert generalisation_lines(None) == []


# --- generation 3: Shenzhen, the leave-one-source-out table, the previous generation -------------------------------
#
# Every two-class source has 100 urgent and 100 normal films with hand-set scores, so the figures are known:
# urgent 0.01, 0.03, 3 x 0.05, 95 x 0.6; normals a x 0.02, b x 0.04, c x 0.1, d x 0.7. Sensitivity 0.95 keeps the
# urgent films >= 0.6 (specificity 1 - d/100), 0.98 those >= 0.05 (1 - (c+d)/100), 0.99 those >= 0.03
# (1 - (b+c+d)/100).

URGENT = [0.01, 0.03, 0.05, 0.05, 0.05] + [0.6] * 95
TWO_CLASS = ("nih", "kermany", "shenzhen")
GOOD = (30, 30, 20, 20)  # specificity 0.80 / 0.60 / 0.30 at sensitivity 0.95 / 0.98 / 0.99


def _normals(a: int, b: int, c: int, d: int) -> list[float]:
    assert a + b + c + d == 100, "every two-class source has 100 normal films"
    return [0.02] * a + [0.04] * b + [0.1] * c + [0.7] * d


def _g3_labels() -> dict:
    labels = {src: {f"{src}{i}": int(i < 100) for i in range(200)} for src in TWO_CLASS}
    labels["jsrt"] = {f"j{i}": 0 for i in range(10)}
    return labels


def _g3_scores(**normals: tuple[int, int, int, int]) -> dict:
    out = {src: dict(enumerate(URGENT + _normals(*normals.get(src, GOOD)))) for src in TWO_CLASS}
    scores = {src: {f"{src}{i}": s for i, s in out[src].items()} for src in TWO_CLASS}
    scores["jsrt"] = {f"j{i}": 0.1 for i in range(10)}
    return scores


def _counts(nih: int = 585, ker: int = 4159, shz: int = 320) -> dict:
    return {"tr_nih": nih, "tr_ker": ker, "tr_shz": shz}


def _g3_report(no_nih_d: int, *, with_no_shz: bool = True, ensemble: dict | None = None) -> dict:
    zero = {"nih": 0, "kermany": 0, "shenzhen": 0, "jsrt": 0}
    shipped = _meta(1129, _counts(), shenzhen_per_epoch=100)
    if ensemble:
        shipped["ensemble"] = ensemble
    runs = [
        RunScores("shipped", shipped, _g3_scores(), zero, 0.3),
        RunScores("seed_1130", _meta(1130, _counts(), shenzhen_per_epoch=100), _g3_scores(), zero, 0.3),
        RunScores(
            "no_nih",
            _meta(1129, _counts(nih=0), shenzhen_per_epoch=100, nih_train=False),
            _g3_scores(nih=(0, 0, 100 - no_nih_d, no_nih_d)),
            zero,
            0.3,
        ),
        RunScores(
            "no_ped",
            _meta(1129, _counts(ker=0), shenzhen_per_epoch=100, kermany_per_epoch=0),
            _g3_scores(kermany=(0, 0, 10, 90)),  # 0.10: far under the target, but children are not an adult source
            zero,
            0.3,
        ),
        RunScores("nih_only", _meta(1129, _counts(ker=0, shz=0), kermany_per_epoch=0), _g3_scores(), zero, 0.3),
    ]
    if with_no_shz:
        runs.append(RunScores("no_shz", _meta(1129, _counts(shz=0)), _g3_scores(shenzhen=(0, 0, 40, 60)), zero, 0.3))
    return summarise(runs, _g3_labels(), "shipped")


def _card(report: dict) -> str:
    return "\n".join(generalisation_lines({**report, "command": "cxrtriage evaluate-generalisation --run ..."}))


def test_shenzhen_is_a_test_source_and_training_on_it_is_recognised():
    report = _g3_report(80)
    assert report["sources"]["shenzhen"] == "Shenzhen adult TB test"
    assert report["runs"]["shipped"]["trained_on"] == ["nih", "kermany", "shenzhen"]
    assert report["runs"]["no_shz"]["trained_on"] == ["nih", "kermany"]
    assert report["runs"]["shipped"]["test"]["shenzhen"]["n_urgent"] == 100


def test_specificity_is_recorded_at_sensitivity_098_and_099_for_every_two_class_source():
    report = _g3_report(80)
    for src in TWO_CLASS:
        t = report["runs"]["shipped"]["test"][src]
        assert t["specificity_at_sensitivity_0.95"] == pytest.approx(0.80)
        assert t["specificity_at_sensitivity_0.98"] == pytest.approx(0.60)
        assert t["specificity_at_sensitivity_0.99"] == pytest.approx(0.30)
    assert "specificity_at_sensitivity_0.98" not in report["runs"]["shipped"]["test"]["jsrt"]  # one class: undefined
    assert report["seed_spread"]["shenzhen"]["specificity_at_sensitivity_0.99"]["mean"] == pytest.approx(0.30)


def test_a_run_missing_one_of_the_shipped_sources_is_left_out_of_exactly_that_source():
    lo = _g3_report(80)["leave_one_source_out"]
    assert lo["no_nih"]["left_out"] == ["nih"]
    assert lo["no_shz"]["left_out"] == ["shenzhen"]
    assert lo["no_ped"]["left_out"] == ["kermany"]
    assert lo["nih_only"]["left_out"] == ["kermany", "shenzhen"]  # two sources out: not a leave-one-out row
    assert "seed_1130" not in lo


def test_loso_table_reports_each_left_out_source_on_its_own_test_part_and_fails_the_worst_adult_under_target():
    report = _g3_report(80)  # no_nih keeps 80 NIH normals above the 0.95-sensitivity threshold: specificity 0.20
    table = report["loso_table"]
    rows = {(r["left_out"], r["run"]): r for r in table["rows"]}
    assert set(rows) == {("nih", "no_nih"), ("shenzhen", "no_shz"), ("kermany", "no_ped")}
    assert rows["nih", "no_nih"]["specificity_at_sensitivity_0.95"] == pytest.approx(0.20)
    assert rows["shenzhen", "no_shz"]["specificity_at_sensitivity_0.95"] == pytest.approx(0.40)
    assert rows["nih", "no_nih"]["auc"] == report["runs"]["no_nih"]["test"]["nih"]["auc"]
    assert rows["kermany", "no_ped"]["adult"] is False and rows["nih", "no_nih"]["adult"] is True
    assert table["target"] == 0.25
    assert table["worst_adult"] == {"source": "nih", "run": "no_nih", "value": pytest.approx(0.20)}
    assert table["passes"] is False


def test_loso_table_passes_when_every_left_out_adult_source_meets_the_target():
    table = _g3_report(70)["loso_table"]  # NIH 0.30, Shenzhen 0.40; pediatric 0.10 is not judged
    assert table["worst_adult"]["source"] == "nih"
    assert table["worst_adult"]["value"] == pytest.approx(0.30)
    assert table["passes"] is True and table["not_measured"] == []


def test_loso_target_is_not_judged_while_an_adult_source_was_never_left_out():
    table = _g3_report(70, with_no_shz=False)["loso_table"]
    assert table["not_measured"] == ["shenzhen"]
    assert table["worst_adult"]["value"] == pytest.approx(0.30)
    assert table["passes"] is None


def test_card_shows_shenzhen_columns_the_loso_table_and_the_ensemble_of_the_shipped_row():
    text = _card(_g3_report(80, ensemble={"members": 3, "seeds": [1129, 1130, 1131]}))
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert "Shenzhen AUC" in header and "Shenzhen spec @ sens 0.95" in header
    assert "shipped (shipped, ensemble of 3 seeds)" in text
    assert "| left-out source | run |" in text
    assert "| NIH | no_nih | pediatric, Shenzhen | 200 (100) |" in text and "| 0.200 |" in text
    assert "| pediatric (not adult: not judged) | no_ped |" in text
    assert "Worst left-out adult source: NIH (`no_nih`), spec @ sens 0.95 0.200 vs target 0.25: misses" in text
    assert "Shenzhen 0.800 / 0.600 / 0.300" in text  # the shipped run at sensitivity 0.95 / 0.98 / 0.99
    assert "meets the target" in _card(_g3_report(70))


def test_a_shipped_seed_ensemble_is_not_counted_as_one_more_seed():
    every = _counts()
    zero = {"nih": 0, "kermany": 0, "shenzhen": 0, "jsrt": 0}
    shipped = {**_meta(1129, every, shenzhen_per_epoch=100), "ensemble": {"members": 2}}  # records member 1's recipe
    runs = [RunScores("shipped", shipped, _g3_scores(nih=(0, 0, 100, 0)), zero, 0.3)]  # NIH spec 1.00 at sens 0.95
    for seed, above in ((1129, 20), (1130, 40)):  # NIH spec 0.80 and 0.60
        cfg = _meta(seed, every, shenzhen_per_epoch=100)
        runs.append(RunScores(f"seed_{seed}", cfg, _g3_scores(nih=(0, 0, 100 - above, above)), zero, 0.3))
    report = summarise(runs, _g3_labels(), "shipped")
    assert report["seed_runs"] == ["seed_1129", "seed_1130"]
    spread = report["seed_spread"]["nih"]["specificity_at_sensitivity_0.95"]
    assert spread["n"] == 2 and spread["max"] == pytest.approx(0.80)  # the ensemble's 1.00 is not in the range
    assert report["runs"]["shipped"]["test"]["nih"]["specificity_at_sensitivity_0.95"] == pytest.approx(1.0)
    assert report["leave_one_source_out"] == {}  # the ensemble leaves no source out


def test_previous_generation_figures_are_kept_and_shown_as_their_own_row(report, tmp_path):
    old = tmp_path / "generalisation_gen2.json"
    old.write_text(json.dumps({**report, "command": "cxrtriage evaluate-generalisation --run ..."}))
    prev = previous_generation(old)
    assert prev["name"] == "generation 2" and prev["model_sha256"] == "sha1129"
    assert prev["test"]["nih"]["auc"] == report["runs"]["shipped"]["test"]["nih"]["auc"]
    text = _card({**_g3_report(80), "previous_generation": prev})
    row = next(line for line in text.splitlines() if line.startswith("| generation 2 (previous) |"))
    assert f"| {report['runs']['shipped']['test']['nih']['auc']:.3f} |" in row
    assert row.count("n/a") >= 2  # generation 2 was never scored on Shenzhen: its cells say so


def test_a_file_that_is_not_a_generalisation_report_is_refused_before_any_scoring(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"runs": {}}')
    with pytest.raises(ValueError, match="not a generalisation report"):
        previous_generation(bad)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    assert main(["evaluate-generalisation", "--run", f"shipped={bundle}", "--previous", str(bad)]) == 2
    assert "--previous" in capsys.readouterr().err


def test_generation_2_report_without_shenzhen_still_renders():
    block = json.loads((Path(__file__).parents[2] / "prototype/eval/generalisation_gen2.json").read_text())
    text = "\n".join(generalisation_lines(block))
    assert "Shenzhen" not in text and "Leave-one-source-out table" not in text
    assert f"| {block['runs']['shipped']['test']['nih']['auc']:.3f} |" in text
    assert "trained without NIH" in text and "trained without pediatric" in text
