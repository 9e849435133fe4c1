"""A study sent again keeps its history (every version, the queue place of its first arrival, a warning when the
reading changed), a study any of whose versions was urgent stays with the urgent ones, a file written before versions
were kept is migrated on open, two writers on one file never lose a version, and the state the worklist writes is
readable by the service user only."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import stat
import threading

import numpy as np
import pytest
from fake_prediction import fake_prediction

from cxrtriage.worklist import STAYS_URGENT, Worklist, file_on_worklist

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


def _ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_downgraded_study_keeps_both_versions_and_says_its_label_changed(tmp_path):
    """The probe of the issue: Urgent 0.88, then Non-Urgent 0.01 under the same accession. Both versions are kept,
    the list shows the latest with the change, the latest result warns, the first arrival time stays."""
    wl = Worklist(tmp_path / "wl.sqlite")
    wl.add(fake_prediction("Urgent", 0.88), "ACC-1", _ago(30))
    filed = wl.file(fake_prediction("Non-Urgent", 0.01), "ACC-1", _ago(10))
    assert (filed.key, filed.version, filed.label_changed) == ("ACC-1", 2, "Urgent → Non-Urgent")

    versions = wl.versions("ACC-1")
    assert [(v["version"], v["label"], v["score"], v["needs_review"]) for v in versions] == [
        (1, "Urgent", 0.88, False),
        (2, "Non-Urgent", 0.01, False),
    ]
    assert versions[0]["filed"] == _ago(30).isoformat(timespec="microseconds")
    assert wl.result("ACC-1", version=1)["label"] == "Urgent" and wl.result("ACC-1", version=1)["warnings"] == []
    latest = wl.result("ACC-1")
    assert latest == wl.result("ACC-1", version=2) and latest["label"] == "Non-Urgent"
    assert len(latest["warnings"]) == 1 and "(Urgent → Non-Urgent)" in latest["warnings"][0]
    assert latest["warnings"][0].endswith(STAYS_URGENT) and "GET /worklist/ACC-1/versions" in latest["warnings"][0]
    assert filed.warning == latest["warnings"][0]

    item = wl.item("ACC-1", now=NOW)
    assert (item["label"], item["versions"], item["label_changed"], item["ever_urgent"]) == (
        "Non-Urgent",
        2,
        "Urgent → Non-Urgent",
        True,
    )
    assert item["received"] == _ago(30).isoformat(timespec="microseconds") and item["priority"] == "urgent"
    assert wl.result("ACC-1", version=3) is None and wl.versions("NOPE") is None


def test_a_study_that_was_urgent_stays_above_every_routine_one_until_it_is_reported(tmp_path):
    """The rule (worklist.py's docstring, READING_ORDER): any version Urgent or needing review reads as urgent. A
    downgraded study stays above overdue routine studies and counts as urgent, whatever its latest label."""
    wl = Worklist(tmp_path / "wl.sqlite", max_wait_s=3600)
    for i in range(3):
        wl.add(fake_prediction("Non-Urgent", 0.05), f"OLD-ROUTINE-{i}", _ago(120 + i))  # overdue routine
    wl.add(fake_prediction("Urgent", 0.88), "DOWNGRADED", _ago(5))
    wl.add(fake_prediction("Non-Urgent", 0.01), "DOWNGRADED", _ago(1))
    wl.add(fake_prediction("Non-Urgent", 0.1, review=True), "WAS-REVIEW", _ago(4))
    wl.add(fake_prediction("Non-Urgent", 0.1), "WAS-REVIEW", _ago(0))
    listing = wl.page(now=NOW)
    assert [i["key"] for i in listing["items"]][:2] == ["DOWNGRADED", "WAS-REVIEW"]
    assert listing["urgent_total"] == 2
    assert wl.item("WAS-REVIEW")["label_changed"] == "Non-Urgent (needs review) → Non-Urgent"
    wl.add(fake_prediction("Non-Urgent", 0.02), "DOWNGRADED", _ago(0))  # a third filing: still once urgent
    assert wl.page(now=NOW)["items"][0]["key"] == "DOWNGRADED"
    assert wl.item("DOWNGRADED")["label_changed"] == "Urgent → Non-Urgent"  # repeats merged
    wl.set_state("DOWNGRADED", "reported")  # a reader has read it: it leaves the active list
    assert "DOWNGRADED" not in [i["key"] for i in wl.page(now=NOW)["items"]]


def test_the_same_reading_twice_is_a_second_version_without_a_warning_and_an_upgrade_warns(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    wl.add(fake_prediction("Non-Urgent", 0.1), "SAME", _ago(3))
    same = wl.file(fake_prediction("Non-Urgent", 0.12), "SAME", _ago(1))
    assert (same.version, same.label_changed, same.warning) == (2, None, None)
    assert wl.result("SAME")["warnings"] == [] and wl.item("SAME")["ever_urgent"] is False
    assert wl.item("SAME", now=NOW)["priority"] == "routine"
    wl.add(fake_prediction("Non-Urgent", 0.1), "UP", _ago(3))
    up = wl.file(fake_prediction("Urgent", 0.9), "UP", _ago(1))
    assert up.label_changed == "Non-Urgent → Urgent" and STAYS_URGENT not in up.warning


def test_filing_returns_the_warning_to_the_caller(tmp_path):
    """POST /predict, the UI and the DICOM node file through file_on_worklist: the sender's answer says it too."""
    wl = Worklist(tmp_path / "wl.sqlite")
    first, key = file_on_worklist(lambda: wl, fake_prediction("Urgent", 0.88), "ACC-9")
    assert first.warnings == [] and key == "ACC-9"
    second, _ = file_on_worklist(lambda: wl, fake_prediction("Non-Urgent", 0.01), "ACC-9")
    assert second.warnings == wl.result("ACC-9")["warnings"] and "Urgent → Non-Urgent" in second.warnings[0]


PREVIOUS_SCHEMA = """CREATE TABLE worklist (
    key TEXT PRIMARY KEY, label TEXT NOT NULL, score REAL NOT NULL, needs_review INTEGER NOT NULL,
    received TEXT NOT NULL, result TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'new', state_changed TEXT,
    accession TEXT, study_date TEXT, study_time TEXT, view TEXT, modality TEXT)"""


def test_a_file_written_before_versions_were_kept_is_migrated_once(tmp_path):
    """Each stored study becomes its own version 1 (its result, its arrival time), its urgency is kept, and the next
    filing is version 2 with the change named; opening the file again migrates nothing twice."""
    path = tmp_path / "previous.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(PREVIOUS_SCHEMA)
        for key, pred, minutes in (
            ("P-URGENT", fake_prediction("Urgent", 0.9), 20),
            ("P-REVIEW", fake_prediction("Non-Urgent", 0.2, True), 9),
        ):
            db.execute(
                "INSERT INTO worklist (key, label, score, needs_review, received, result) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    pred.label,
                    pred.score,
                    int(pred.needs_review),
                    _ago(minutes).isoformat(),
                    pred.model_dump_json(),
                ),
            )
    db.close()
    wl = Worklist(path)
    Worklist(path)  # opened twice
    assert [v["version"] for v in wl.versions("P-URGENT")] == [1] and wl.result("P-URGENT", 1)["score"] == 0.9
    assert wl.item("P-REVIEW")["ever_urgent"] is True and wl.item("P-URGENT")["versions"] == 1
    wl.add(fake_prediction("Non-Urgent", 0.01), "P-URGENT", _ago(1))
    assert [v["label"] for v in wl.versions("P-URGENT")] == ["Urgent", "Non-Urgent"]
    item = wl.item("P-URGENT", now=NOW)
    assert item["label_changed"] == "Urgent → Non-Urgent" and item["priority"] == "urgent"
    assert item["received"] == _ago(20).isoformat()  # the first arrival, as the previous release wrote it


