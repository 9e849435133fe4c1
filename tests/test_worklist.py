"""The reading worklist: overdue studies first, then Urgent or needs-review, then the rest, oldest first; it survives a
restart; the service files every result on it under the sender's key."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from cxrtriage.schema import ModelInfo, Prediction
from cxrtriage.worklist import Worklist

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)
MODEL = ModelInfo(name="m", version="1", sha256="0" * 64)


def _pred(label: str, score: float, review: bool = False) -> Prediction:
    return Prediction(
        label=label,
        score=score,
        explanation=f"{label}.",
        threshold=0.3,
        review_band=(0.25, 0.35),
        needs_review=review,
        model=MODEL,
    )


def _ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


def test_reading_order_urgent_then_overdue_routine_then_routine_each_oldest_first(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    wl.add(_pred("Non-Urgent", 0.05), "ROUTINE-OLD", _ago(50))
    wl.add(_pred("Non-Urgent", 0.05), "ROUTINE-NEW", _ago(5))
    wl.add(_pred("Urgent", 0.9), "URGENT-NEW", _ago(1))
    wl.add(_pred("Urgent", 0.6), "URGENT-OLD", _ago(20))
    wl.add(_pred("Non-Urgent", 0.2, review=True), "REVIEW", _ago(10))
    wl.add(_pred("Non-Urgent", 0.02), "OVERDUE", _ago(90))  # waited past the maximum: above fresh routine only
    wl.add(_pred("Urgent", 0.7), "URGENT-OVERDUE", _ago(70))  # an overdue urgent study: above everything
    items = wl.items(now=NOW)
    assert [i["key"] for i in items] == [
        "URGENT-OVERDUE",
        "URGENT-OLD",
        "REVIEW",
        "URGENT-NEW",
        "OVERDUE",
        "ROUTINE-OLD",
        "ROUTINE-NEW",
    ]
    assert [i["priority"] for i in items[:5]] == ["overdue", "urgent", "urgent", "urgent", "overdue"]
    assert items[4]["waiting_s"] == pytest.approx(90 * 60)


@pytest.mark.parametrize(
    "routine, minutes_ago",
    [(205, 120), (1000, 0), (1000, 24 * 60)],  # a two-hour backlog, a burst, a day-old backlog
)
def test_a_new_urgent_study_is_never_buried_under_routine_ones(tmp_path, routine, minutes_ago):
    """The scenario that once hid an urgent film: many routine studies (overdue or not), then urgent ones arrive;
    every urgent study is on the first page (200 rows), the newest one too."""
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    for i in range(routine):
        wl.add(_pred("Non-Urgent", 0.05), f"R{i}", _ago(minutes_ago + i / 100))
    wl.add(_pred("Non-Urgent", 0.2, review=True), "REVIEW-NEW", _ago(0.5))
    wl.add(_pred("Urgent", 0.9), "URGENT-NEW", _ago(0.1))
    first_page = [i["key"] for i in wl.items(now=NOW, limit=200)]
    assert {"URGENT-NEW", "REVIEW-NEW"} <= set(first_page[:2])


def test_it_survives_a_restart_and_a_key_sent_again_replaces_its_study(tmp_path):
    path = tmp_path / "wl.sqlite"
    Worklist(path).add(_pred("Urgent", 0.9), "ACC-1", _ago(3))
    again = Worklist(path)
    assert [i["key"] for i in again.items(now=NOW)] == ["ACC-1"]
    assert again.result("ACC-1")["label"] == "Urgent"
    again.add(_pred("Non-Urgent", 0.1), "ACC-1", _ago(1))
    assert [(i["key"], i["label"]) for i in again.items(now=NOW)] == [("ACC-1", "Non-Urgent")]
    assert again.result("nope") is None


def test_only_accession_like_keys_are_stored(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    for bad in ("Doe^John", "../etc/passwd", "", "a" * 65, "12 34"):
        with pytest.raises(ValueError):
            wl.add(_pred("Urgent", 0.9), bad or "\n")
    assert len(wl.add(_pred("Urgent", 0.9))) == 16  # a random key when the sender gives none


def test_the_service_files_each_result_under_the_senders_key(tmp_path, data_dir):
    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.app import create_app

    settings = Settings(crops_dir=tmp_path / "crops", ui=False, warmup=False, worklist_path=tmp_path / "wl.sqlite")
    image = (data_dir / "nih" / "images" / "00000150_002.png").read_bytes()
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        upload = {"file": ("x.png", image, "image/png")}
        r = client.post("/predict", files=upload, data={"accession": "ACC-100"})  # as a form field
        assert r.status_code == 200 and r.headers["x-worklist-key"] == "ACC-100", r.text
        r = client.post("/predict?accession=ACC-101", files=upload)  # or as a query parameter, never ignored
        assert r.status_code == 200 and r.headers["x-worklist-key"] == "ACC-101", r.text
        anonymous = client.post("/predict", files=upload)  # a random key, which the response names
        assert len(anonymous.headers["x-worklist-key"]) == 16
        assert client.get(f"/worklist/{anonymous.headers['x-worklist-key']}").status_code == 200
        bad = client.post("/predict", files=upload, data={"accession": "Doe^John"})
        assert bad.status_code == 422
        assert client.post("/predict?accession=Doe^John", files=upload).status_code == 422
        twice = client.post("/predict?accession=ACC-1", files=upload, data={"accession": "ACC-2"})
        assert twice.status_code == 422 and "twice" in twice.json()["detail"]
        listed = client.get("/worklist").json()
        keys = [i["key"] for i in listed["items"]]
        assert keys[:2] == ["ACC-100", "ACC-101"] and len(keys) == 3  # all Urgent: the older first
        assert listed["items"][0]["priority"] == "urgent" and listed["max_wait_min"] == 60.0
        assert "a routine study never rises above an urgent one" in listed["order"]  # the rule the list follows
        stored = client.get("/worklist/ACC-101")
        assert stored.status_code == 200 and stored.json()["label"] == listed["items"][1]["label"]
        assert client.get("/worklist/ACC-999").status_code == 404


def test_a_failed_write_keeps_the_result_with_a_warning(tmp_path, caplog):
    """POST /predict and the UI's Triage button share this: the result is never lost, it says it is not listed."""
    import sqlite3

    from cxrtriage.worklist import NOT_FILED_WARNING, file_on_worklist

    def broken() -> Worklist:
        raise sqlite3.OperationalError("unable to open database file")

    pred = _pred("Urgent", 0.9)
    kept, key = file_on_worklist(broken, pred, "ACC-1")
    assert key is None and kept.label == "Urgent" and kept.warnings == [NOT_FILED_WARNING]
    assert "worklist write failed: OperationalError" in caplog.text
    wl = Worklist(tmp_path / "wl.sqlite")
    stored = _pred("Non-Urgent", 0.1)
    same, key = file_on_worklist(lambda: wl, pred, stored=stored)
    assert same is pred and len(key) == 16 and wl.result(key)["label"] == "Non-Urgent"  # what was asked to be stored
