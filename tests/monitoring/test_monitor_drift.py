"""Drift figures and their alerts on synthetic monitor records: a stable week raises nothing, a week whose urgent
rate, scores, refusals, similarity or films changed raises the alert that names it, too few results are said to be
too few (never judged), and the report names its reference."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cxrtriage.monitoring.drift import Limits, Reference, compare, window_words
from cxrtriage.monitoring.record import RECORD_KEYS, parse_record

NOW = dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.timezone.utc)
WEEK = dt.timedelta(days=7)


def records(
    n: int,
    *,
    urgent: float = 0.4,
    score_shift: float = 0.0,
    refused: float = 0.0,
    similarity: float = 0.8,
    grey: float = 0.5,
    source: str = "api",
    seed: int = 0,
    start: dt.datetime = NOW - WEEK,
) -> list[dict]:
    """``n`` records: ``urgent`` of the triaged ones Urgent (score above 0.5), the rest Non-Urgent."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        when = start + (i + 1) * WEEK / (n + 1)
        if rng.random() < refused:
            out.append(
                {
                    "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "source": source,
                    "outcome": "refused",
                    "label": None,
                    "score": None,
                    "needs_review": True,
                    "similarity": None,
                    "image": None,
                    "site": None,
                    "model_sha256": "a" * 64,
                }
            )
            continue
        is_urgent = rng.random() < urgent
        score = float(
            np.clip((rng.uniform(0.55, 0.95) if is_urgent else rng.uniform(0.05, 0.45)) + score_shift, 0.0, 1.0)
        )
        out.append(
            {
                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": source,
                "outcome": "triaged",
                "label": "Urgent" if is_urgent else "Non-Urgent",
                "score": score,
                "needs_review": bool(0.4 <= score < 0.6),
                "similarity": float(rng.normal(similarity, 0.03)),
                "image": {
                    "mean": float(rng.normal(grey, 0.03)),
                    "std": float(rng.normal(0.22, 0.02)),
                    "width": 512,
                    "height": 512,
                },
                "site": None,
                "model_sha256": "a" * 64,
            }
        )
    return [parse_record(r) for r in out]


def reference(recs: list[dict], kind: str = "commissioning") -> Reference:
    return Reference(kind, "the commissioning sample of site Test (200 cases)", recs)


def judged(recent: list[dict], ref: list[dict], **kw) -> dict:
    report = compare(reference(ref), recent, window_start=NOW - WEEK, window_end=NOW, **kw)
    return {f.key: f for f in report.figures}, report


def test_synthetic_records_have_the_interface_keys() -> None:
    assert all(tuple(r) == RECORD_KEYS for r in records(20, refused=0.3))


def test_a_stable_week_raises_no_alert() -> None:
    figures, report = judged(records(300, seed=1), records(200, seed=2))
    assert report.alerts == [], [f.message for f in report.alerts]
    assert {
        "score_psi",
        "score_ks",
        "urgent_rate",
        "review_rate",
        "refusal_rate",
        "similarity",
        "image_mean",
        "image_std",
    } <= set(figures)
    assert all(f.status == "ok" for f in figures.values())


def test_urgent_rate_alert_names_the_change_and_the_reference() -> None:
    figures, report = judged(records(300, urgent=0.71, seed=3), records(200, urgent=0.38, seed=4))
    fig = figures["urgent_rate"]
    assert fig.status == "alert"
    assert fig.message.startswith("urgent rate 7") and "this week against 3" in fig.message
    assert "at commissioning: check for a new modality or protocol" in fig.message
    assert fig in report.alerts


def test_score_shift_raises_psi_and_ks() -> None:
    figures, _ = judged(records(300, score_shift=0.25, seed=5), records(200, seed=6))
    assert figures["score_psi"].status == "alert" and figures["score_psi"].statistic > 0.25
    assert figures["score_ks"].status == "alert" and figures["score_ks"].p_value < 0.01


def test_refusals_similarity_and_grey_each_alert_by_name() -> None:
    figures, _ = judged(records(300, refused=0.2, similarity=0.7, grey=0.6, seed=7), records(200, seed=8))
    assert figures["refusal_rate"].status == "alert" and "check what is being sent" in figures["refusal_rate"].message
    assert (
        figures["similarity"].status == "alert" and "resemble the training cases less" in figures["similarity"].message
    )
    assert figures["image_mean"].status == "alert" and "brighter" in figures["image_mean"].message


def test_a_small_change_in_rate_is_within_the_limit() -> None:
    figures, _ = judged(records(300, urgent=0.45, seed=9), records(200, urgent=0.40, seed=10))
    assert figures["urgent_rate"].status == "ok"


def test_too_few_results_are_not_judged() -> None:
    figures, report = judged(records(10, urgent=0.9, seed=11), records(200, seed=12))
    assert figures["urgent_rate"].status == "too_few" and "too few results to judge" in figures["urgent_rate"].message
    assert report.alerts == []


def test_an_incomplete_first_use_reference_is_said_so() -> None:
    ref = Reference("first_use", "the first 50 results of use", records(50, seed=13), complete=False)
    report = compare(ref, records(300, urgent=0.9, seed=14), window_start=NOW - WEEK, window_end=NOW)
    assert report.alerts == [] and any("still being collected" in n for n in report.notes)
    assert ref.words == "in the first 50 results of use"


def test_reader_agreement_alerts_on_missed_urgent_films_and_on_a_fall() -> None:
    ref = records(200, seed=15)
    figures, _ = judged(
        records(300, seed=16),
        ref,
        agreement={"overall": 0.7, "urgent": 0.6, "non_urgent": 0.85, "n": 120},
        reference_agreement={"overall": 0.85, "urgent": 0.7, "non_urgent": 0.95, "n": 200},
    )
    assert figures["agreement_non_urgent"].status == "alert"
    assert figures["agreement_overall"].status == "alert" and "feedback export" in figures["agreement_overall"].message
    assert figures["agreement_urgent"].status == "ok"  # a 10-point fall is at the limit only when >= 0.10
    few, _ = judged(records(300, seed=16), ref, agreement={"overall": 0.2, "urgent": None, "non_urgent": 0.2, "n": 5})
    assert few["agreement_overall"].status == "too_few" and "agreement_urgent" not in few


def test_report_json_names_reference_window_and_method() -> None:
    _, report = judged(records(300, urgent=0.71, seed=17), records(200, urgent=0.38, seed=18))
    data = report.to_dict()
    assert data["reference"]["kind"] == "commissioning" and "commissioning sample" in data["reference"]["description"]
    assert data["window"]["label"] == "this week" and data["window"]["n"] == 300
    assert data["ks_method"] == "scipy.stats.ks_2samp"
    assert any(a.startswith("urgent rate") for a in data["alerts"])


@pytest.mark.parametrize(
    ("span", "words"),
    [(WEEK, "this week"), (dt.timedelta(days=1), "in the last 24 hours"), (dt.timedelta(days=3), "in the last 3 days")],
)
def test_window_words(span: dt.timedelta, words: str) -> None:
    assert window_words(span) == words


def test_stricter_limits_turn_a_change_into_an_alert() -> None:
    recent, ref = records(300, urgent=0.50, seed=19), records(300, urgent=0.38, seed=20)  # 53% against 43%
    loose = compare(reference(ref), recent, window_start=NOW - WEEK, window_end=NOW)
    strict = compare(
        reference(ref), recent, window_start=NOW - WEEK, window_end=NOW, limits=Limits(urgent_points=0.05, rate_p=0.05)
    )
    assert "urgent_rate" not in {f.key for f in loose.alerts}
    assert "urgent_rate" in {f.key for f in strict.alerts}
