"""The reading worklist: every triaged study, in the order a radiologist should open them, kept in SQLite so that a
restart loses nothing.

Order (:func:`reading_rank`), each group oldest first: an urgent study (Urgent, or needs review) waiting longer than
the maximum wait; every other urgent study; a routine study waiting longer than the maximum wait; every other
routine study. A routine study never rises above an urgent one, however long it waits (a wait cap keeps routine
studies from starving among themselves, not above urgent ones): with 205 routine studies two hours old, a new urgent
study is still first (``tests/test_worklist.py``). The only key stored is an accession-like key the
sender provides (``accession`` on ``POST /predict``; a random one otherwise), never a patient identifier; the stored
result is the Prediction JSON, which holds none.

One store for every adapter that triages: the web service (``GET /worklist``, ``POST /predict``), its UI's Worklist
tab and the DICOM node / Orthanc poller file on, and read, the same SQLite file. It lives beside the base modules,
not in ``serve/``, so that the DICOM node uses it without importing the web layer (FastAPI, Gradio): it needs only
the standard library and :mod:`cxrtriage.schema` (``tests/test_architecture.py`` checks both).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from cxrtriage.schema import Prediction

#: what an accession-like key may look like (no spaces, no path characters, no names)
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PRIORITIES = ("overdue", "urgent", "routine")


#: the order of :meth:`Worklist.items` in words (``GET /worklist`` says it with every list)
READING_ORDER = (
    "Urgent or needs review first (overdue ones at the top), then the rest (overdue ones first); oldest first within "
    "each; a routine study never rises above an urgent one"
)


def is_urgent(item: dict) -> bool:
    """An item read before every routine one: labelled Urgent, or sent for review."""
    return item["label"] == "Urgent" or bool(item["needs_review"])


def reading_rank(item: dict, max_wait_s: float) -> int:
    """The reading order's group of an item of :meth:`Worklist.items`: overdue urgent (0), urgent (1), overdue
    routine (2), routine (3)."""
    return (0 if is_urgent(item) else 2) + (0 if item["waiting_s"] > max_wait_s else 1)


#: what a result says when it could not be filed (it is still returned: losing a result is worse than a manual step)
NOT_FILED_WARNING = "this result could not be put on the worklist (its database is not writable): file it by hand"
SCHEMA = """CREATE TABLE IF NOT EXISTS worklist (
    key TEXT PRIMARY KEY, label TEXT NOT NULL, score REAL NOT NULL, needs_review INTEGER NOT NULL,
    received TEXT NOT NULL, result TEXT NOT NULL)"""

log = logging.getLogger(__name__)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class Worklist:
    """A SQLite file of triaged studies; safe to use from the service's worker threads."""

    def __init__(self, path: Path, max_wait_s: float = 3600.0) -> None:
        self.path, self.max_wait_s = Path(path), float(max_wait_s)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(SCHEMA)

    @contextlib.contextmanager
    def _db(self):
        """One connection per operation, committed and closed (the service's threads share no connection)."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(self, prediction: Prediction, key: str | None = None, received: _dt.datetime | None = None) -> str:
        """Store a result under ``key`` (replacing an earlier result of the same key); returns the key."""
        if key is not None and not re.match(KEY_PATTERN, key):
            raise ValueError(f"accession key must match {KEY_PATTERN}")
        key = key or uuid.uuid4().hex[:16]
        row = (
            key,
            prediction.label,
            float(prediction.score),
            int(prediction.needs_review),
            (received or _now()).isoformat(),
            prediction.model_dump_json(),
        )
        with self._lock, self._db() as db:
            db.execute("INSERT OR REPLACE INTO worklist VALUES (?, ?, ?, ?, ?, ?)", row)
        return key

    def priority(self, label: str, needs_review: bool, waiting_s: float) -> str:
        """What the list shows: ``overdue`` (waiting longer than the maximum), else ``urgent`` or ``routine``."""
        if waiting_s > self.max_wait_s:
            return "overdue"
        return "urgent" if is_urgent({"label": label, "needs_review": needs_review}) else "routine"

    def items(self, now: _dt.datetime | None = None, limit: int = 200) -> list[dict]:
        """The worklist in reading order, with each study's wait and priority."""
        now = now or _now()
        with self._lock, self._db() as db:
            rows = db.execute("SELECT key, label, score, needs_review, received FROM worklist").fetchall()
        out = []
        for key, label, score, review, received in rows:
            waiting = (now - _dt.datetime.fromisoformat(received)).total_seconds()
            out.append(
                {
                    "key": key,
                    "label": label,
                    "score": score,
                    "needs_review": bool(review),
                    "received": received,
                    "waiting_s": round(waiting, 1),
                    "priority": self.priority(label, bool(review), waiting),
                }
            )
        out.sort(key=lambda r: (reading_rank(r, self.max_wait_s), -r["waiting_s"]))
        return out[:limit]

    def result(self, key: str) -> dict | None:
        """The stored Prediction JSON of one study (None when the key is unknown)."""
        with self._lock, self._db() as db:
            row = db.execute("SELECT result FROM worklist WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None


def file_on_worklist(
    open_worklist: Callable[[], Worklist],
    prediction: Prediction,
    key: str | None = None,
    *,
    stored: Prediction | None = None,
) -> tuple[Prediction, str | None]:
    """File a result (``stored``, e.g. with crop URLs instead of server paths, else ``prediction``) under ``key``.

    Returns ``(prediction, key)``; if the database cannot be opened or written, ``(prediction with a warning, None)``:
    the caller (``POST /predict``, the UI's Triage button) still shows the result, saying it is not on the list.
    """
    try:
        return prediction, open_worklist().add(stored if stored is not None else prediction, key=key)
    except (OSError, sqlite3.Error) as exc:
        log.error("worklist write failed: %s", type(exc).__name__)
        return prediction.model_copy(update={"warnings": [*prediction.warnings, NOT_FILED_WARNING]}), None
