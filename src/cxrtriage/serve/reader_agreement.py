"""How often the readers agree with the triage, where an operator looks: ``GET /status`` (``reader_agreement``:
:func:`current_agreement`) and ``GET /metrics`` (:class:`AgreementCollector`), both from each assessed study's
current assessment (:meth:`cxrtriage.worklist.feedback.FeedbackStore.current`, :func:`~cxrtriage.worklist.feedback.
agreement`), read when asked: a reassessment in one worker process shows in the next scrape of any other.

The gauges: ``cxrtriage_reader_agreement_ratio{result="overall"|"urgent"|"non_urgent"}`` (the share of assessed
results the reader agreed with: all of them, those labelled Urgent, those labelled Non-Urgent; a class nobody has
assessed yet has no sample rather than a made-up 0 or 1) and ``cxrtriage_reader_assessed_studies`` (how many studies
the rates are over). A feedback store that cannot be read gives ``null`` in ``/status`` and no samples in
``/metrics`` (logged): the service's other figures still answer.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cxrtriage.worklist.feedback import FeedbackStore, agreement

__all__ = ["RATES", "AgreementCollector", "current_agreement"]

log = logging.getLogger(__name__)

#: the rates of :func:`~cxrtriage.worklist.feedback.agreement`, as the gauge's ``result`` label values
RATES = ("overall", "urgent", "non_urgent")


def current_agreement(open_store: Callable[[], FeedbackStore]) -> dict[str, Any] | None:
    """The agreement rates over every assessed study's current assessment; None when the store cannot be read."""
    try:
        return agreement(open_store().current())
    except (OSError, sqlite3.Error) as exc:
        log.warning("reader agreement unavailable: %s", type(exc).__name__)
        return None


class AgreementCollector(Collector):
    """The two agreement gauges of ``/metrics``, computed at each scrape (see the module docstring)."""

    def __init__(self, open_store: Callable[[], FeedbackStore]) -> None:
        self._open_store = open_store

    def describe(self) -> list[Metric]:
        return []  # unchecked: the registry must not scrape the store when it is registered

    def collect(self) -> Iterator[Metric]:
        rates = GaugeMetricFamily(
            "cxrtriage_reader_agreement_ratio",
            "Share of assessed triage results the reader agreed with (each study's current assessment)",
            labels=["result"],
        )
        studies = GaugeMetricFamily("cxrtriage_reader_assessed_studies", "Studies with a reader's assessment")
        found = current_agreement(self._open_store)
        if found is not None:
            for name in RATES:
                if found[name] is not None:
                    rates.add_metric([name], float(found[name]))
            studies.add_metric([], float(found["n"]))
        yield rates
        yield studies
