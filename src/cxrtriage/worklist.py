"""The reading worklist: every triaged study, in the order a radiologist should open them, kept in SQLite so that a
restart loses nothing.

Reading order (:func:`reading_rank`, :data:`READING_ORDER`): every urgent study (labelled Urgent, or needs review)
comes before every routine one, however long the routine one has waited. Within the urgent studies, those waiting
longer than the maximum wait come first; the same within the routine ones (so routine studies do not starve among
themselves); oldest first within each of the four groups. With 205 routine studies two hours old, or 1,000 routine
studies a day old, a new urgent study is still first (``tests/test_worklist.py``).

A study's state (:data:`STATES`) is ``new`` when it is filed (and again when a result for the same key is filed:
a new result must be read again), ``opened`` when a reader opens it, ``reported`` when they say so; ``reported``
studies leave the active list (:data:`STATUS_FILTERS`) but stay in the file. Reads (:meth:`Worklist.page`,
:meth:`Worklist.items`, :meth:`Worklist.result`) never change a state; only :meth:`Worklist.set_state` does.

What is stored: the key (the sender's accession-like key, or a random one), the Prediction JSON (no patient
identifier), and what the reader's list shows about the study (:class:`StudyInfo`: accession, study date and time,
view, modality, read from the image's header by :func:`cxrtriage.imaging.study.study_info`). The study date and
time are the hospital's own data, shown in its list and never logged.

One store for every adapter that triages: the web service (``GET /worklist``, ``POST /predict``), its UI's Worklist
tab and the DICOM node / Orthanc poller file on, and read, the same SQLite file. It lives beside the base modules,
not in ``serve/``, so that the DICOM node uses it without importing the web layer (FastAPI, Gradio): it needs only
the standard library and :mod:`cxrtriage.schema` (``tests/test_architecture.py`` checks both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cxrtriage.schema import Prediction

#: what an accession-like key may look like (no spaces, no path characters, no names)
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PRIORITIES = ("overdue", "urgent", "routine")
#: a study's reading state: filed (``new``), opened by a reader, reported
STATES = ("new", "opened", "reported")
#: the lists a reader can ask for: ``active`` (still to be read) is the default everywhere
STATUS_FILTERS: dict[str, tuple[str, ...]] = {"active": ("new", "opened"), "reported": ("reported",), "all": STATES}
#: the largest page :meth:`Worklist.page` returns (``GET /worklist?per_page=``)
MAX_PER_PAGE = 200
#: how many characters of a random key the list shows when the sender gave no accession
SHORT_KEY_CHARS = 8

#: the order of :meth:`Worklist.items` in words (``GET /worklist`` says it with every list)
READING_ORDER = (
    "every urgent study (Urgent or needs review) before every routine one: overdue urgent, urgent, overdue routine, "
    "routine; oldest first within each; a routine study never rises above an urgent one, however long it waits"
)


def is_urgent(item: dict) -> bool:
    """An item read before every routine one: labelled Urgent, or sent for review."""
    return item["label"] == "Urgent" or bool(item["needs_review"])


def reading_rank(item: dict, max_wait_s: float) -> int:
    """The reading order's group of an item of :meth:`Worklist.items`: overdue urgent (0), urgent (1), overdue
    routine (2), routine (3)."""
    return (0 if is_urgent(item) else 2) + (0 if item["waiting_s"] > max_wait_s else 1)


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    """What the reader's list shows about a study besides its result (all optional: a PNG has none of the header's).

    ``accession`` is the sender's (else the list shows the start of the random key); ``study_date`` is
    ``YYYY-MM-DD`` and ``study_time`` ``HH:MM``, from the header; ``view`` is the ViewPosition (PA, AP, ...);
    ``modality`` the DICOM Modality, else the file type (PNG, JPEG). Dates are shown, never logged.
    """

    accession: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    view: str | None = None
    modality: str | None = None


#: what a result says when it could not be filed (it is still returned: losing a result is worse than a manual step)
NOT_FILED_WARNING = "this result could not be put on the worklist (its database is not writable): file it by hand"
SCHEMA = """CREATE TABLE IF NOT EXISTS worklist (
    key TEXT PRIMARY KEY, label TEXT NOT NULL, score REAL NOT NULL, needs_review INTEGER NOT NULL,
    received TEXT NOT NULL, result TEXT NOT NULL)"""
#: columns added after the first schema; a file written before them gets them on open (ALTER TABLE)
ADDED_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'new'",
    "state_changed": "TEXT",  # NULL in a migrated row: its state has not changed since it was received
    **{name: "TEXT" for name in (f.name for f in dataclasses.fields(StudyInfo))},
}
_COLUMNS = ("key", "label", "score", "needs_review", "received", "result", *ADDED_COLUMNS)
_LISTED = ", ".join(c for c in _COLUMNS if c != "result")
#: a key filed again: every column from the new filing, but the earlier arrival time (stamps compare as text)
_REFILED = ", ".join(
    "received = min(worklist.received, excluded.received)" if c == "received" else f"{c} = excluded.{c}"
    for c in _COLUMNS
    if c != "key"
)
_RANDOM_KEY = re.compile(r"[0-9a-f]{16}")

log = logging.getLogger(__name__)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _stamp(moment: _dt.datetime) -> str:
    """A time as stored: UTC, microseconds always written (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds")


def shown_accession(key: str, accession: str | None) -> str:
    """The accession column: the sender's accession, else the first 8 characters of a random key, else the key."""
    if accession:
        return accession
    return key[:SHORT_KEY_CHARS] if _RANDOM_KEY.fullmatch(key) else key


def check_listing(status: str, page: int, per_page: int) -> None:
    """Raise ValueError, with the reason, for a list that cannot be asked for."""
    if status not in STATUS_FILTERS:
        raise ValueError(f"status must be one of {', '.join(STATUS_FILTERS)}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    if page < 1:
        raise ValueError("page must be 1 or more")


class Worklist:
    """A SQLite file of triaged studies; safe to use from the service's worker threads."""

    def __init__(self, path: Path, max_wait_s: float = 3600.0) -> None:
        self.path, self.max_wait_s = Path(path), float(max_wait_s)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._db() as db:
            db.execute(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(worklist)")}
            for name, decl in ADDED_COLUMNS.items():  # a file of an earlier schema keeps working
                if name not in have:
                    db.execute(f"ALTER TABLE worklist ADD COLUMN {name} {decl}")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation, committed and closed (the service's threads share no connection)."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(
        self,
        prediction: Prediction,
        key: str | None = None,
        received: _dt.datetime | None = None,
        study: StudyInfo | None = None,
    ) -> str:
        """Store a result under ``key`` and return the key. A key filed again (a new result for the same
        accession) replaces the earlier result and is ``new`` again: the new result has not been read. It keeps the
        earlier of the two arrival times: a study sent again (a PACS retry, a re-triage) must not restart its wait
        and fall below studies that arrived after it."""
        if key is not None and not re.match(KEY_PATTERN, key):
            raise ValueError(f"accession key must match {KEY_PATTERN}")
        study = study or StudyInfo()
        if study.accession is not None and not re.match(KEY_PATTERN, study.accession):
            raise ValueError(f"accession must match {KEY_PATTERN}")
        key = key or uuid.uuid4().hex[:16]
        when = _stamp(received or _now())
        row = (
            key,
            prediction.label,
            float(prediction.score),
            int(prediction.needs_review),
            when,
            prediction.model_dump_json(),
            "new",
            when,
            *dataclasses.astuple(study),
        )
        sql = (
            f"INSERT INTO worklist ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
            f"ON CONFLICT(key) DO UPDATE SET {_REFILED}"
        )
        with self._lock, self._db() as db:
            db.execute(sql, row)
        return key

    def priority(self, label: str, needs_review: bool, waiting_s: float) -> str:
        """What the list shows: ``overdue`` (waiting longer than the maximum), else ``urgent`` or ``routine``."""
        if waiting_s > self.max_wait_s:
            return "overdue"
        return "urgent" if is_urgent({"label": label, "needs_review": needs_review}) else "routine"

    def _item(self, row: tuple, now: _dt.datetime) -> dict[str, Any]:
        values = dict(zip((c for c in _COLUMNS if c != "result"), row))
        waiting = (now - _dt.datetime.fromisoformat(values["received"])).total_seconds()
        review = bool(values["needs_review"])
        return {
            "key": values["key"],
            "accession": shown_accession(values["key"], values["accession"]),
            "label": values["label"],
            "score": values["score"],
            "needs_review": review,
            "received": values["received"],
            "waiting_s": round(waiting, 1),
            "priority": self.priority(values["label"], review, waiting),
            "state": values["state"],
            "state_changed": values["state_changed"] or values["received"],
            "study_date": values["study_date"],
            "study_time": values["study_time"],
            "view": values["view"],
            "modality": values["modality"],
        }

    def items(self, now: _dt.datetime | None = None, status: str = "all") -> list[dict[str, Any]]:
        """Every study of a list (``all``, ``active``, ``reported``) in reading order, with its wait, priority and
        state; nothing is cut off (:meth:`page` pages it)."""
        states = STATUS_FILTERS[status]
        now = now or _now()
        sql = f"SELECT {_LISTED} FROM worklist WHERE state IN ({', '.join('?' * len(states))})"
        with self._lock, self._db() as db:
            rows = db.execute(sql, states).fetchall()
        out = [self._item(row, now) for row in rows]
        out.sort(key=lambda r: (reading_rank(r, self.max_wait_s), -r["waiting_s"], r["key"]))
        return out

    def page(
        self, status: str = "active", page: int = 1, per_page: int = 50, now: _dt.datetime | None = None
    ) -> dict[str, Any]:
        """One page of a list in reading order, with the list's totals (``total``, ``urgent_total``, ``pages``);
        a page past the end has no items. Raises ValueError for an unknown status or a page size out of range."""
        check_listing(status, page, per_page)
        listed = self.items(now, status)
        start = (page - 1) * per_page
        return {
            "status": status,
            "total": len(listed),
            "urgent_total": sum(map(is_urgent, listed)),
            "page": page,
            "per_page": per_page,
            "pages": math.ceil(len(listed) / per_page),
            "items": listed[start : start + per_page],
        }

    def item(self, key: str, now: _dt.datetime | None = None) -> dict[str, Any] | None:
        """One study's row as :meth:`items` lists it (None when the key is unknown)."""
        with self._lock, self._db() as db:
            row = db.execute(f"SELECT {_LISTED} FROM worklist WHERE key = ?", (key,)).fetchone()
        return self._item(row, now or _now()) if row else None

    def set_state(
        self, key: str, state: str, *, only_from: str | None = None, now: _dt.datetime | None = None
    ) -> dict[str, Any] | None:
        """Set a study's state (and the time it changed) and return its row; None when the key is unknown. With
        ``only_from``, only a study in that state changes (opening a study marks it ``opened`` only if ``new``)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        sql = "UPDATE worklist SET state = ?, state_changed = ? WHERE key = ?"
        args = [state, _stamp(now or _now()), key]
        if only_from is not None:
            sql, args = sql + " AND state = ?", [*args, only_from]
        with self._lock, self._db() as db:
            db.execute(sql, args)
        return self.item(key, now)

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
    study: StudyInfo | None = None,
) -> tuple[Prediction, str | None]:
    """File a result (``stored``, e.g. with crop URLs instead of server paths, else ``prediction``) under ``key``,
    with what the list shows about the study (``study``; a key filed again is ``new`` again).

    Returns ``(prediction, key)``; if the database cannot be opened or written, ``(prediction with a warning, None)``:
    the caller (``POST /predict``, the UI's Triage button) still shows the result, saying it is not on the list.
    """
    try:
        filed = open_worklist().add(stored if stored is not None else prediction, key=key, study=study)
        return prediction, filed
    except (OSError, sqlite3.Error) as exc:
        log.error("worklist write failed: %s", type(exc).__name__)
        return prediction.model_copy(update={"warnings": [*prediction.warnings, NOT_FILED_WARNING]}), None
