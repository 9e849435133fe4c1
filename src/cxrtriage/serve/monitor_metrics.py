"""The drift monitor's figures as Prometheus gauges in ``/metrics`` (:class:`MonitorCollector`, registered on the
app's registry by :class:`cxrtriage.serve.runtime.ServiceRuntime`).

Multi-process safe the way the service's other state is: the figures are computed at scrape time from the one
shared file of monitor records (:class:`cxrtriage.monitoring.store.MonitorStore`), which every worker process and the
DICOM node append to, so whichever worker answers the scrape reports the same values. A computation is kept for
:data:`CACHE_S` seconds, so a scrape every few seconds does not re-read the records each time.

Gauges (``figure`` is a key of :mod:`cxrtriage.monitoring.drift`: ``score_psi``, ``score_ks``, ``urgent_rate``,
``review_rate``, ``refusal_rate``, ``similarity``, ``image_mean``, ``image_std``, ``image_size``, ``agreement_*``):

* ``cxrtriage_monitor_value{figure, period="recent"|"reference"}``: the figure's value (a rate, a mean)
* ``cxrtriage_monitor_statistic{figure}``: its test statistic (PSI, KS D, standardised shift, change in points)
* ``cxrtriage_monitor_alert{figure}``: 1 past its limit, 0 within it or not judged
* ``cxrtriage_monitor_judged{figure}``: 1 when there were enough results on both sides to judge it
* ``cxrtriage_monitor_alerts``: the number of alerts; ``cxrtriage_monitor_results{period}``: records compared
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cxrtriage.monitoring.drift import Report

__all__ = ["CACHE_S", "MonitorCollector"]

log = logging.getLogger("cxrtriage.serve.app")

CACHE_S = 30.0


class MonitorCollector(Collector):
    """Yields the gauges of the report ``compute`` returns (None: no gauges, e.g. the records cannot be read)."""

    def __init__(self, compute: Callable[[], Report | None], cache_s: float = CACHE_S) -> None:
        self._compute = compute
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._at = -math.inf
        self._report: Report | None = None

    def _current(self) -> Report | None:
        with self._lock:
            if time.monotonic() - self._at >= self._cache_s:
                try:
                    self._report = self._compute()
                except Exception:  # noqa: BLE001 - a scrape must answer whatever the records hold
                    log.warning("monitor gauges not computed", exc_info=True)
                    self._report = None
                self._at = time.monotonic()
            return self._report

    def describe(self) -> list[Any]:
        """No description at registration: the registry would otherwise collect (read the records) at start-up."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self._current()
        if report is None:
            return
        value = GaugeMetricFamily(
            "cxrtriage_monitor_value",
            "drift monitor: a figure's value, recent window or reference",
            labels=["figure", "period"],
        )
        statistic = GaugeMetricFamily(
            "cxrtriage_monitor_statistic",
            "drift monitor: a figure's test statistic (PSI, KS D, standardised shift, change in points)",
            labels=["figure"],
        )
        alert = GaugeMetricFamily("cxrtriage_monitor_alert", "drift monitor: 1 when past its limit", labels=["figure"])
        judged = GaugeMetricFamily(
            "cxrtriage_monitor_judged", "drift monitor: 1 when enough results to judge the figure", labels=["figure"]
        )
        for f in report.figures:
            for period, v in (("recent", f.recent), ("reference", f.reference)):
                if v is not None and math.isfinite(v):
                    value.add_metric([f.key, period], float(v))
            if f.statistic is not None and math.isfinite(f.statistic):
                statistic.add_metric([f.key], float(f.statistic))
            alert.add_metric([f.key], float(f.status == "alert"))
            judged.add_metric([f.key], float(f.status != "too_few"))
        count = GaugeMetricFamily("cxrtriage_monitor_alerts", "drift monitor: figures past their limit")
        count.add_metric([], float(len(report.alerts)))
        results = GaugeMetricFamily("cxrtriage_monitor_results", "drift monitor: records compared", labels=["period"])
        results.add_metric(["recent"], float(len(report.recent)))
        results.add_metric(["reference"], float(len(report.reference.records)))
        yield from (value, statistic, alert, judged, count, results)
