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

A study sent again (a PACS retry, a re-triage, a second ``POST /predict`` with the same accession) keeps its history:
every filing is a numbered version in the ``versions`` table (:meth:`Worklist.versions`, :meth:`Worklist.result`
with ``version=``), and the list shows the latest. It keeps the queue place of its first arrival. When the reading
changed between versions (the label, or the review flag), the row says how (``label_changed``, e.g. ``Urgent →
Non-Urgent``) and the latest stored result carries a warning that says so. The safety rule, tested in
``tests/test_worklist_versions.py``: **a study any of whose versions was Urgent or needed review reads as urgent**
(``ever_urgent``) for as long as it is on the list, whatever its latest label: a later Non-Urgent result never
silently moves a study that was once urgent below the routine ones; a reader who has read it reports it, and it
leaves the active list.

What is stored: the key (the sender's accession-like key, or a random one), the Prediction JSON (no patient
identifier), and what the reader's list shows about the study (:class:`StudyInfo`: accession, study date and time,
view, modality, read from the image's header by :func:`cxrtriage.imaging.study.study_info`). The study date and
time are the hospital's own data, shown in its list and never logged. The file, and any folder made for it, are
created readable by the service user only (0600 / 0700 whatever the umask; SQLite gives its journal the file's mode);
an existing file keeps its mode, with a warning in the log when other users can read it.

One store for every adapter that triages: the web service (``GET /worklist``, ``POST /predict``), its UI's Worklist
tab and the DICOM node / Orthanc poller file on, and read, the same SQLite file. It lives beside the base modules,
not in ``serve/``, so that the DICOM node uses it without importing the web layer (FastAPI, Gradio): it needs only
the standard library, :mod:`cxrtriage.schema` and :mod:`cxrtriage.files` (``tests/test_architecture.py`` checks
both).
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

from cxrtriage.files import private_dir, private_file, readable_by_others
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
#: the highest version number that can be asked for (``GET /worklist/{key}?version=``; above it: 422)
MAX_VERSION = 1_000_000

#: the order of :meth:`Worklist.items` in words (``GET /worklist`` says it with every list)
READING_ORDER = (
    "every urgent study (Urgent or needs review) before every routine one: overdue urgent, urgent, overdue routine, "
    "routine; oldest first within each; a routine study never rises above an urgent one, however long it waits; "
    "a study sent again stays urgent if any of its versions was Urgent or needed review"
)


def is_urgent(item: dict) -> bool:
    """An item read before every routine one: labelled Urgent, or sent for review, now or in any earlier version of
    the study (``ever_urgent``: a downgrade on a second filing never hides a study that was urgent)."""
    return item["label"] == "Urgent" or bool(item["needs_review"]) or bool(item.get("ever_urgent"))


def reading(label: str, needs_review: bool) -> str:
    """One version's reading in words, as :func:`label_history` strings them: ``Urgent``, ``Non-Urgent (needs
    review)``."""
    return f"{label} (needs review)" if needs_review else label


def label_history(readings: list[str]) -> str | None:
    """``Urgent → Non-Urgent``: the readings of a study's versions in filing order, repeats merged; None when every
    version read the same."""
    steps = [r for i, r in enumerate(readings) if i == 0 or r != readings[i - 1]]
    return " → ".join(steps) if len(steps) > 1 else None


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


@dataclasses.dataclass(frozen=True)
class Filed:
    """What :meth:`Worklist.file` did: the key, the version number (1 for a first filing) and, when the reading
    changed between versions, the history (:func:`label_history`) and the warning the stored result carries."""

    key: str
    version: int
    label_changed: str | None = None
    warning: str | None = None


#: what a result says when it could not be filed (it is still returned: losing a result is worse than a manual step)
NOT_FILED_WARNING = "this result could not be put on the worklist (its database is not writable): file it by hand"
#: what the latest result of a study says when its reading changed between versions (``{history}``, ``{key}``)
LABEL_CHANGED_WARNING = (
    "this study was filed before with another reading ({history}): compare its versions (GET /worklist/{key}/versions)"
)
#: added to :data:`LABEL_CHANGED_WARNING` when an earlier version was urgent and the latest is not
STAYS_URGENT = "; it stays with the urgent studies on the worklist, because an earlier version was urgent"
SCHEMA = """CREATE TABLE IF NOT EXISTS worklist (
    key TEXT PRIMARY KEY, label TEXT NOT NULL, score REAL NOT NULL, needs_review INTEGER NOT NULL,
    received TEXT NOT NULL, result TEXT NOT NULL)"""
#: every filing of every study, the latest included (the ``worklist`` row is the latest version's)
VERSIONS_SCHEMA = """CREATE TABLE IF NOT EXISTS versions (
    key TEXT NOT NULL, version INTEGER NOT NULL, filed TEXT NOT NULL, label TEXT NOT NULL, score REAL NOT NULL,
    needs_review INTEGER NOT NULL, result TEXT NOT NULL, PRIMARY KEY (key, version))"""
#: a study filed before versions were kept becomes its own version 1 (on every open: idempotent)
_MIGRATE_VERSIONS = """INSERT INTO versions (key, version, filed, label, score, needs_review, result)
    SELECT key, 1, received, label, score, needs_review, result FROM worklist
    WHERE NOT EXISTS (SELECT 1 FROM versions WHERE versions.key = worklist.key)"""
#: columns added after the first schema; a file written before them gets them on open (ALTER TABLE)
ADDED_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'new'",
    "state_changed": "TEXT",  # NULL in a migrated row: its state has not changed since it was received
    **{name: "TEXT" for name in (f.name for f in dataclasses.fields(StudyInfo))},
    "versions": "INTEGER NOT NULL DEFAULT 1",
    "ever_urgent": "INTEGER NOT NULL DEFAULT 0",  # set from the row's own reading when the column is added
    "label_changed": "TEXT",
}
_COLUMNS = ("key", "label", "score", "needs_review", "received", "result", *ADDED_COLUMNS)
_LISTED = ", ".join(c for c in _COLUMNS if c != "result")
#: a key filed again: every column from the new filing, but the earlier arrival time (stamps compare as text) and
#: whether any version was urgent
_KEPT = {
    "received": "min(worklist.received, excluded.received)",
    "ever_urgent": "max(worklist.ever_urgent, excluded.ever_urgent)",
}
_ADD_VERSION = (
    "INSERT INTO versions (key, version, filed, label, score, needs_review, result) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_REFILED = ", ".join(f"{c} = {_KEPT.get(c, f'excluded.{c}')}" for c in _COLUMNS if c != "key")
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
        private_dir(self.path.parent)  # a new folder and file are the service user's only (SQLite's journals too)
        if not private_file(self.path) and readable_by_others(self.path):
            log.warning("the worklist file can be read by other users of this machine: chmod 600 it")
        with self._lock, self._db() as db:
            # under the write lock: the service's worker processes and the DICOM node open one file at the same
            # time, and two that both saw a column missing would both add it (the second fails)
            db.execute("BEGIN IMMEDIATE")
            db.execute(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(worklist)")}
            for name, decl in ADDED_COLUMNS.items():  # a file of an earlier schema keeps working
                if name not in have:
                    db.execute(f"ALTER TABLE worklist ADD COLUMN {name} {decl}")
            if "ever_urgent" not in have:
                db.execute("UPDATE worklist SET ever_urgent = (label = 'Urgent' OR needs_review != 0)")
            db.execute(VERSIONS_SCHEMA)
            db.execute(_MIGRATE_VERSIONS)

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
        """Store a result under ``key`` and return the key (:meth:`file` says more)."""
        return self.file(prediction, key, received, study).key

    def file(
        self,
        prediction: Prediction,
        key: str | None = None,
        received: _dt.datetime | None = None,
        study: StudyInfo | None = None,
    ) -> Filed:
        """Store a result under ``key`` as its next version. A key filed again (a new result for the same
        accession) keeps every earlier version (:meth:`versions`), lists the new one and is ``new`` again: the new
        result has not been read. It keeps the earlier of the two arrival times: a study sent again (a PACS retry,
        a re-triage) must not restart its wait and fall below studies that arrived after it. When the reading
        changed between versions, the stored result gets a warning that says how (:data:`LABEL_CHANGED_WARNING`)."""
        if key is not None and not re.match(KEY_PATTERN, key):
            raise ValueError(f"accession key must match {KEY_PATTERN}")
        study = study or StudyInfo()
        if study.accession is not None and not re.match(KEY_PATTERN, study.accession):
            raise ValueError(f"accession must match {KEY_PATTERN}")
        key = key or uuid.uuid4().hex[:16]
        when = _stamp(received or _now())
        urgent = is_urgent({"label": prediction.label, "needs_review": prediction.needs_review})
        sql = (
            f"INSERT INTO worklist ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "  # noqa: S608 - column names from the constant _COLUMNS; values are ? parameters
            f"ON CONFLICT(key) DO UPDATE SET {_REFILED}"
        )
        with self._lock, self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # the node and the service file on one file: read and write as one
            earlier = db.execute(
                "SELECT label, needs_review FROM versions WHERE key = ? ORDER BY version", (key,)
            ).fetchall()
            history = label_history(
                [reading(lb, bool(r)) for lb, r in earlier] + [reading(prediction.label, prediction.needs_review)]
            )
            was_urgent = any(is_urgent({"label": lb, "needs_review": r}) for lb, r in earlier)
            warning = None
            if history is not None:
                warning = LABEL_CHANGED_WARNING.format(history=history, key=key)
                warning += STAYS_URGENT if was_urgent and not urgent else ""
                prediction = prediction.model_copy(update={"warnings": [*prediction.warnings, warning]})
            result = prediction.model_dump_json()
            version = len(earlier) + 1
            reading_row = (prediction.label, float(prediction.score), int(prediction.needs_review))
            db.execute(_ADD_VERSION, (key, version, when, *reading_row, result))
            row = (
                key,
                *reading_row,
                when,
                result,
                "new",
                when,
                *dataclasses.astuple(study),
                version,
                int(urgent),
                history,
            )
            db.execute(sql, row)
        return Filed(key, version, history, warning)

    def priority(self, label: str, needs_review: bool, waiting_s: float, ever_urgent: bool = False) -> str:
        """What the list shows: ``overdue`` (waiting longer than the maximum), else ``urgent`` or ``routine``."""
        if waiting_s > self.max_wait_s:
            return "overdue"
        item = {"label": label, "needs_review": needs_review, "ever_urgent": ever_urgent}
        return "urgent" if is_urgent(item) else "routine"

    def _item(self, row: tuple, now: _dt.datetime) -> dict[str, Any]:
        values = dict(zip((c for c in _COLUMNS if c != "result"), row))
        waiting = (now - _dt.datetime.fromisoformat(values["received"])).total_seconds()
        review, ever_urgent = bool(values["needs_review"]), bool(values["ever_urgent"])
        return {
            "key": values["key"],
            "accession": shown_accession(values["key"], values["accession"]),
            "label": values["label"],
            "score": values["score"],
            "needs_review": review,
            "received": values["received"],
            "waiting_s": round(waiting, 1),
            "priority": self.priority(values["label"], review, waiting, ever_urgent),
            "state": values["state"],
            "state_changed": values["state_changed"] or values["received"],
            "study_date": values["study_date"],
            "study_time": values["study_time"],
            "view": values["view"],
            "modality": values["modality"],
            "versions": values["versions"],
            "label_changed": values["label_changed"],
            "ever_urgent": ever_urgent,
        }

    def items(self, now: _dt.datetime | None = None, status: str = "all") -> list[dict[str, Any]]:
        """Every study of a list (``all``, ``active``, ``reported``) in reading order, with its wait, priority and
        state; nothing is cut off (:meth:`page` pages it)."""
        states = STATUS_FILTERS[status]
        now = now or _now()
        sql = f"SELECT {_LISTED} FROM worklist WHERE state IN ({', '.join('?' * len(states))})"  # noqa: S608 - constant column list and one ? per state; values are parameters
        with self._lock, self._db() as db:
            rows = db.execute(sql, states).fetchall()
        out = [self._item(row, now) for row in rows]
        # oldest first by the exact arrival time: the shown wait is rounded to 0.1 s, so studies filed within the same
        # tenth of a second would tie on it and come out in any order
        out.sort(key=lambda r: (reading_rank(r, self.max_wait_s), _dt.datetime.fromisoformat(r["received"]), r["key"]))
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
            row = db.execute(f"SELECT {_LISTED} FROM worklist WHERE key = ?", (key,)).fetchone()  # noqa: S608 - the constant column list _LISTED; the key is a ? parameter
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

    def result(self, key: str, version: int | None = None) -> dict | None:
        """The stored Prediction JSON of one study, its latest (None when the key, or that version of it, is
        unknown); ``version``: an earlier one (1 is the first filing)."""
        if version is None:
            sql, args = "SELECT result FROM worklist WHERE key = ?", (key,)
        elif not 1 <= version <= MAX_VERSION:
            return None
        else:
            sql, args = "SELECT result FROM versions WHERE key = ? AND version = ?", (key, int(version))
        with self._lock, self._db() as db:
            row = db.execute(sql, args).fetchone()
        return json.loads(row[0]) if row else None

    def versions(self, key: str) -> list[dict[str, Any]] | None:
        """Every version of one study, oldest first: ``version``, ``filed`` (when it was filed), ``label``,
        ``score``, ``needs_review``; None when the key is unknown (the results: :meth:`result` with ``version=``)."""
        with self._lock, self._db() as db:
            rows = db.execute(
                "SELECT version, filed, label, score, needs_review FROM versions WHERE key = ? ORDER BY version", (key,)
            ).fetchall()
        names = ("version", "filed", "label", "score", "needs_review")
        return [{**dict(zip(names, row)), "needs_review": bool(row[4])} for row in rows] or None


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

    Returns ``(prediction, key)``, the prediction with the stored result's warning when the study's reading changed
    since an earlier version (:meth:`Worklist.file`); if the database cannot be opened or written, ``(prediction with
    a warning, None)``: the caller (``POST /predict``, the UI's Triage button) still shows the result, saying it is
    not on the list.
    """
    try:
        filed = open_worklist().file(stored if stored is not None else prediction, key=key, study=study)
        if filed.warning is not None:
            prediction = prediction.model_copy(update={"warnings": [*prediction.warnings, filed.warning]})
        return prediction, filed.key
    except (OSError, sqlite3.Error) as exc:
        log.error("worklist write failed: %s", type(exc).__name__)
        return prediction.model_copy(update={"warnings": [*prediction.warnings, NOT_FILED_WARNING]}), None
