"""The web UI's Monitoring tab: the drift report of :mod:`cxrtriage.monitoring` for a reader, the same figures,
alerts and wording as ``cxrtriage monitor`` (:func:`cxrtriage.monitoring.report.report_html`: the alerts, the
plots over time, the table of figures with their limits, and the reference it compared with).

Computed from the service's monitor records (``Settings.monitor_file``, written by the API, the UI and the DICOM
node) when the tab is opened, on Refresh and when the window changes; the reference is the site profile's
commissioning sample when the service runs with one, else the first results of use. Gradio is imported only
inside :func:`build_monitoring_tab`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from cxrtriage.config import Settings
from cxrtriage.monitoring.monitor import parse_window, run_monitor, site_dir_of
from cxrtriage.monitoring.record import utc_now
from cxrtriage.monitoring.report import MONITOR_CSS, report_html
from cxrtriage.monitoring.store import MonitorStore
from cxrtriage.optional import require
from cxrtriage.worklist.feedback import agreement_since

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

__all__ = ["MONITOR_CSS", "WINDOWS", "build_monitoring_tab", "monitoring_html"]

log = logging.getLogger(__name__)

#: the windows a reader can choose (the service's own default, ``CXRTRIAGE_MONITOR_WINDOW``, first when other)
WINDOWS = ("24h", "7d", "30d")

#: reader agreement for the report (the feedback's ``agreement``: overall, urgent, non_urgent, n), or None
AgreementSource = Callable[[], Mapping[str, Any] | None]


def monitoring_html(settings: Settings, window: str, agreement: AgreementSource | None = None) -> str:
    """The report's HTML for ``window``; a sentence in a red box when the records cannot be read. ``agreement``:
    the readers' agreement to judge, else theirs over the same window (reader feedback, in the worklist's file)."""
    try:
        span = parse_window(window)
        agreed = agreement() if agreement is not None else agreement_since(settings.worklist_path, utc_now() - span)
        report, buckets = run_monitor(
            MonitorStore.from_settings(settings), span=span, site_dir=site_dir_of(settings), agreement=agreed
        )
    except (OSError, ValueError) as exc:
        log.warning("monitoring report failed: %s", type(exc).__name__)
        return (
            '<div class="cxr-error-box"><b>The monitoring report could not be computed</b>: '
            f"{escape(str(exc) if isinstance(exc, ValueError) else type(exc).__name__)}</div>"
        )
    return report_html(report, buckets)


def build_monitoring_tab(
    settings: Settings,
    tab: gr.Tab,
    *,
    stop_timers: Sequence[Any] = (),
    agreement: AgreementSource | None = None,
) -> None:
    """The tab's components and events, inside the ``tab`` being built. ``stop_timers``: other tabs' refresh
    timers (the Worklist's), stopped while this tab is shown."""
    gr = require("gradio", extra="demo", purpose="the web UI")
    default = settings.monitor_window
    choices = [default, *(w for w in WINDOWS if w != default)]

    def show(window: str) -> str:
        return monitoring_html(settings, window or default, agreement)

    gr.HTML(
        '<p class="cxr-mon-intro">Is the service still seeing the films it was measured on? A recent window of '
        "results compared with the site's commissioning sample (or the first results of use): score distribution, "
        "urgent, review and refusal rates, similarity to the training cases, the films' grey levels and reader "
        "agreement. An alert names what moved and what to check. Nothing here identifies a patient.</p>"
    )
    with gr.Row(equal_height=False):
        window = gr.Radio(choices, value=default, label="Window", scale=0, min_width=260, elem_id="cxr-mon-window")
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id="cxr-mon-refresh")
    report = gr.HTML("", elem_id="cxr-monitoring")
    quiet: dict[str, Any] = {"api_name": False, "show_progress": "hidden"}
    tab.select(show, inputs=window, outputs=report, **quiet)
    for timer in stop_timers:
        tab.select(lambda: gr.Timer(active=False), outputs=timer, **quiet)
    refresh.click(show, inputs=window, outputs=report, api_name=False)
    window.change(show, inputs=window, outputs=report, **quiet)
