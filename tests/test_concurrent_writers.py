"""Several processes write one state folder at once, as the workers of ``cxrtriage serve --workers N`` and the DICOM
node do: each files results on the worklist (half of them on keys the others file too, so versions are contended),
opens them, records a reader's assessment, appends an audit record and a monitor record (the monitor store small
enough to rotate), and reads back in between (the list, the agreement a scrape computes, the monitor records).

What must hold afterwards: no write lost (every filing is a version row, every assessment a feedback row, every
append an audit record), each study's versions numbered 1..n with no gap or repeat, no operation failed (no
'database is locked'), the audit chain verifies, and the monitor records are whole lines. The stores' own tests
check each alone (``test_worklist_versions.py``, ``security/test_audit.py``, ``monitoring/test_monitor_store.py``);
this one checks them together, under the readers a busy service adds."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from fake_prediction import fake_prediction

from cxrtriage.monitoring.record import refusal_record
from cxrtriage.monitoring.store import MonitorStore
from cxrtriage.security.audit import AuditEvent, AuditLog, verify_report
from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import FeedbackStore, agreement_since

WRITERS, EACH, BURST = 4, 30, 60
SHARED_KEYS = 3


def _monitor(state: Path) -> MonitorStore:
    return MonitorStore(state / "monitor.jsonl", max_bytes=32 * 1024, reference_n=20)  # rotates a few times


def _writer(state: Path, w: int, barrier: Any, done: Any) -> None:
    """One process as a service worker: opens the stores itself, then files, reads and appends in a loop; reports
    what it filed and every exception it met."""
    filed, errors = [], []
    barrier.wait()  # all start together, on a folder none has opened yet
    try:
        worklist = Worklist(state / "worklist.sqlite")
        feedback, audit, monitor = FeedbackStore(worklist), AuditLog(state / "audit.jsonl"), _monitor(state)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        done.put((w, filed, [f"open: {type(exc).__name__}: {exc}"]))
        return
    for i in range(EACH):
        key = f"SHARED-{i % SHARED_KEYS}" if i % 2 else f"W{w}-{i:03d}"
        try:
            version = worklist.file(fake_prediction("Urgent" if (i + w) % 3 else "Non-Urgent"), key).version
            filed.append((key, version))
            audit.append(AuditEvent("triage", 200, principal=f"worker-{w}", study=key))
            if not monitor.append_safely(refusal_record("api", f"w{w}", "0" * 64)):
                errors.append("monitor append failed")
            worklist.set_state(key, "opened", only_from="new")
            feedback.record(key, agrees=bool(i % 2), reader=f"worker-{w}")
            worklist.items(status="active")
            agreement_since(state / "worklist.sqlite")  # what each /metrics scrape does
            monitor.read()
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            errors.append(f"{type(exc).__name__}: {exc}")
    barrier.wait()  # then a burst of appends only, all at once: where two unlocked writers would collide
    for i in range(BURST):
        try:
            audit.append(AuditEvent("worklist.list", 200, principal=f"worker-{w}", request_id=f"{i:08x}"))
            monitor.append(refusal_record("api", f"w{w}", "0" * 64))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            errors.append(f"burst: {type(exc).__name__}: {exc}")
    done.put((w, filed, errors))


def test_several_processes_writing_one_state_folder_lose_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ctx = multiprocessing.get_context("spawn")
    barrier, done = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(state, w, barrier, done)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    results = [done.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)

    assert [e for _, _, errors in results for e in errors] == []
    filed = [kv for _, f, _ in results for kv in f]
    assert len(filed) == WRITERS * EACH and len(set(filed)) == len(filed)  # no version handed out twice

    db = sqlite3.connect(state / "worklist.sqlite")
    versions = defaultdict(list)
    for key, version in db.execute("SELECT key, version FROM versions"):
        versions[key].append(version)
    assert sum(map(len, versions.values())) == len(filed)
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in versions.values()), versions
    shared = {k: len(v) for k, v in versions.items() if k.startswith("SHARED-")}
    assert sum(shared.values()) == WRITERS * EACH // 2
    assert db.execute("SELECT count(*) FROM feedback").fetchone() == (len(filed),)
    assert db.execute("SELECT count(*) FROM worklist").fetchone() == (len(versions),)
    db.close()

    report = verify_report(state / "audit.jsonl")
    assert report.problems == [] and report.records == report.last_seq == len(filed) + WRITERS * BURST

    monitor = _monitor(state)
    kept = monitor.read()
    assert kept.skipped == 0 and 0 < len(kept.records) <= len(filed) + WRITERS * BURST
    assert monitor.rotated(1).is_file()  # it did rotate while the others appended
    assert len(monitor.first_use().records) == 20
