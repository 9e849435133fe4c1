"""Reader feedback: a radiologist's assessment of a stored worklist result (IHE AI Results Assessment's question:
did the reader accept the AI's label?), kept beside the worklist so that a site can measure and re-commission the
model from its own readers' judgement.

One record per assessment, in a ``feedback`` table of the worklist's own SQLite file (so it shares the file's
owner-only rules, :class:`~cxrtriage.worklist.Worklist` creates them): the study key, the result **version** it
refers to (the worklist keeps every version; the latest unless the reader names one), that version's model sha256
and label, ``agrees`` (with that label), the reader's ``label``, an optional ``finding`` from a short controlled list
(:data:`FINDINGS`) and ``comment`` (at most :data:`MAX_COMMENT_CHARS`; stored and exported, never logged), who
(``reader``: the authenticated principal's name when authentication is on, else a name the reader types) and how
they were identified (``via``), and when (UTC). A reassessment appends a record: the history is kept
(:meth:`FeedbackStore.history`) and the latest record of a study is its current one (:meth:`FeedbackStore.current`).

``agrees`` and ``label`` say the same thing for a two-class label, and both are kept because a reader states both;
:func:`resolve_label` fills the missing one and refuses a pair that contradicts itself (agreeing with an Urgent
result while calling it Non-Urgent), rather than storing a record whose meaning depends on which field is read.

What leaves the store: :func:`gold_row` is one line of the gold file ``cxrtriage commission --gold`` reads (``path``
is ``worklist:KEY``: the service keeps no image path) and :func:`agreement` the agreement rates of ``/status``,
``/metrics`` and the UI (overall, on results labelled Urgent, on results labelled Non-Urgent). Standard library and
the worklist only, like the worklist itself: the DICOM node and the CLI use it without the web layer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cxrtriage.worklist import KEY_PATTERN, Worklist

__all__ = [
    "FINDINGS",
    "GOLD_KEYS",
    "LABELS",
    "MAX_COMMENT_CHARS",
    "MAX_READER_CHARS",
    "FeedbackStore",
    "agreement",
    "agreement_since",
    "gold_row",
    "resolve_label",
    "study_path",
]

LABELS = ("Urgent", "Non-Urgent")
#: what a reader may name as the finding (optional); anything else is "other", with the comment saying what
FINDINGS = (
    "no acute finding",
    "pneumothorax",
    "consolidation or pneumonia",
    "pleural effusion",
    "pulmonary oedema",
    "mass or nodule",
    "cardiomegaly",
    "fracture",
    "line or tube position",
    "other",
)
MAX_COMMENT_CHARS = 500
MAX_READER_CHARS = 64
#: the keys of one gold-file line (:func:`gold_row`), in the order they are written
GOLD_KEYS = ("path", "version", "label", "reader", "time", "agrees", "finding", "comment")
#: the gold file's ``path`` of a study: its worklist key behind this prefix
PATH_PREFIX = "worklist:"
#: how a reader was identified when authentication is off: the name they typed
TYPED = "typed"

SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, version INTEGER NOT NULL, model_sha256 TEXT NOT NULL,
    model_label TEXT NOT NULL, agrees INTEGER NOT NULL, label TEXT NOT NULL, finding TEXT, comment TEXT,
    reader TEXT NOT NULL, via TEXT NOT NULL, time TEXT NOT NULL)"""
INDEX = "CREATE INDEX IF NOT EXISTS feedback_by_key ON feedback (key, id)"
_FIELDS = (
    "id",
    "key",
    "version",
    "model_sha256",
    "model_label",
    "agrees",
    "label",
    "finding",
    "comment",
    "reader",
    "via",
    "time",
)
_SELECT = f"SELECT {', '.join(_FIELDS)} FROM feedback"  # noqa: S608 - a constant column list
#: each study's latest record, recorded at or after a time (the stamps compare as text: one fixed format)
_CURRENT = f"{_SELECT} WHERE id IN (SELECT max(id) FROM feedback GROUP BY key) AND time >= ? ORDER BY id"  # noqa: S608 - constants
#: the result a record refers to: a named version, or the latest
_VERSION = "SELECT version, label, result FROM versions WHERE key = ? AND version = ?"
_LATEST = "SELECT version, label, result FROM versions WHERE key = ? ORDER BY version DESC LIMIT 1"


