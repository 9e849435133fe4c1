"""The view probe's refusal cut-offs (issue 24: refuse laterals, never a frontal film): fitted above every frontal
film and acquisition variant, and the bundled ones above every held-out frontal film and variant measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.backends.bundle_config import BundleConfig
from cxrtriage.config import BUNDLED_WEIGHTS_DIR
from cxrtriage.train.view_probe_cv import REJECT_MARGIN, REJECT_WITH_LUNGS_CAP, cut_offs, refused

VIEW_GATE = Path(__file__).resolve().parents[2] / "prototype/eval/view_gate.json"


def test_cut_off_with_lungs_sits_a_margin_above_the_highest_frontal_film_with_lungs() -> None:
    scores = np.array([0.2, 0.5, 0.85, 0.8, 0.86])  # the last has no typical pair of lungs
    pairs = np.array([True, True, True, False, False])
    reject_above, with_lungs = cut_offs(scores, pairs)
    assert reject_above == pytest.approx(0.86 + REJECT_MARGIN)
    assert with_lungs == pytest.approx(0.86 + REJECT_MARGIN)  # never below reject_above
    assert cut_offs(scores, np.array([True, True, False, False, False]))[1] == reject_above
    assert not refused(scores, pairs, reject_above, with_lungs).any()
    lateral_with_lungs = np.array([0.975])  # the kind the fixed 0.99 sent to review
    assert refused(lateral_with_lungs, np.array([True]), reject_above, with_lungs).all()


def test_cut_off_with_lungs_is_capped() -> None:
    reject_above, with_lungs = cut_offs(np.array([0.1, 0.97]), np.array([False, True]))
    assert with_lungs == REJECT_WITH_LUNGS_CAP and reject_above <= with_lungs


def test_bundled_cut_offs_lie_above_every_measured_frontal_film_and_variant() -> None:
    gate = json.loads(VIEW_GATE.read_text(encoding="utf-8"))
    probe = BundleConfig.load(BUNDLED_WEIGHTS_DIR / "model.json").view_probe
    assert probe is not None
    assert gate["bundle"]["reject_above"] == probe.reject_above, "refit probe: rerun scripts/view_gate.py"
    assert gate["bundle"]["reject_with_lungs_above"] == probe.reject_with_lungs_above
    s = gate["summary"]
    assert s["frontal_refused_now"] == []
    assert s["frontal_max_score"] < probe.reject_above - 0.02  # with room
    assert s["frontal_max_score_with_pair"] < probe.reject_with_lungs_above - 0.02
