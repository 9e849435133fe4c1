"""Seed spread and leave-one-source-out: which runs count as seeds of the shipped recipe, what a left-out source
is compared with, and the card section that reports it."""

from __future__ import annotations

import numpy as np
import pytest

from cxrtriage.evaluation.generalisation import RunScores, summarise
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
