"""The types of a drift comparison: the :class:`Limits` a figure is judged against, the :class:`Reference` it is
compared with (and how alerts name it), one judged :class:`Figure` and the whole :class:`Report` (with its JSON
form), and how a window is named in words."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cxrtriage.monitoring.record import iso_time

__all__ = ["Figure", "Limits", "Reference", "Report", "window_words"]


@dataclass(frozen=True)
class Limits:
    """Where a figure becomes an alert. Rates in fractions (0.15 = 15 points)."""

    min_results: int = 30  # triaged results needed on each side before a figure is judged
    score_psi: float = 0.25  # the usual "major shift"
    ks_p: float = 0.01
    ks_d: float = 0.15  # and the distributions at least this far apart (large samples make tiny D significant)
    urgent_points: float = 0.15
    review_points: float = 0.10
    refusal_points: float = 0.05
    rate_p: float = 0.01
    smd: float = 0.5  # similarity, image mean, image spread: half a pooled standard deviation
    agreement_points: float = 0.10  # a fall in reader agreement against the reference's
    non_urgent_agreement: float = 0.90  # readers agree with at least this share of Non-Urgent calls
    min_assessments: int = 20


@dataclass(frozen=True)
class Reference:
    """What the window is compared with: ``kind`` is ``commissioning``, ``first_use`` or ``file``."""

    kind: str
    description: str  # the sentence every report shows
    records: list[dict[str, Any]]
    complete: bool = True  # False while the first results of use are still being collected

    @property
    def words(self) -> str:
        """How an alert names it: "at commissioning", "in the first 200 results of use", "in the reference"."""
        if self.kind == "commissioning":
            return "at commissioning"
        if self.kind == "first_use":
            return f"in the first {len(self.records)} results of use"
        return "in the reference"


@dataclass
class Figure:
    key: str
    name: str
    reference: float | None
    recent: float | None
    limit: str  # the limit in words
    status: str  # ok, alert, too_few
    message: str
    statistic: float | None = None  # PSI, KS D, standardised difference, points of change
    p_value: float | None = None
    n_reference: int = 0
    n_recent: int = 0


@dataclass
class Report:
    reference: Reference
    window_start: dt.datetime
    window_end: dt.datetime
    window_label: str
    recent: list[dict[str, Any]]
    figures: list[Figure] = field(default_factory=list)
    ks_method: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> list[Figure]:
        return [f for f in self.figures if f.status == "alert"]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``cxrtriage monitor --json`` writes)."""
        ref = self.reference
        return {
            "reference": {
                "kind": ref.kind,
                "description": ref.description,
                "n": len(ref.records),
                "complete": ref.complete,
            },
            "window": {
                "start": iso_time(self.window_start),
                "end": iso_time(self.window_end),
                "label": self.window_label,
                "n": len(self.recent),
                "triaged": sum(r["outcome"] == "triaged" for r in self.recent),
            },
            "ks_method": self.ks_method,
            "alerts": [f.message for f in self.alerts],
            "figures": [{k: _finite(v) for k, v in asdict(f).items()} for f in self.figures],
            "notes": self.notes,
        }


def window_words(span: dt.timedelta) -> str:
    """ "this week" for 7 days, "in the last 24 hours" for one day, else "in the last N days/hours/minutes"."""
    hours = span.total_seconds() / 3600
    if abs(hours - 168) < 1e-6:
        return "this week"
    if hours >= 48 and hours % 24 == 0:
        return f"in the last {int(hours // 24)} days"
    if hours >= 1:
        return f"in the last {hours:.3g} hours"
    minutes = max(1, round(hours * 60))
    return f"in the last {minutes} minute{'s' if minutes > 1 else ''}"


def _finite(value: Any) -> Any:
    """JSON has no infinity: a standardised shift between two constant samples is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
