"""``cxrtriage feedback export``: each assessed study's current assessment as a gold file (owner-only) that the
evaluation's gold reader (what ``commission --gold`` reads) takes as it is; ``--since`` keeps the recent ones; a
missing worklist or a bad date is a clear error, and nothing is created."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from fake_prediction import fake_prediction

from cxrtriage.cli.main import main
from cxrtriage.evaluation.gold import load_gold
from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import GOLD_KEYS, FeedbackStore

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def worklist_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "worklist.sqlite"
    worklist = Worklist(path)
    for key, label in (("ACC-1", "Urgent"), ("ACC-2", "Non-Urgent"), ("ACC-3", "Urgent")):
        worklist.add(fake_prediction(label), key)
    store = FeedbackStore(worklist)
    store.record("ACC-1", agrees=True, reader="dr-a", now=NOW - dt.timedelta(days=30))
    store.record("ACC-1", agrees=False, reader="dr-b", finding="other", comment="ü: a second look", now=NOW)
    store.record("ACC-2", agrees=True, reader="dr-a", now=NOW - dt.timedelta(days=30))
    return path


def test_the_export_is_a_gold_file_of_the_current_assessments(worklist_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "site_gold.jsonl"
    assert main(["feedback", "export", "--worklist", str(worklist_path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["path"], r["label"], r["reader"], r["agrees"]) for r in rows] == [
        ("worklist:ACC-1", "Non-Urgent", "dr-b", False),  # reassessed: its latest assessment only
        ("worklist:ACC-2", "Non-Urgent", "dr-a", True),
    ]
    assert all(tuple(r) == GOLD_KEYS for r in rows) and rows[0]["comment"] == "ü: a second look"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert {k: v["y"] for k, v in load_gold(out).items()} == {"worklist:ACC-1": 0, "worklist:ACC-2": 0}
    said = capsys.readouterr().err
    assert (
        "2 assessed studies exported" in said and "agreed with 50% of the results (Urgent 0%, Non-Urgent 100%)" in said
    )


def test_since_keeps_the_recent_assessments(worklist_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CXRTRIAGE_WORKLIST_PATH", str(worklist_path))  # the service's worklist, as configured
    out = tmp_path / "recent.jsonl"
    since = (NOW - dt.timedelta(days=1)).date().isoformat()
    assert main(["feedback", "export", "--since", since, "--out", str(out)]) == 0
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == ["worklist:ACC-1"]


def test_a_missing_worklist_or_a_bad_date_is_a_clear_error(tmp_path: Path, worklist_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere" / "worklist.sqlite"
    out = tmp_path / "x.jsonl"
    assert main(["feedback", "export", "--worklist", str(missing), "--out", str(out)]) == 1
    assert f"no worklist at {missing}" in capsys.readouterr().err
    assert not missing.exists() and not out.exists()
    assert (
        main(["feedback", "export", "--worklist", str(worklist_path), "--since", "last week", "--out", str(out)]) == 2
    )
    assert "is not a date" in capsys.readouterr().err and not out.exists()
