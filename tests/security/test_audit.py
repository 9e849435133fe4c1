"""The audit trail (cxrtriage.security.audit): records chain by hash, ``verify`` and ``cxrtriage audit verify`` name
an edited, removed, reordered or cut-off record, the export is CSV for a time range, appends from two processes
keep the chain whole, the file is owner-only, and free text (names, IDs, credentials) has nowhere to go."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cxrtriage
from cxrtriage.cli.main import main
from cxrtriage.security.audit import (
    GENESIS,
    AuditError,
    AuditEvent,
    AuditLog,
    record_hash,
    verify,
    verify_report,
    without_secrets,
)


def _trail(path: Path, n: int = 5) -> list[str]:
    log = AuditLog(path)
    for i in range(n):
        log.append(AuditEvent("result.read", 200, principal="reader-1", role="reader", study=f"ACC-{i}"))
    return path.read_text().splitlines(keepends=True)


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


# ----------------------------------------------------------------------------- the chain


def test_records_are_numbered_and_each_carries_the_hash_of_the_one_before(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.jsonl"
    lines = _trail(path, 3)
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == GENESIS
    assert [r["prev"] for r in records[1:]] == [r["hash"] for r in records[:-1]]
    assert all(r["hash"] == record_hash(r) for r in records)
    assert records[1] | {"time": "-", "prev": "-", "hash": "-"} == {
        "seq": 2,
        "time": "-",
        "principal": "reader-1",
        "role": "reader",
        "via": None,
        "action": "result.read",
        "study": "ACC-1",
        "outcome": 200,
        "request_id": None,
        "client": None,
        "reason": None,
        "target": None,
        "prev": "-",
        "hash": "-",
    }
    assert records[0]["time"].endswith("+00:00")
    assert verify(path) == []


def test_the_file_is_owner_only_and_its_new_folder_too(tmp_path: Path) -> None:
    path = tmp_path / "new" / "audit.jsonl"
    _trail(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chmod(path, 0o644)  # widened by a copy or a restore: the next append makes it owner-only again
    AuditLog(path).append(AuditEvent("worklist.list", 200))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symlink_or_a_folder_in_its_place_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    with pytest.raises(AuditError, match="cannot open the audit trail"):
        AuditLog(link).append(AuditEvent("triage", 200))
    with pytest.raises(AuditError):
        AuditLog(tmp_path).append(AuditEvent("triage", 200))


# ----------------------------------------------------------------------------- verify names the broken record


@pytest.mark.parametrize(
    "damage, says",
    [
        ("edit", "record seq 3 (line 3): edited: its content no longer matches its hash"),
        ("delete", "record seq 4 (line 3): removed: the record(s) before it (seq 3) are missing or moved"),
        ("reorder", "record seq 4 (line 3): removed"),
        ("rehash", "record seq 4 (line 4): removed: it does not chain from the record before it (seq 3)"),
        ("truncate", "line 5: truncated: the last line is cut off"),
        ("drop_head", "record seq 2 (line 1): removed: the record(s) before it (seq 1) are missing or moved"),
    ],
)
def test_verify_names_the_first_broken_record(tmp_path: Path, damage: str, says: str) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _trail(path)
    if damage == "edit":  # the study changed, the hash left alone
        lines[2] = lines[2].replace("ACC-2", "ACC-9")
    elif damage == "delete":
        del lines[2]
    elif damage == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
    elif damage == "rehash":  # edited and its own hash recomputed: the next record's prev gives it away
        record = json.loads(lines[2]) | {"outcome": 403}
        record["hash"] = record_hash(record)
        lines[2] = json.dumps(record) + "\n"
    elif damage == "truncate":
        lines[4] = lines[4][:40]
    elif damage == "drop_head":
        del lines[0]
    _rewrite(path, lines)
    problems = verify(path)
    assert problems, damage
    assert str(problems[0]).startswith(says), [str(p) for p in problems]
    if damage == "reorder":
        assert str(problems[1]).startswith("record seq 3 (line 4): reordered")
        assert len(problems) == 2  # the records after the swap chain again


def test_an_append_after_a_cut_off_line_goes_on_from_the_last_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _trail(path, 3)
    _rewrite(path, lines[:2] + [lines[2][:25]])  # a crash in the middle of writing record 3
    record = AuditLog(path).append(AuditEvent("worklist.list", 200))
    assert record["seq"] == 3 and record["prev"] == json.loads(lines[1])["hash"]
    report = verify_report(path)
    assert [str(p) for p in report.problems] == [
        "line 3: unreadable: not an audit record (edited, or cut off by an interrupted write)"
    ]
    assert report.records == 3 and report.last_seq == 3


# ----------------------------------------------------------------------------- the CLI


def test_audit_verify_says_intact_or_names_the_edited_and_the_removed_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _trail(path)
    assert main(["audit", "verify", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("5 records, chain intact (last record seq 5, hash ") and json.loads(lines[4])["hash"] in out

    _rewrite(path, lines[:1] + [lines[1].replace('"outcome":200', '"outcome":404')] + lines[2:])
    assert main(["audit", "verify", "--path", str(path)]) == 1
    captured = capsys.readouterr()
    assert "broken at record seq 2 (line 2): edited" in captured.err
    assert "record seq 2 (line 2): edited" in captured.out

    _rewrite(path, lines[:3] + lines[4:])
    assert main(["audit", "verify", "--path", str(path)]) == 1
    assert "record seq 5 (line 4): removed: the record(s) before it (seq 4)" in capsys.readouterr().err


def test_audit_verify_reads_the_configured_trail_and_says_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXRTRIAGE_WORKLIST_PATH", str(tmp_path / "state" / "worklist.sqlite"))
    monkeypatch.delenv("CXRTRIAGE_AUDIT_PATH", raising=False)
    assert main(["audit", "verify"]) == 1
    assert f"no audit trail at {tmp_path / 'state' / 'audit.jsonl'}" in capsys.readouterr().err
    _trail(tmp_path / "state" / "audit.jsonl", 2)
    assert main(["audit", "verify"]) == 0
    monkeypatch.setenv("CXRTRIAGE_AUDIT_PATH", str(tmp_path / "other.jsonl"))
    assert main(["audit", "verify"]) == 1
    assert "no audit trail at " + str(tmp_path / "other.jsonl") in capsys.readouterr().err


@pytest.fixture()
def dated_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four records on 30 Nov, 1 Dec 08:00, 1 Dec 23:59 and 2 Dec (UTC), one with a formula-like principal."""
    times: Iterator[str] = iter(
        [
            "2026-11-30T12:00:00.000000+00:00",
            "2026-12-01T08:00:00.000000+00:00",
            "2026-12-01T23:59:00.000000+00:00",
            "2026-12-02T00:00:00.000000+00:00",
        ]
    )
    monkeypatch.setattr("cxrtriage.security.audit._now", lambda: next(times))
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append(AuditEvent("triage", 200, principal="gateway", role="submitter", study="ACC-1"))
    log.append(AuditEvent("worklist.list", 200, principal="=HYPERLINK(1)", role="reader"))
    log.append(AuditEvent("result.read", 200, principal="reader-1", role="reader", study="ACC-1"))
    log.append(AuditEvent("auth.failed", 401, reason="unknown API key", target="worklist.list", client="10.0.0.9"))
    return path


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_audit_export_writes_csv_of_the_time_range(dated_trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "export", "--path", str(dated_trail), "--since", "2026-12-01"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == (
        "seq,time,principal,role,via,action,study,outcome,request_id,client,reason,target,prev,hash"
    )
    rows = _csv(captured.out)
    assert [r["seq"] for r in rows] == ["2", "3", "4"] and "3 records exported" in captured.err
    assert rows[0]["principal"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, never runs it
    assert rows[2] | {"time": "", "prev": "", "hash": ""} == {
        "seq": "4",
        "time": "",
        "principal": "anonymous",
        "role": "none",
        "via": "",
        "action": "auth.failed",
        "study": "",
        "outcome": "401",
        "request_id": "",
        "client": "10.0.0.9",
        "reason": "unknown API key",
        "target": "worklist.list",
        "prev": "",
        "hash": "",
    }

    # a date alone in --until takes in that whole day; a time is exact (and exclusive)
    assert main(["audit", "export", "--path", str(dated_trail), "--since", "2026-12-01", "--until", "2026-12-01"]) == 0
    assert [r["seq"] for r in _csv(capsys.readouterr().out)] == ["2", "3"]
    args = ["--since", "2026-12-01T08:00", "--until", "2026-12-01T23:59+00:00"]
    assert main(["audit", "export", "--path", str(dated_trail), *args]) == 0
    assert [r["seq"] for r in _csv(capsys.readouterr().out)] == ["2"]
    # a time in another zone is converted: 09:00 in Paris is 08:00 UTC
    assert main(["audit", "export", "--path", str(dated_trail), "--since", "2026-12-01T09:00:01+01:00"]) == 0
    assert [r["seq"] for r in _csv(capsys.readouterr().out)] == ["3", "4"]


def test_audit_export_to_a_file_is_owner_only(dated_trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    assert main(["audit", "export", "--path", str(dated_trail), "--out", str(out)]) == 0
    assert len(_csv(out.read_text())) == 4
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "args, says",
    [
        (["--since", "1st December"], "'1st December' is not a date (2026-12-01)"),
        (["--until", "2026-13-01"], "'2026-13-01' is not a date"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], "--since 2026-12-02 is not before --until 2026-12-01"),
    ],
)
def test_audit_export_refuses_a_bad_date_with_exit_2(
    dated_trail: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    assert main(["audit", "export", "--path", str(dated_trail), *args]) == 2
    assert says in capsys.readouterr().err


def test_audit_export_refuses_a_broken_trail_unless_forced(
    dated_trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = dated_trail.read_text().splitlines(keepends=True)
    _rewrite(dated_trail, lines[:1] + lines[2:])
    assert main(["audit", "export", "--path", str(dated_trail)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "broken at record seq 3 (line 2): removed" in captured.err
    assert "--force" in captured.err
    assert main(["audit", "export", "--path", str(dated_trail), "--force"]) == 0
    captured = capsys.readouterr()
    assert len(_csv(captured.out)) == 3 and "warning: exporting a broken audit trail" in captured.err


# ----------------------------------------------------------------------------- concurrency

_APPENDER = """
import sys, threading
from cxrtriage.security.audit import AuditEvent, AuditLog
log = AuditLog(sys.argv[1])
def run(n):
    for i in range(n):
        log.append(AuditEvent("worklist.list", 200, principal=sys.argv[2], request_id=f"{i:08x}"))
threads = [threading.Thread(target=run, args=(60,)) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_two_processes_appending_at_once_keep_the_chain_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    env = os.environ | {"PYTHONPATH": str(Path(cxrtriage.__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), name], env=env)
        for name in ("worker-a", "worker-b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    report = verify_report(path)
    assert report.problems == [] and report.records == 240 and report.last_seq == 240
    principals = [json.loads(line)["principal"] for line in path.read_text().splitlines()]
    assert principals.count("worker-a") == principals.count("worker-b") == 120


# ----------------------------------------------------------------------------- nothing free-form reaches the file


def test_free_text_has_no_field_to_go_into(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    record = AuditLog(path).append(
        AuditEvent(
            "result.read",
            200,
            principal="reader\nforged line",
            study="Doe, John (MRN 12345)",  # not a key: dropped
            request_id="<script>",
            client="10.0.0.1; DROP TABLE",
            reason="x" * 500,
        )
    )
    assert record["principal"] == "reader?forged line" and record["study"] is None
    assert record["request_id"] is None and record["client"] is None and len(record["reason"]) == 120
    text = path.read_text()
    assert "Doe" not in text and "12345" not in text and text.count("\n") == 1
    with pytest.raises(ValueError, match="is not a dotted lower-case word"):
        AuditEvent("Patient John Doe", 200)
    with pytest.raises(ValueError, match="neither an HTTP status"):
        AuditEvent("triage", "John Doe")


def test_a_reason_holding_the_presented_credential_is_withheld() -> None:
    secret = "cxr_live_0123456789abcdef"
    assert without_secrets(f"unknown key {secret}", [secret]) == "(withheld: it contained the presented credential)"
    assert without_secrets("unknown key", [secret]) == "unknown key"
    assert without_secrets("key", ["key"]) == "key"  # too short to be a credential
