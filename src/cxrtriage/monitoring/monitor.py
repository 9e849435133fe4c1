"""One monitoring run, as ``cxrtriage monitor``, the UI's Monitoring tab and the ``/metrics`` gauges all do it:
choose the reference, cut the recent window out of the store, compare (:func:`cxrtriage.monitoring.drift.compare`)
and bucket the records over time for the plots."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtriage.monitoring.drift import Limits, Reference, Report, compare, records_between
from cxrtriage.monitoring.record import record_time, utc_now
from cxrtriage.monitoring.store import MonitorStore, read_jsonl

__all__ = ["Bucket", "choose_reference", "parse_window", "run_monitor", "site_dir_of", "timeline"]

_WINDOW = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([wdhm])\s*")
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
#: the plots cover this many windows back from now, so that the change shows against what came before
PLOT_WINDOWS = 4


def parse_window(text: str) -> dt.timedelta:
    """``7d``, ``2w``, ``24h``, ``90m`` -> a timedelta (ValueError with the accepted forms otherwise)."""
    found = _WINDOW.fullmatch(text or "")
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"a window is a number and a unit (w, d, h or m), e.g. 7d or 24h; not {text!r}")
    return dt.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def site_dir_of(settings: Any) -> Path | None:
    """The site profile folder of the settings (``Settings.site_dir``, ``CXRTRIAGE_SITE``), None without one. Read
    by attribute: the profile's setting belongs to site commissioning, which may be absent."""
    site_dir = getattr(settings, "site_dir", None)
    return Path(site_dir) if site_dir else None


def choose_reference(
    store: MonitorStore,
    reference_file: Path | None = None,
    site_dir: Path | None = None,
    records: Sequence[Mapping[str, Any]] | None = None,
) -> Reference:
    """The reference, in this order: ``reference_file`` (given by the user), the site profile's commissioning
    sample (``site_dir/reference.jsonl``), else the store's first results of use. FileNotFoundError for a given
    file that does not exist; a site profile without its sample falls back to the first results of use and says so.

    The first results of use are complete once the store holds a result after them (the writer stopped adding to
    them, whatever ``reference_n`` it had) or there are ``reference_n`` of them; ``records``: the store's, when the
    caller has read them already."""
    if reference_file is not None:
        if not reference_file.is_file():
            raise FileNotFoundError(f"no reference file at {reference_file}")
        return _from_file(reference_file, "file")
    fallback = ""
    if site_dir is not None:
        path = site_dir / "reference.jsonl"
        if path.is_file():
            return _from_file(path, "commissioning")
        fallback = f" (the site profile {site_dir} has no reference.jsonl)"
    first = store.first_use().records
    complete = len(first) >= store.reference_n
    if first and not complete:
        last = record_time(first[-1])
        complete = any(record_time(r) > last for r in (store.read().records if records is None else records))
    span = f", {_day(first[0])} to {_day(first[-1])}" if first else ""
    return Reference(
        "first_use",
        f"the first {len(first)} results of use{span}{'' if complete else f' (still collecting {store.reference_n})'}"
        f"{fallback}",
        first,
        complete,
    )


def _from_file(path: Path, kind: str) -> Reference:
    records = read_jsonl(path).records
    commissioning = bool(records) and all(r["source"] == "commissioning" for r in records)
    sites = sorted({r["site"] for r in records if r["site"]})
    if kind == "commissioning" or commissioning:
        site = f" of site {', '.join(sites)}" if sites else ""
        day = f", {_day(records[0])}" if records else ""
        return Reference(
            "commissioning", f"the commissioning sample{site} ({len(records)} cases{day}; {path.name})", records
        )
    # the file's name, not its folder: the report is shown to readers, who have no business with server paths
    return Reference("file", f"the reference file {path.name} ({len(records)} records)", records)


def _day(record: Mapping[str, Any]) -> str:
    return record_time(record).date().isoformat()


def run_monitor(
    store: MonitorStore,
    *,
    span: dt.timedelta = dt.timedelta(days=7),
    reference_file: Path | None = None,
    site_dir: Path | None = None,
    agreement: Mapping[str, Any] | None = None,
    reference_agreement: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
    limits: Limits | None = None,
) -> tuple[Report, list[Bucket]]:
    """The report of the last ``span`` against the reference, and the plots' buckets. With the first results of use
    as the reference, the window starts after them (a result is never compared with itself)."""
    now = now or utc_now()
    loaded = store.read()
    reference = choose_reference(store, reference_file, site_dir, loaded.records)
    start = now - span
    if reference.kind == "first_use" and reference.records:
        start = max(start, record_time(reference.records[-1]))
    report = compare(
        reference,
        records_between(loaded.records, start, now),
        window_start=start,
        window_end=now,
        agreement=agreement,
        reference_agreement=reference_agreement,
        limits=limits,
    )
    if loaded.skipped:
        report.notes.append(f"{loaded.skipped} line(s) of the store were not records and were skipped")
    plot_start = now - PLOT_WINDOWS * span
    return report, timeline(records_between(loaded.records, plot_start, now), plot_start, now)


@dataclass(frozen=True)
class Bucket:
    """The records of one stretch of time (a day, or an hour for short windows): counts and the plotted values."""

    start: dt.datetime
    n: int
    triaged: int
    urgent_rate: float | None
    review_rate: float | None
    refusal_rate: float | None
    mean_score: float | None
    mean_similarity: float | None
    image_mean: float | None


def timeline(records: Sequence[Mapping[str, Any]], start: dt.datetime, end: dt.datetime) -> list[Bucket]:
    """Bucket ``records`` between ``start`` and ``end``: by day when that covers at least three days, else by hour
    (empty buckets are kept, so a gap in use shows as one)."""
    step = dt.timedelta(days=1) if end - start >= dt.timedelta(days=3) else dt.timedelta(hours=1)
    first = start.replace(minute=0, second=0, microsecond=0)
    if step == dt.timedelta(days=1):
        first = first.replace(hour=0)
    count = int((end - first) / step) + 1
    groups: list[list[Mapping[str, Any]]] = [[] for _ in range(count)]
    for r in records:
        i = int((record_time(r) - first) / step)
        if 0 <= i < count:
            groups[i].append(r)
    return [_bucket(first + i * step, g) for i, g in enumerate(groups)]


def _bucket(start: dt.datetime, records: Sequence[Mapping[str, Any]]) -> Bucket:
    triaged = [r for r in records if r["outcome"] == "triaged"]

    def share(rows: Sequence[Mapping[str, Any]], test: Any) -> float | None:
        return sum(1 for r in rows if test(r)) / len(rows) if rows else None

    def mean(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return float(sum(values) / len(values)) if values else None

    return Bucket(
        start=start,
        n=len(records),
        triaged=len(triaged),
        urgent_rate=share(triaged, lambda r: r["label"] == "Urgent"),
        review_rate=share(triaged, lambda r: r["needs_review"]),
        refusal_rate=share(records, lambda r: r["outcome"] == "refused"),
        mean_score=mean([r["score"] for r in triaged]),
        mean_similarity=mean([r["similarity"] for r in triaged]),
        image_mean=mean([(r["image"] or {}).get("mean") for r in triaged]),
    )