def test_two_writers_filing_one_study_at_once_lose_no_version(tmp_path):
    """The DICOM node and the service file on one SQLite file: a version number is read and written as one."""
    path = tmp_path / "wl.sqlite"
    writers = [Worklist(path), Worklist(path)]
    errors: list[BaseException] = []

    def file_many(wl: Worklist, label: str) -> None:
        try:
            for _ in range(15):
                wl.add(fake_prediction(label, 0.9 if label == "Urgent" else 0.1), "SHARED")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=file_many, args=(w, lb)) for w, lb in zip(writers, ("Urgent", "Non-Urgent"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [v["version"] for v in Worklist(path).versions("SHARED")] == list(range(1, 31))
    assert Worklist(path).item("SHARED")["versions"] == 30


@pytest.fixture
def open_umask():
    """The most permissive umask a service could run under: whatever is created must still be owner-only."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_worklist_folder_file_and_journal_are_the_service_users_only(tmp_path, open_umask):
    path = tmp_path / "state" / "cxrtriage" / "worklist.sqlite"
    wl = Worklist(path)
    wl.add(fake_prediction("Urgent", 0.9), "ACC-1")
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700  # every folder it made
    assert _mode(tmp_path) == stat.S_IMODE(os.stat(tmp_path).st_mode)  # not made here: left alone
    with sqlite3.connect(path) as db:  # SQLite gives its WAL and shared-memory files the database's mode
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("INSERT INTO versions VALUES ('X', 1, 'now', 'Urgent', 0.9, 0, '{}')")
        for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            assert sidecar.exists() and _mode(sidecar) == 0o600, sidecar
    db.close()


def test_an_existing_world_readable_worklist_keeps_its_mode_and_the_log_says_so(tmp_path, caplog):
    path = tmp_path / "wl.sqlite"
    Worklist(path)
    os.chmod(path, 0o644)  # as the previous release created it
    with caplog.at_level(logging.WARNING, logger="cxrtriage.worklist"):
        Worklist(path)
    assert _mode(path) == 0o644 and "can be read by other users" in caplog.text and str(path) not in caplog.text


def test_a_crops_folder_and_its_thumbnails_are_the_service_users_only(tmp_path, open_umask):
    from cxrtriage.explain.evidence import EvidenceBox, save_crop_thumbnails

    folder = tmp_path / "new" / "crops"
    pixels = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    crops = save_crop_thumbnails(
        pixels, [EvidenceBox(x=8, y=8, w=16, h=16, strength=None, peak_xy=(16, 16), region="right upper zone")], folder
    )
    assert _mode(folder) == 0o700 and _mode(folder.parent) == 0o700
    assert crops and _mode(crops[0].thumb_path) == 0o600


def test_the_service_makes_its_crops_folder_owner_only(tmp_path, open_umask):
    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.app import create_app

    settings = Settings(crops_dir=tmp_path / "crops", ui=False, warmup=False, worklist_path=tmp_path / "wl" / "w.db")
    with TestClient(create_app(settings, engine=object())) as client:
        assert client.get("/worklist").status_code == 200
    assert (
        _mode(tmp_path / "crops") == 0o700
        and _mode(tmp_path / "wl") == 0o700
        and _mode(tmp_path / "wl" / "w.db") == 0o600
    )


def test_a_version_number_out_of_range_is_simply_not_there(tmp_path):
    wl = Worklist(tmp_path / "wl.sqlite")
    wl.add(fake_prediction("Urgent", 0.9), "ACC-1")
    assert wl.result("ACC-1", 0) is None and wl.result("ACC-1", 2**63) is None and wl.result("ACC-1", 1) is not None
