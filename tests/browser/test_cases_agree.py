"""How the parity check tells a near tie among similar training cases from a different answer."""

from __future__ import annotations

from cxrtriage.browser.parity import cases_agree

PY = [("training_case:a", 0.989), ("training_case:b", 0.987), ("training_case:c", 0.9868)]


def test_the_same_cases_agree_and_a_near_tie_for_the_last_one_too() -> None:
    assert cases_agree(PY, list(PY))
    assert cases_agree(PY, [PY[0], PY[1], ("training_case:d", 0.9867)])


def test_another_nearest_case_or_a_far_third_one_does_not() -> None:
    assert not cases_agree(PY, [PY[1], PY[0], PY[2]])
    assert not cases_agree(PY, [PY[0], PY[1], ("training_case:d", 0.95)])
    assert not cases_agree(PY, [])
