"""The reader-feedback store (``cxrtriage.worklist.feedback``): a record refers to a version of a stored result, a
reassessment appends (history kept, the latest is current), concurrent writers lose nothing, what is refused says
why, the agreement rates are right, and the gold export reads back as the evaluation's gold file."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import stat
import threading
from pathlib import Path

import pytest
from fake_prediction import fake_prediction

from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import FINDINGS, GOLD_KEYS, FeedbackStore, agreement, agreement_since, gold_row

T0 = dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    worklist = Worklist(tmp_path / "state" / "worklist.sqlite")
    worklist.add(fake_prediction("Urgent"), "ACC-U")
    worklist.add(fake_prediction("Non-Urgent"), "ACC-N")
    return FeedbackStore(worklist)


def test_a_record_refers_to_the_latest_version_with_its_model_and_label(store: FeedbackStore) -> None:
    record = store.record("ACC-U", agrees=False, reader="dr-smith", finding="pneumothorax", comment="apex", now=T0)
    assert record is not None
    assert {k: record[k] for k in ("key", "version", "model_label", "agrees", "label", "reader", "time")} == {
        "key": "ACC-U",
        "version": 1,
        "model_label": "Urgent",
        "agrees": False,
        "label": "Non-Urgent",  # disagreeing with an Urgent result without a label: the other one
        "reader": "dr-smith",
        "time": "2026-12-07T15:00:00Z",
    }
    assert record["model_sha256"] == fake_prediction("Urgent").model.sha256
    store.worklist.add(fake_prediction("Non-Urgent"), "ACC-U")  # filed again: version 2 is the latest
    second = store.record("ACC-U", agrees=True, reader="dr-smith")
    first_version = store.record("ACC-U", agrees=True, reader="dr-jones", version=1)
    assert (second["version"], second["model_label"], second["label"]) == (2, "Non-Urgent", "Non-Urgent")
    assert (first_version["version"], first_version["label"]) == (1, "Urgent")


def test_a_reassessment_appends_and_the_latest_is_current(store: FeedbackStore) -> None:
    store.record("ACC-U", agrees=True, reader="dr-smith", now=T0)
    store.record("ACC-U", agrees=False, reader="dr-smith", comment="on second look: old scar", now=T0)
    history = store.history("ACC-U")
    assert [(r["agrees"], r["current"]) for r in history] == [(True, False), (False, True)]
    assert history[1]["comment"] == "on second look: old scar"
    current = store.current()
    assert [(r["key"], r["agrees"]) for r in current] == [("ACC-U", False)]  # one per study: the latest
    assert store.history("ACC-N") == [] and store.history("NOT-FILED") is None


def test_since_keeps_the_studies_whose_current_record_is_recent(store: FeedbackStore) -> None:
    store.record("ACC-U", agrees=True, reader="a", now=T0 - dt.timedelta(days=10))
    store.record("ACC-N", agrees=True, reader="a", now=T0 - dt.timedelta(days=10))
    store.record("ACC-N", agrees=False, reader="a", now=T0)  # reassessed this week
    recent = store.current(since=T0 - dt.timedelta(days=1))
    assert [(r["key"], r["agrees"]) for r in recent] == [("ACC-N", False)]


@pytest.mark.parametrize(
    "values, says",
    [
        ({"agrees": True, "label": "Non-Urgent"}, "the reader agrees with the result's label (Urgent) but gives"),
        ({"agrees": False, "label": "Urgent"}, "the reader disagrees with the result's label (Urgent) but gives"),
        ({"agrees": True, "label": "urgent"}, "label must be one of Urgent, Non-Urgent"),
        ({"agrees": True, "finding": "ghost"}, "finding must be one of: no acute finding"),
        ({"agrees": True, "comment": "x" * 501}, "comment is longer than 500 characters"),
        ({"agrees": True, "reader": "  "}, "reader is required"),
        ({"agrees": True, "reader": "a\nb"}, "reader must be one line of printable text"),
    ],
)
def test_what_is_refused_says_why_and_stores_nothing(store: FeedbackStore, values: dict, says: str) -> None:
    with pytest.raises(ValueError, match="^" + says.replace("(", r"\(").replace(")", r"\)")):
        store.record("ACC-U", **{"reader": "dr-smith", **values})
    assert store.history("ACC-U") == []


def test_an_unknown_study_or_version_is_none(store: FeedbackStore) -> None:
    assert store.record("NOT-FILED", agrees=True, reader="a") is None
    assert store.record("ACC-U", agrees=True, reader="a", version=2) is None
    assert store.current() == []


def test_the_table_lives_in_the_worklists_owner_only_file(store: FeedbackStore) -> None:
    store.record("ACC-U", agrees=True, reader="a")
    assert stat.S_IMODE(store.worklist.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.worklist.path.parent.stat().st_mode) == 0o700


def test_concurrent_writers_lose_nothing(store: FeedbackStore) -> None:
    """Eight threads on one store and two processes with stores of their own, all on one file: every record is
    kept, numbered without gaps."""
    path = store.worklist.path

    def write(n: int) -> None:
        for i in range(20):
            store.record("ACC-U" if i % 2 else "ACC-N", agrees=bool(i % 3), reader=f"thread-{n}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    procs = [multiprocessing.get_context("spawn").Process(target=_write_from_process, args=(path, n)) for n in (1, 2)]
    for worker in [*threads, *procs]:
        worker.start()
    for worker in [*threads, *procs]:
        worker.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    records = store.history("ACC-U") + store.history("ACC-N")
    assert len(records) == 8 * 20 + 2 * 20
    assert sorted(r["id"] for r in records) == list(range(1, 201))


def _write_from_process(path: Path, n: int) -> None:
    feedback = FeedbackStore(Worklist(path))
    for i in range(20):
        feedback.record("ACC-U", agrees=True, reader=f"process-{n}", finding=FINDINGS[i % len(FINDINGS)])


def _rec(model_label: str, agrees: bool) -> dict:
    label = model_label if agrees else ("Non-Urgent" if model_label == "Urgent" else "Urgent")
    return {"model_label": model_label, "agrees": agrees, "label": label}


def test_agreement_overall_and_per_label() -> None:
    # 4 Urgent results (3 agreed), 6 Non-Urgent (3 agreed): overall 6 / 10
    records = [_rec("Urgent", a) for a in (True, True, True, False)]
    records += [_rec("Non-Urgent", a) for a in (True, True, True, False, False, False)]
    assert agreement(records) == {"overall": 0.6, "urgent": 0.75, "non_urgent": 0.5, "n": 10}
    assert agreement([]) == {"overall": None, "urgent": None, "non_urgent": None, "n": 0}
    only_urgent = agreement([_rec("Urgent", False)])
    assert only_urgent == {"overall": 0.0, "urgent": 0.0, "non_urgent": None, "n": 1}
    # a gold-file line has no model_label: it is read back from the reader's label and agrees
    gold = [{k: v for k, v in r.items() if k != "model_label"} for r in records]
    assert agreement(gold) == agreement(records)
    assert agreement([{"agrees": True, "label": "maybe"}])["n"] == 0


def test_the_gold_export_reads_back_as_a_gold_file(store: FeedbackStore, tmp_path: Path) -> None:
    from cxrtriage.evaluation.gold import load_gold

    store.record("ACC-U", agrees=False, reader="dr-smith", finding="other", comment="line 1\nline 2", now=T0)
    store.record("ACC-N", agrees=True, reader="dr-jones", now=T0)
    current = store.current()
    out = tmp_path / "gold.jsonl"
    out.write_text("".join(json.dumps(gold_row(r)) + "\n" for r in current), encoding="utf-8")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [tuple(r) for r in rows] == [GOLD_KEYS, GOLD_KEYS]
    assert rows[0] == {
        "path": "worklist:ACC-U",
        "version": 1,  # the result the reader assessed: commission --worklist re-reads that one
        "label": "Non-Urgent",
        "reader": "dr-smith",
        "time": "2026-12-07T15:00:00Z",
        "agrees": False,
        "finding": "other",
        "comment": "line 1\nline 2",
    }
    gold = load_gold(out)  # the reader the evaluation (and commission) uses
    assert {key: row["y"] for key, row in gold.items()} == {"worklist:ACC-U": 0, "worklist:ACC-N": 0}
    assert agreement(rows) == agreement(current) == {"overall": 0.5, "urgent": 0.0, "non_urgent": 1.0, "n": 2}


def test_agreement_since_reads_a_window_and_creates_nothing(store: FeedbackStore, tmp_path: Path) -> None:
    store.record("ACC-U", agrees=False, reader="a", now=T0 - dt.timedelta(days=10))
    store.record("ACC-N", agrees=True, reader="a", now=T0)
    path = store.worklist.path
    assert agreement_since(path) == {"overall": 0.5, "urgent": 0.0, "non_urgent": 1.0, "n": 2}
    assert agreement_since(path, T0 - dt.timedelta(days=7)) == {
        "overall": 1.0,
        "urgent": None,
        "non_urgent": 1.0,
        "n": 1,
    }
    missing = tmp_path / "nowhere" / "worklist.sqlite"
    assert agreement_since(missing) is None and not missing.parent.exists()
