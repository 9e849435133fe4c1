"""The audit trail as CSV for a hospital's security team (``cxrtriage audit export``).

One row per record whose time lies in ``[since, until)``, the columns of :data:`cxrtriage.security.audit.FIELDS`
under a header row. Times given without a zone are UTC; a date alone is that day's midnight (``since``) or, for
``until``, the midnight after it, so ``--since 2026-12-01 --until 2026-12-01`` is that whole day. A cell that a
spreadsheet would take for a formula (starting with ``=``, ``+``, ``-``, ``@``) is written with a leading ``'``:
principal names come from key names and the identity provider, and the file is opened in spreadsheets.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any, TextIO

from cxrtriage.security.audit import FIELDS, read_records

__all__ = ["export_csv", "parse_when"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_when(text: str, *, until: bool = False) -> dt.datetime:
    """``2026-12-01`` or ``2026-12-01T08:30[:00][+01:00]`` as an aware UTC time; ValueError with the accepted forms
    otherwise. A date alone in ``until`` means the end of that day (the next midnight)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
            return start + dt.timedelta(days=1) if until else start
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2026-12-01) or a date and time (2026-12-01T08:30, UTC)") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _time_of(record: dict[str, Any]) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(record.get("time")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def export_csv(
    path: str | Path, out: TextIO, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> int:
    """Write the records of the trail at ``path`` with ``since <= time < until`` to ``out`` as CSV; returns the
    number of rows. Lines that are not records are skipped (verify first: ``cxrtriage audit export`` does)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    rows = 0
    for _line, record, _complete in read_records(path):
        if record is None:
            continue
        when = _time_of(record)
        if when is None or (since is not None and when < since) or (until is not None and when >= until):
            continue
        writer.writerow([_cell(record.get(k)) for k in FIELDS])
        rows += 1
    return rows
