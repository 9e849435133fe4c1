"""The operating point of the shipped model: pooled calibration, sensitivity >= 0.95 on EACH source."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from cxrtriage.backends.calibration import platt  # noqa: E402
from cxrtriage.train.operating_point import ValidationSet, fit_operating_point  # noqa: E402


def _source(rng: np.random.Generator, n_pos: int, n_neg: int, shift: float) -> ValidationSet:
    logits = np.concatenate([rng.normal(1.0 + shift, 1.0, n_pos), rng.normal(-1.0 + shift, 1.0, n_neg)])
    labels = np.concatenate([np.ones(n_pos, int), np.zeros(n_neg, int)])
    return ValidationSet(logits=logits, labels=labels, patients=[f"p{i // 2}" for i in range(len(labels))])


def test_threshold_meets_the_sensitivity_target_on_every_source_and_negatives_only_sources_count_in_calibration():
    rng = np.random.default_rng(0)
    sources = {
        "nih": _source(rng, 40, 60, 0.0),
        "kermany": _source(rng, 300, 100, 1.5),
        "jsrt": _source(rng, 0, 20, -1.0),
    }
    op = fit_operating_point(sources)
    a, b = op["calibration"]["a"], op["calibration"]["b"]
    for name in ("nih", "kermany"):
        s = sources[name]
        sens = (platt(s.logits, a, b)[s.labels == 1] >= op["threshold"]).mean()
        assert sens >= 0.95, name
    assert "threshold_for_sensitivity_0.95" not in op["validation_by_source"]["jsrt"]
    assert op["validation_by_source"]["jsrt"]["n"] == 20
    assert op["threshold"] == min(
        v["threshold_for_sensitivity_0.95"] for k, v in op["validation_by_source"].items() if k != "jsrt"
    )
    low, high = op["review_band"]
    assert low <= op["threshold"] <= high
    assert "JSRT normal adult 20" in op["calibration"]["fit_on"]


def test_the_review_band_source_is_required():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="nih"):
        fit_operating_point({"kermany": _source(rng, 10, 10, 0.0)})


def test_a_source_ranked_worse_than_chance_is_left_out_of_the_fit_and_its_threshold_still_binds():
    """Pooled in, children ranked inversely by an adults-only model made the slope negative and inverted every
    decision; left out, the slope stays positive and the children still get sensitivity >= 0.95."""
    rng = np.random.default_rng(2)
    sources = {"nih": _source(rng, 40, 60, 0.0), "kermany": _source(rng, 400, 150, 0.0)}
    flipped = sources["kermany"]
    sources["kermany"] = ValidationSet(logits=-flipped.logits, labels=flipped.labels, patients=flipped.patients)
    op = fit_operating_point(sources)
    a, b = op["calibration"]["a"], op["calibration"]["b"]
    assert a > 0 and "kermany" in op["calibration"]["left_out_of_fit"]
    assert "left out" in op["calibration"]["fit_on"] and "pediatric 550" not in op["calibration"]["fit_on"]
    k = sources["kermany"]
    assert (platt(k.logits, a, b)[k.labels == 1] >= op["threshold"]).mean() >= 0.95


def test_a_model_that_ranks_every_source_worse_than_chance_cannot_be_calibrated():
    rng = np.random.default_rng(3)
    nih = _source(rng, 40, 60, 0.0)
    with pytest.raises(ValueError, match="worse than chance"):
        fit_operating_point({"nih": ValidationSet(logits=-nih.logits, labels=nih.labels, patients=nih.patients)})


def test_sources_whose_pooled_logits_run_backwards_get_a_tiny_positive_slope_and_a_warning():
    """Each source ranks a little (AUC > 0.5), but the source with high logits is mostly normal and the one with low
    logits mostly urgent (a near-random model, a 2-epoch smoke run): the pooled slope comes out negative and would
    invert every decision. The fit keeps the logits' order, says the scores are uninformative, and sensitivity >= 0.95
    still holds on each source."""
    from cxrtriage.backends.calibration import DEGENERATE_SLOPE

    rng = np.random.default_rng(4)
    high = _source(rng, 10, 90, 0.0)
    high = ValidationSet(logits=high.logits * 0.3 + 5.0, labels=high.labels, patients=high.patients)
    low = _source(rng, 90, 10, 0.0)
    low = ValidationSet(logits=low.logits * 0.3 - 5.0, labels=low.labels, patients=low.patients)
    op = fit_operating_point({"nih": high, "kermany": low})
    a, b = op["calibration"]["a"], op["calibration"]["b"]
    assert a == DEGENERATE_SLOPE and "uninformative" in op["calibration"]["warning"]
    for s in (high, low):
        assert (platt(s.logits, a, b)[s.labels == 1] >= op["threshold"]).mean() >= 0.95
    pooled = np.concatenate([high.labels, low.labels])
    mean_score = platt(np.concatenate([high.logits, low.logits]), a, b).mean()
    assert abs(mean_score - pooled.mean()) < 0.05


def test_shenzhen_is_one_more_adult_source_pooled_in_the_fit_and_its_threshold_binds_when_lowest():
    """The third adult site is calibrated on like the others: pooled into the Platt fit, named, and its own
    sensitivity-0.95 threshold takes part in the minimum (here it is the hardest source, so it sets the threshold)."""
    rng = np.random.default_rng(5)
    sources = {
        "nih": _source(rng, 40, 60, 0.0),
        "kermany": _source(rng, 300, 100, 1.5),
        "shenzhen": _source(rng, 30, 30, -1.5),
    }
    op = fit_operating_point(sources)
    by_source = op["validation_by_source"]
    assert op["threshold"] == by_source["shenzhen"]["threshold_for_sensitivity_0.95"]
    assert op["threshold"] < min(by_source[k]["threshold_for_sensitivity_0.95"] for k in ("nih", "kermany"))
    s = sources["shenzhen"]
    a, b = op["calibration"]["a"], op["calibration"]["b"]
    assert (platt(s.logits, a, b)[s.labels == 1] >= op["threshold"]).mean() >= 0.95
    assert "Shenzhen adult 60" in op["calibration"]["fit_on"] and "Shenzhen adult" in op["threshold_rule"]


def test_the_validation_sources_include_shenzhen_when_its_table_is_there(data_dir):
    from cxrtriage.data import read_all_splits
    from cxrtriage.train.operating_point import validation_records

    val = validation_records(data_dir)
    assert {"nih", "kermany", "jsrt"} <= set(val)
    if not (data_dir / "shenzhen" / "labels.csv").is_file():
        assert "shenzhen" not in val
        return
    split = read_all_splits()
    shz = val["shenzhen"]
    assert shz and all(r.dataset == "shenzhen" and split[r.key] == "val" for r in shz)
    assert {r.urgent for r in shz} == {0, 1}