def stamp(moment: _dt.datetime | None = None) -> str:
    """A record's time: UTC to the second, ``2026-12-07T15:00:00Z`` (a naive time is taken as UTC)."""
    moment = moment or _dt.datetime.now(_dt.timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def study_path(key: str) -> str:
    """The gold file's ``path`` of a study: ``worklist:KEY``."""
    return PATH_PREFIX + key


def other_label(label: str) -> str:
    return LABELS[1] if label == LABELS[0] else LABELS[0]


def resolve_label(model_label: str, agrees: bool, label: str | None) -> str:
    """The reader's label: ``label`` when given, else the result's (agreeing) or the other one (disagreeing).
    ValueError, with the reason, for a label that is not one or that contradicts ``agrees``."""
    if label is None:
        return model_label if agrees else other_label(model_label)
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}")
    if (label == model_label) != agrees:
        said = "agrees" if agrees else "disagrees"
        raise ValueError(f"the reader {said} with the result's label ({model_label}) but gives the label {label}")
    return label


def _one_line(value: str | None, limit: int, what: str, *, required: bool = False) -> str | None:
    """``value`` stripped, None when empty; ValueError when it is too long, not printable, or required and empty."""
    text = (value or "").strip()
    if not text:
        if required:
            raise ValueError(f"{what} is required")
        return None
    if len(text) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    if not text.isprintable():
        raise ValueError(f"{what} must be one line of printable text")
    return text


def check_comment(comment: str | None) -> str | None:
    """The comment as stored (stripped; None when empty); ValueError when longer than :data:`MAX_COMMENT_CHARS`.
    Line breaks are kept (a comment may be a few lines); other control characters are refused."""
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise ValueError(f"comment is longer than {MAX_COMMENT_CHARS} characters")
    if any(not (c.isprintable() or c in "\n\t") for c in text.replace("\r\n", "\n")):
        raise ValueError("comment must be printable text")
    return text.replace("\r\n", "\n") or None


def check_finding(finding: str | None) -> str | None:
    if finding is None or not finding.strip():
        return None
    if finding not in FINDINGS:
        raise ValueError(f"finding must be one of: {', '.join(FINDINGS)}")
    return finding


def _row(values: tuple) -> dict[str, Any]:
    record = dict(zip(_FIELDS, values))
    record["agrees"] = bool(record["agrees"])
    return record


