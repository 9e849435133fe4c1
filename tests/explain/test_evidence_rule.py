"""When a result shows evidence crops (issue 24: fewer crops on negative films): a Non-Urgent result only where the
activation map's peak stands out of the lung fields; an Urgent result, review or not, keeps its crops."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cxrtriage import decision
from cxrtriage.explain.evidence import NON_URGENT_MIN_PROMINENCE, peak_prominence
from cxrtriage.pipeline import Triage

RULE_FILE = Path(__file__).resolve().parents[2] / "prototype/eval/evidence_rule.json"


def ramp() -> np.ndarray:
    """A smooth, diffuse map (a gentle slope from one side to the other): its top region holds most of the positive
    mass, but nothing in it stands out."""
    return np.tile(np.linspace(0.1, 1.0, 16), (16, 1))


def hot_spot() -> np.ndarray:
    """The same slope, scaled down, with one hot 2x2 patch: a map whose peak stands out."""
    cam = 0.02 * ramp()
    cam[5:7, 3:5] = 2.0
    return cam


def evidence(cam: np.ndarray, label: str, needs_review: bool = False) -> list:
    """The pipeline's evidence stage on one map (no segmentation: the whole image is the evidence region)."""
    case = SimpleNamespace(
        output=SimpleNamespace(cam=cam),
        pixels=np.zeros((256, 256), np.float32),
        anatomy=None,
        decision=SimpleNamespace(label=label, needs_review=needs_review),
        boxes=[],
    )
    Triage._find_evidence(None, case)  # type: ignore[arg-type]  # the stage reads only the case
    return case.boxes


def test_prominence_separates_a_hot_spot_from_a_diffuse_map() -> None:
    assert peak_prominence(ramp()) < NON_URGENT_MIN_PROMINENCE < peak_prominence(hot_spot())
    assert peak_prominence(np.full((8, 8), 3.0)) == 0.0


def test_prominence_is_measured_inside_the_allowed_region() -> None:
    cam = ramp()
    cam[0, 0] = 5.0  # a hot cell outside the lung fields (a marker, burned-in text) does not make the map stand out
    allowed = np.zeros((16, 16), bool)
    allowed[4:12, 4:12] = True
    assert peak_prominence(cam) > NON_URGENT_MIN_PROMINENCE > peak_prominence(cam, allowed)


def test_non_urgent_result_shows_no_crop_on_a_diffuse_map() -> None:
    assert evidence(ramp(), decision.NON_URGENT) == []  # the old rule (strength >= 0.5 only) showed one here


def test_non_urgent_result_shows_one_crop_where_the_map_stands_out() -> None:
    boxes = evidence(hot_spot(), decision.NON_URGENT)
    assert len(boxes) == 1 and boxes[0].strength >= 0.5


@pytest.mark.parametrize("needs_review", [False, True])
def test_urgent_result_keeps_its_crops_on_a_diffuse_map(needs_review: bool) -> None:
    assert evidence(ramp(), decision.URGENT, needs_review)  # how the reader checks the flag


def test_the_level_is_the_one_fitted_on_validation_films() -> None:
    rule = json.loads(RULE_FILE.read_text(encoding="utf-8"))
    assert NON_URGENT_MIN_PROMINENCE == rule["non_urgent_min_prominence"]
    assert "no test film" in rule["films"]
