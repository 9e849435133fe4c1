"""The monitor store: records from several processes never interleave, the file and its folder are owner-only, the
size cap rotates and deletes the oldest while the first results of use stay as the reference, a failed write is
logged and never raises, and a record holds only the interface's keys (no path, no identifier)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import stat
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.monitoring.record import (
    RECORD_KEYS,
    highest_similarity,
    image_stats,
    monitor_record,
    parse_record,
    refusal_record,
    site_name,
)
from cxrtriage.monitoring.store import KEEP, MonitorStore
from cxrtriage.schema import ModelInfo, Prediction, Provenance

MODEL = ModelInfo(name="m", version="1", sha256="b" * 64)


def prediction(score: float = 0.9) -> Prediction:
    return Prediction(
        label="Urgent" if score >= 0.3 else "Non-Urgent",
        score=score,
        explanation="x",
        provenance=[
            Provenance(source="prior_report", snippet="quoted", relation="supports"),
            Provenance(source="training_case:nih/0001.png", snippet="a", relation="similar_case", similarity=0.81),
            Provenance(source="training_case:nih/0002.png", snippet="b", relation="similar_case", similarity=0.87),
        ],
        threshold=0.3,
        review_band=(0.25, 0.35),
        needs_review=False,
        model=MODEL,
    )


def test_a_record_has_the_interface_keys_and_nothing_identifying() -> None:
    stats = image_stats(np.full((100, 80), 0.25, np.float32), 800, 1000)
    rec = monitor_record(prediction(), stats, "api", "Hospital A", time=dt.datetime(2026, 12, 7, 15, 0, 1, 5))
    assert tuple(rec) == RECORD_KEYS
    assert rec["time"] == "2026-12-07T15:00:01Z" and rec["similarity"] == 0.87 and rec["site"] == "Hospital A"
    assert rec["image"] == {"mean": 0.25, "std": 0.0, "width": 800, "height": 1000}
    assert "nih/0002" not in json.dumps(rec)  # the similar case's name is not kept
    assert parse_record(json.loads(json.dumps(rec))) == rec
    refused = refusal_record("node", None, "b" * 64)
    assert tuple(refused) == RECORD_KEYS and refused["needs_review"] and refused["score"] is None
    with pytest.raises(ValueError, match="source"):
        refusal_record("email", None, "b" * 64)


def test_image_stats_describe_the_exposed_field() -> None:
    pixels = np.zeros((200, 200), np.float32)
    pixels[50:150, 50:150] = 0.6  # a film on a black canvas
    whole, field = image_stats(pixels, 400, 400), image_stats(pixels, 400, 400, exposed_field=(100, 100, 200, 200))
    assert whole["mean"] == pytest.approx(0.15) and field["mean"] == pytest.approx(0.6)


def test_similarity_and_site_when_absent() -> None:
    bare = prediction().model_copy(update={"provenance": []})
    assert highest_similarity(bare) is None
    assert site_name(object()) is None
    assert site_name(type("E", (), {"site": type("S", (), {"name": "Ward 3"})()})()) == "Ward 3"


def test_parse_record_refuses_other_shapes() -> None:
    good = monitor_record(prediction(), None, "ui", None)
    assert parse_record({**good, "score": 1.5}) is None
    assert parse_record({**good, "outcome": "maybe"}) is None
    assert parse_record({**good, "time": "yesterday"}) is None
    assert parse_record("text") is None


def test_store_is_owner_only_and_reads_back_in_order(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "state" / "monitor.jsonl")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i in (2, 0, 1):
        store.append(monitor_record(prediction(0.1 * (i + 1)), None, "api", None, time=t0 + dt.timedelta(hours=i)))
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    got = store.read()
    assert [r["score"] for r in got.records] == [0.1, 0.2, 0.3] and got.skipped == 0
    with store.path.open("a") as fh:
        fh.write('{"time": "2026-01-01T0')  # a line cut off by a crash
    assert store.read().skipped == 1
    assert [r["score"] for r in store.read(since=t0 + dt.timedelta(hours=1)).records] == [0.2, 0.3]


def _append_many(path: str, worker: int) -> None:
    store = MonitorStore(path)
    for i in range(200):
        store.append(monitor_record(prediction(round(worker / 10 + i / 10000, 4)), None, "api", f"w{worker}"))


def test_several_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    procs = [multiprocessing.get_context("spawn").Process(target=_append_many, args=(str(path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = MonitorStore(path).read()
    assert got.skipped == 0 and len(got.records) == 600
    assert {r["site"] for r in got.records} == {"w0", "w1", "w2"}


def test_rotation_caps_the_size_and_keeps_the_first_results(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.jsonl", max_bytes=4 * 4096, reference_n=20)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i in range(400):  # ~ 250 bytes each: far over 16 KiB
        store.append(monitor_record(prediction(), None, "node", None, time=t0 + dt.timedelta(minutes=i)))
    files = [store.path, *(store.rotated(n) for n in range(1, KEEP + 1))]
    assert all(f.is_file() for f in files) and not store.rotated(KEEP + 1).exists()
    assert sum(f.stat().st_size for f in files) <= 4 * 4096
    kept = store.read().records
    assert 0 < len(kept) < 400 and kept[-1]["time"] == "2026-01-01T06:39:00Z"  # the newest kept, the oldest gone
    first = store.first_use().records
    assert len(first) == 20 and first[0]["time"] == "2026-01-01T00:00:00Z"


def test_a_failed_write_is_logged_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = MonitorStore(blocker / "monitor.jsonl")  # its folder would be inside a file
    with caplog.at_level(logging.WARNING, logger="cxrtriage.monitoring"):
        assert store.append_safely(monitor_record(prediction(), None, "api", None)) is False
    assert "monitor record not written" in caplog.text
