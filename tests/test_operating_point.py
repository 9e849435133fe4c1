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
    sources = {"nih": _source(rng, 40, 60, 0.0), "kermany": _source(rng, 300, 100, 1.5), "jsrt": _source(rng, 0, 20, -1.0)}
    op = fit_operating_point(sources)
    a, b = op["calibration"]["a"], op["calibration"]["b"]
    for name in ("nih", "kermany"):
        s = sources[name]
        sens = (platt(s.logits, a, b)[s.labels == 1] >= op["threshold"]).mean()
        assert sens >= 0.95, name
    assert "threshold_for_sensitivity_0.95" not in op["validation_by_source"]["jsrt"]
    assert op["validation_by_source"]["jsrt"]["n"] == 20
    assert op["threshold"] == min(v["threshold_for_sensitivity_0.95"] for k, v in op["validation_by_source"].items() if k != "jsrt")
    low, high = op["review_band"]
    assert low <= op["threshold"] <= high
    assert "JSRT normal adult 20" in op["calibration"]["fit_on"]


def test_the_review_band_source_is_required():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="nih"):
        fit_operating_point({"kermany": _source(rng, 10, 10, 0.0)})