class FeedbackStore:
    """The ``feedback`` table of ``worklist``'s SQLite file; safe from the service's threads and beside other
    processes (the DICOM node, a CLI export) on the same file: each write is one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, worklist: Worklist) -> None:
        self.worklist = worklist
        self._lock = threading.Lock()
        with self._lock, self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(SCHEMA)
            db.execute(INDEX)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation, committed and closed (the file the worklist opened, owner-only)."""
        db = sqlite3.connect(self.worklist.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def record(
        self,
        key: str,
        *,
        agrees: bool,
        reader: str,
        via: str = TYPED,
        label: str | None = None,
        finding: str | None = None,
        comment: str | None = None,
        version: int | None = None,
        now: _dt.datetime | None = None,
    ) -> dict[str, Any] | None:
        """Append one assessment of ``key``'s result (``version``, else its latest) and return the record; None when
        the study, or that version of it, is not on the worklist. ValueError, with the reason, for a value that is
        not accepted (:func:`resolve_label`, the finding, the comment's length, an empty reader)."""
        if not re.match(KEY_PATTERN, key):
            raise ValueError(f"the study key must match {KEY_PATTERN}")
        who = _one_line(reader, MAX_READER_CHARS, "reader", required=True)
        how = _one_line(via, 32, "via", required=True)
        finding, comment = check_finding(finding), check_comment(comment)
        with self._lock, self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # the version read and the record written as one
            row = db.execute(_LATEST, (key,)) if version is None else db.execute(_VERSION, (key, int(version)))
            found = row.fetchone()
            if found is None:
                return None
            number, model_label, result = found
            reader_label = resolve_label(model_label, bool(agrees), label)
            sha = str((json.loads(result).get("model") or {}).get("sha256") or "")
            values = (key, number, sha, model_label, int(bool(agrees)), reader_label, finding, comment, who, how)
            cursor = db.execute(
                f"INSERT INTO feedback ({', '.join(_FIELDS[1:])}) VALUES ({', '.join('?' * (len(_FIELDS) - 1))})",  # noqa: S608 - constant columns; values are ? parameters
                (*values, stamp(now)),
            )
            return _row((cursor.lastrowid, *values, stamp(now)))

    def history(self, key: str) -> list[dict[str, Any]] | None:
        """Every assessment of ``key``, oldest first, the latest marked ``current``; None when the study is not on
        the worklist (an empty list: it is, and nobody has assessed it yet)."""
        with self._lock, self._db() as db:
            if db.execute("SELECT 1 FROM worklist WHERE key = ?", (key,)).fetchone() is None:
                return None
            rows = db.execute(f"{_SELECT} WHERE key = ? ORDER BY id", (key,)).fetchall()
        records = [_row(r) for r in rows]
        for i, record in enumerate(records):
            record["current"] = i == len(records) - 1
        return records

    def current(self, since: _dt.datetime | None = None) -> list[dict[str, Any]]:
        """The current (latest) assessment of every assessed study, oldest first; with ``since``, only those
        recorded at or after it (a study reassessed since counts once, with its new record)."""
        since_text = stamp(since) if since is not None else ""  # every stamp is later than ""
        with self._lock, self._db() as db:
            rows = db.execute(_CURRENT, (since_text,)).fetchall()
        return [_row(r) for r in rows]


def gold_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the gold file (:data:`GOLD_KEYS`): ``path`` ``worklist:KEY``, the reader's ``label``, who, when,
    whether they agreed with the result, the finding and the comment."""
    return {
        "path": study_path(str(record["key"])),
        "version": int(record["version"]),  # the result the reader assessed: commission re-reads that one
        "label": record["label"],
        "reader": record["reader"],
        "time": record["time"],
        "agrees": bool(record["agrees"]),
        "finding": record.get("finding"),
        "comment": record.get("comment"),
    }


def _model_label(record: Mapping[str, Any]) -> str | None:
    """The label of the result a record assessed: stored, else read back from the reader's label and ``agrees``
    (a gold-file line has no ``model_label``)."""
    if record.get("model_label") in LABELS:
        return str(record["model_label"])
    label = record.get("label")
    if label not in LABELS:
        return None
    return str(label) if record.get("agrees") else other_label(str(label))


def _rate(agreed: int, total: int) -> float | None:
    return agreed / total if total else None


def agreement(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Agreement of readers with the model over ``records`` (store records or gold-file lines; pass each study's
    current one, :meth:`FeedbackStore.current`): ``overall`` (the share of records that agree), ``urgent`` (among
    results labelled Urgent), ``non_urgent`` (among results labelled Non-Urgent), each None without records, and
    ``n`` (the records counted; one whose labels cannot be read is not counted)."""
    counts = {label: [0, 0] for label in LABELS}  # label -> [agreed, total]
    for record in records:
        label = _model_label(record)
        if label is None:
            continue
        counts[label][0] += int(bool(record.get("agrees")))
        counts[label][1] += 1
    agreed = sum(c[0] for c in counts.values())
    total = sum(c[1] for c in counts.values())
    return {
        "overall": _rate(agreed, total),
        "urgent": _rate(*counts["Urgent"]),
        "non_urgent": _rate(*counts["Non-Urgent"]),
        "n": total,
    }


def agreement_since(worklist_path: Path, since: _dt.datetime | None = None) -> dict[str, Any] | None:
    """:func:`agreement` over the studies assessed since ``since`` (each study's current assessment), read from the
    worklist file at ``worklist_path``: what a drift monitor compares over its window. None when there is no
    worklist file (nothing was ever assessed; none is created) or it cannot be read."""
    if not Path(worklist_path).is_file():
        return None
    try:
        return agreement(FeedbackStore(Worklist(worklist_path)).current(since))
    except (OSError, sqlite3.Error):
        return None
