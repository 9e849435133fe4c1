"""The operating-point report: its figures on hand-made scores, the split by view, a negatives-only source, and the
Markdown table that puts each generation's row beside the next."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.cli.main import build_parser
from cxrtriage.data import Record
from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.operating_points import build_report, held_out_records, set_metrics, subset
from cxrtriage.evaluation.operating_points_card import BEGIN, END, render_block

# 20 urgent films: 19 scored 0.80 ... 0.98, one missed-looking film at 0.30; 10 normal films
POS = [0.80 + 0.01 * i for i in range(19)] + [0.30]
NEG = [0.10, 0.20, 0.25, 0.35, 0.40, 0.50, 0.60, 0.70, 0.85, 0.90]


def _rec(i: int, urgent: int, view: str = "PA") -> Record:
    return Record(dataset="nih", image_id=f"{i}.png", path=Path(f"{i}.png"), patient=f"p{i}", urgent=urgent, view=view)


def _scored(threshold: float = 0.5, band_low: float = 0.45) -> dict:
    y = [1] * len(POS) + [0] * len(NEG)
    s = np.array(POS + NEG)
    recs = [_rec(i, yi, "PA" if i % 2 else "AP") for i, yi in enumerate(y)]
    refused = [_rec(100, 0, "PA"), _rec(101, 1, "AP")]
    return {
        "scores": s,
        "labels": (s >= band_low).astype(int),  # the review band [0.45, 0.55) is labelled Urgent
        "review": ((s >= band_low) & (s < 0.55)).astype(int),
        "y": np.array(y),
        "records": recs,
        "rejected": [{"key": r.key, "error": "not a chest film"} for r in refused],
        "all_records": recs + refused,
    }


def test_specificity_at_sensitivity_targets_on_a_hand_made_case() -> None:
    b = set_metrics(_scored(), threshold=0.5, n_boot=200)
    oracle = b["specificity_at_sensitivity"]
    # 0.95 keeps 19 of 20 urgent films: threshold 0.80, 8 of 10 normals below it
    assert oracle["0.95"]["threshold"] == pytest.approx(0.80)
    assert oracle["0.95"]["specificity"] == pytest.approx(0.8) and oracle["0.95"]["sensitivity"] == 0.95
    # 0.98 and 0.99 must keep all 20, down to the film at 0.30: only 3 normals below it
    for t in ("0.98", "0.99"):
        assert oracle[t]["specificity"] == pytest.approx(0.3) and oracle[t]["sensitivity"] == 1.0
    lo, hi = oracle["0.95"]["specificity_ci95"]
    assert lo <= 0.8 <= hi
    # the shipped threshold 0.5: 19 of 20 urgent flagged, 5 of 10 normals Non-Urgent; the band adds 0.50 -> Urgent
    assert (b["at_threshold"]["sensitivity"], b["at_threshold"]["specificity"]) == (0.95, 0.5)
    assert (b["as_labelled"]["sensitivity"], b["as_labelled"]["specificity"]) == (0.95, 0.5)
    assert b["as_labelled"]["fp"] == 5 and b["at_threshold"]["fn"] == 1
    assert b["review_rate"] == pytest.approx(1 / 30)  # the normal film at 0.50
    assert (b["refused_by_gate"], b["refused_share"]) == (2, pytest.approx(2 / 32))
    assert b["auc"] == pytest.approx(metrics.roc_auc(_scored()["y"], _scored()["scores"]))
    assert b["ece"] == pytest.approx(metrics.expected_calibration_error(_scored()["y"], _scored()["scores"]))


def test_views_split_films_and_refusals() -> None:
    res = _scored()
    pa = subset(res, lambda r: r.view == "PA")
    assert len(pa["records"]) == 15 and all(r.view == "PA" for r in pa["records"])
    assert [x["key"] for x in pa["rejected"]] == ["nih/100.png"]
    report = build_report({"nih": res}, 0.5, n_boot=50)
    assert list(report) == ["nih", "nih_PA", "nih_AP"]
    assert report["nih_PA"]["n"] + report["nih_AP"]["n"] == report["nih"]["n"]
    assert report["nih_PA"]["refused_by_gate"] + report["nih_AP"]["refused_by_gate"] == 2


def test_a_negatives_only_source_reports_specificity_but_no_auc() -> None:
    s = np.array([0.1, 0.2, 0.6])
    res = {"scores": s, "labels": (s >= 0.5).astype(int), "review": np.zeros(3), "y": np.zeros(3, dtype=int)}
    b = set_metrics({**res, "records": [_rec(i, 0) for i in range(3)], "rejected": []}, 0.5, n_boot=20)
    assert b["auc"] is None and b["specificity_at_sensitivity"] is None
    assert b["at_threshold"]["specificity"] == pytest.approx(2 / 3) and b["at_threshold"]["sensitivity"] is None


def test_bootstrap_statistic_ci_is_seeded_and_skips_one_class_sets() -> None:
    y, s = _scored()["y"], _scored()["scores"]

    def stat(yb: np.ndarray, sb: np.ndarray) -> float:
        return metrics.specificity_at_sensitivity(yb, sb, 0.95)

    a = metrics.bootstrap_statistic_ci(y, s, stat, n_boot=100, seed=3)
    assert a == metrics.bootstrap_statistic_ci(y, s, stat, n_boot=100, seed=3) and a[0] < a[1]
    assert all(math.isnan(v) for v in metrics.bootstrap_statistic_ci(np.zeros(5), np.ones(5), stat, n_boot=10))


def _report(generation: str, sha: str, spec95: float) -> dict:
    block = set_metrics(_scored(), 0.5, n_boot=20)
    block["specificity_at_sensitivity"]["0.95"]["specificity"] = spec95
    return {
        "created": "2026-12-07",
        "command": "cxrtriage evaluate-operating-points",
        "generation": generation,
        "model": {"name": "m", "version": "0", "sha256": sha * 64},
        "threshold": 0.5,
        "targets": ["0.95", "0.98", "0.99"],
        "notes": {"oracle": "threshold chosen on the same set"},
        "sets": {"nih": {**block, "set": "NIH adults, test patients"}},
    }


def test_markdown_table_keeps_generation_2_beside_the_newer_model(tmp_path: Path) -> None:
    (tmp_path / "operating_points_gen2.json").write_text(json.dumps(_report("generation 2 (shipped)", "a", 0.123)))
    (tmp_path / "operating_points.json").write_text(json.dumps(_report("generation 3", "b", 0.456)))
    text = render_block(tmp_path)
    assert text.startswith(BEGIN) and text.endswith(END)
    rows = [line for line in text.splitlines() if line.startswith("| NIH adults, test patients |")]
    assert [r.split(" | ")[1] for r in rows] == ["generation 2 (shipped)", "generation 3"]
    assert "0.123 [" in rows[0] and "0.456 [" in rows[1]
    # the same model measured twice is one row, not two
    (tmp_path / "operating_points.json").write_text(json.dumps(_report("generation 2 again", "a", 0.9)))
    assert "generation 2 again" not in render_block(tmp_path)
    assert "Not measured yet" in render_block(tmp_path / "empty")


def test_command_is_registered() -> None:
    args = build_parser().parse_args(["evaluate-operating-points", "--generation", "g2", "--n-boot", "10"])
    assert (args.generation, args.n_boot, args.out) == ("g2", 10, "prototype/eval/operating_points.json")


def test_every_source_has_its_committed_test_part(data_dir: Path) -> None:
    sets = held_out_records(data_dir)
    assert {k: len(v) for k, v in sets.items()} == {"nih": 105, "kermany": 480, "shenzhen": 70, "jsrt": 14}
    assert {r.view for r in sets["nih"]} == {"PA", "AP"}


def test_committed_markdown_is_rendered_from_the_committed_report() -> None:
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "MODEL.md").read_text(encoding="utf-8")
    assert render_block(root / "prototype" / "eval") in doc


def test_model_card_shows_the_previous_generation_beside_this_one() -> None:
    import json as _json

    from cxrtriage import config
    from cxrtriage.evaluation.model_card import render

    meta = _json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text())
    card = {
        "operating_points": _report("generation 3", "b", 0.456),
        "previous_generation": {"name": "m", "version": "0.2.0", "operating_points": _report("generation 2", "a", 0.1)},
    }
    text = render(meta, card)
    assert "## Operating points per source and view" in text
    rows = [line for line in text.splitlines() if line.startswith("| NIH adults, test patients |")]
    assert [r.split(" | ")[1] for r in rows] == ["generation 2", "generation 3"]
    assert "## Operating points" not in render(meta, {})


def test_ece_floor_tells_sample_noise_from_a_calibration_error() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, 70)
    calibrated = (rng.random(70) < p).astype(int)
    ece = metrics.expected_calibration_error(calibrated, p)
    floor = metrics.ece_if_calibrated(p, ece, n_draws=2000, seed=0)
    # 70 films from a perfectly calibrated score: a sizeable ECE that sits inside the floor's spread
    assert floor["mean"] > 0.06 and floor["range90"][0] < floor["mean"] < floor["range90"][1]
    assert floor["share_at_or_above_measured"] > 0.05
    # the same scores, but every film at p < 0.5 is in truth urgent: far above the floor
    wrong = np.where(p < 0.5, 1, calibrated)
    bad = metrics.ece_if_calibrated(p, metrics.expected_calibration_error(wrong, p), n_draws=2000, seed=0)
    assert bad["share_at_or_above_measured"] < 0.01
    # the floor shrinks with the set's size, and the draws are seeded
    big = metrics.ece_if_calibrated(np.tile(p, 10), n_draws=500, seed=0)
    assert big["mean"] < floor["mean"] / 2 and "share_at_or_above_measured" not in big
    assert metrics.ece_if_calibrated(p, ece, n_draws=300, seed=1) == metrics.ece_if_calibrated(
        p, ece, n_draws=300, seed=1
    )
    with pytest.raises(ValueError):
        metrics.ece_if_calibrated(np.array([0.2, 1.3]))


def test_report_gives_ece_its_ci_and_floor_even_for_a_negatives_only_source() -> None:
    b = set_metrics(_scored(), threshold=0.5, n_boot=200)
    lo, hi = b["ece_ci95"]
    assert lo < hi and b["ece_if_calibrated"]["n_draws"] == 1000
    assert 0.0 <= b["ece_if_calibrated"]["share_at_or_above_measured"] <= 1.0
    s = np.array([0.1, 0.2, 0.6, 0.05])
    res = {"scores": s, "labels": (s >= 0.5).astype(int), "review": np.zeros(4), "y": np.zeros(4, dtype=int)}
    neg = set_metrics({**res, "records": [_rec(i, 0) for i in range(4)], "rejected": []}, 0.5, n_boot=50)
    assert not any(math.isnan(v) for v in neg["ece_ci95"]) and neg["ece_if_calibrated"]["mean"] > 0


def test_markdown_table_shows_the_ece_floor_and_na_for_older_reports(tmp_path: Path) -> None:
    old = _report("generation 2 (shipped)", "a", 0.1)
    for key in ("ece_ci95", "ece_if_calibrated"):
        old["sets"]["nih"].pop(key)
    (tmp_path / "operating_points_gen2.json").write_text(json.dumps(old))
    (tmp_path / "operating_points.json").write_text(json.dumps(_report("generation 3", "b", 0.2)))
    rows = [line for line in render_block(tmp_path).splitlines() if line.startswith("| NIH adults, test patients |")]
    floor = _report("generation 3", "b", 0.2)["sets"]["nih"]["ece_if_calibrated"]
    assert "| n/a |" in rows[0]
    assert f"{floor['mean']:.3f} [{floor['range90'][0]:.3f}, {floor['range90'][1]:.3f}], p " in rows[1]
    assert "ECE if perfectly calibrated" in render_block(tmp_path)
