"""The web UI's Worklist tab: the service's reading worklist (:mod:`cxrtriage.worklist`) as a table in reading
order, a page at a time, refreshed by itself; the stored result of the study a reader clicks, with the buttons that
set its state.

Opening a study marks it ``opened`` (only when it was ``new``); "Mark reported" moves it off the active list (it
stays under the Reported and All filters); "Return to list" makes it ``new`` again. Refreshing the list never
changes a state. Opening a study, setting its state and filing a result of the Triage tab each leave a record in
the audit trail with the study's key and the reader (:mod:`cxrtriage.serve.ui.audit`). Under the open study, the
reader-feedback panel (:mod:`cxrtriage.serve.ui.feedback`); above the table, how often readers agreed with the
triage (refreshed with the list). The HTML is drawn by
:mod:`cxrtriage.serve.ui.worklist_render` (pure functions); Gradio is imported only inside
:func:`build_worklist_tab`.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cxrtriage.config import Settings
from cxrtriage.optional import require
from cxrtriage.schema import Prediction
from cxrtriage.serve.crops import with_crop_urls
from cxrtriage.serve.ui.audit import UiAudit
from cxrtriage.serve.ui.feedback import FeedbackOpener, build_feedback_panel, current_agreement_html
from cxrtriage.serve.ui.feedback_render import FEEDBACK_CSS
from cxrtriage.serve.ui.worklist_render import (
    FILTERS,
    REFRESH_S,
    STUDY_PLACEHOLDER_HTML,
    TABLE_CSS,
    filed_html,
    format_wait,
    study_html,
    summary_html,
    unavailable_html,
    worklist_html,
)
from cxrtriage.worklist import KEY_PATTERN, STATUS_FILTERS, StudyInfo, Worklist, file_on_worklist

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

__all__ = [
    "WORKLIST_CSS",
    "WorklistOpener",
    "build_worklist_tab",
    "configured_worklist",
    "file_ui_result",
    "filed_html",
    "format_wait",
    "read_study",
    "set_state_audited",
    "study_view",
    "worklist_html",
    "worklist_view",
]

log = logging.getLogger(__name__)

#: the tab's CSS and the reader-feedback panel's (both tabs show the panel; the page takes this one string)
WORKLIST_CSS = TABLE_CSS + FEEDBACK_CSS

#: rows per page of the tab (``GET /worklist`` takes ``per_page``)
PER_PAGE = 50

#: one delegated listener: a click (or Enter / Space) on a row sends its key to the server as the "click" event
ROW_CLICK_JS = """
const pick = (tr) => trigger('click', {key: tr.dataset.key});
element.addEventListener('click', (e) => {
  const tr = e.target.closest('tr[data-key]');
  if (tr) pick(tr);
});
element.addEventListener('keydown', (e) => {
  const tr = e.target.closest('tr[data-key]');
  if (tr && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); pick(tr); }
});
"""


def _failed(exc: Exception) -> str:
    log.error("worklist read failed in the web UI: %s", type(exc).__name__)
    return unavailable_html(exc)


def worklist_page(
    open_worklist: Callable[[], Worklist], status: str = "active", page: int = 1, selected: str | None = None
) -> tuple[str, str, int, int]:
    """One page of a list as ``(table, summary line, page shown, pages)``; a page past the end (the last study of
    the last page was just reported) shows the last page. A database that fails shows a clear message."""
    status = status if status in STATUS_FILTERS else "active"
    try:
        worklist = open_worklist()
        listing = worklist.page(status, max(1, page), PER_PAGE)
        if not listing["items"] and listing["pages"]:
            listing = worklist.page(status, listing["pages"], PER_PAGE)
    except (OSError, sqlite3.Error) as exc:
        return _failed(exc), "", 1, 1
    first = (listing["page"] - 1) * PER_PAGE + 1
    table = worklist_html(listing["items"], selected, worklist.max_wait_s, first=first, status=status)
    return table, summary_html(listing), listing["page"], max(1, listing["pages"])


def worklist_view(open_worklist: Callable[[], Worklist], selected: str | None = None, status: str = "active") -> str:
    """The first page of a list as it stands now, or a clear message when the database cannot be opened or read."""
    return worklist_page(open_worklist, status, 1, selected)[0]


def _study(open_worklist: Callable[[], Worklist], key: str, opening: bool) -> tuple[str, str]:
    """:func:`study_view`'s page and its audit outcome (``ok``, ``not_found``, ``failed``)."""
    try:
        worklist = open_worklist()
        item = worklist.set_state(key, "opened", only_from="new") if opening else worklist.item(key)
        result = worklist.result(key)
    except (OSError, sqlite3.Error) as exc:
        return _failed(exc), "failed"
    return study_html(key, result, item), "ok" if result is not None else "not_found"


def study_view(open_worklist: Callable[[], Worklist], key: str, *, opening: bool = False) -> str:
    """One study's stored result (``opening``: a reader opened it, so a ``new`` study becomes ``opened``), or a
    clear message when the database cannot be opened or read."""
    return _study(open_worklist, key, opening)[0]


def read_study(open_worklist: Callable[[], Worklist], key: str, audit: UiAudit, request: Any) -> str:
    """A reader opened ``key`` (:func:`study_view` with ``opening``), recorded as ``result.read`` by the principal
    of the Gradio event's ``request`` before the page goes out."""
    page, outcome = _study(open_worklist, key, True)
    audit.record(request, "result.read", key, outcome)
    return page


def _set_state(open_worklist: Callable[[], Worklist], key: str, state: str) -> tuple[str | None, str]:
    try:
        item = open_worklist().set_state(key, state)
    except (OSError, sqlite3.Error) as exc:
        return _failed(exc), "failed"
    return None, "ok" if item is not None else "not_found"


def set_study_state(open_worklist: Callable[[], Worklist], key: str, state: str) -> str | None:
    """Set a study's state from its buttons; the error page when the database fails, else None."""
    return _set_state(open_worklist, key, state)[0]


def set_state_audited(
    open_worklist: Callable[[], Worklist], key: str, state: str, audit: UiAudit, request: Any
) -> str | None:
    """:func:`set_study_state`, recorded as ``worklist.state`` by the principal of the event's ``request``."""
    error, outcome = _set_state(open_worklist, key, state)
    audit.record(request, "worklist.state", key, outcome)
    return error


def file_ui_result(
    open_worklist: Callable[[], Worklist],
    pred: Prediction,
    study: StudyInfo | None = None,
    accession: str | None = None,
    audit: UiAudit | None = None,
    request: Any = None,
) -> tuple[Prediction, str | None]:
    """File a result of the Triage button under the accession the reader typed, else a random key, as
    ``POST /predict`` does: stored with crop URLs (server paths stay private) and the study's columns; a failed write
    comes back as a warning on the result. With ``audit``: recorded as ``triage`` (the key filed under, ``ok``; the
    accession typed, ``failed``, when it could not be filed) by the principal of the event's ``request``."""
    filed, key = file_on_worklist(open_worklist, pred, accession, stored=with_crop_urls(pred), study=study)
    if audit is not None:
        audit.record(request, "triage", key or accession, "ok" if key else "failed")
    return filed, key


class WorklistOpener:
    """The worklist at a path, opened on first use and then kept (for the UI served without the service, which
    otherwise owns the one instance at ``app.state.runtime.worklist``); a failed open is retried next time."""

    def __init__(self, path: Any, max_wait_s: float) -> None:
        self.path, self.max_wait_s = path, max_wait_s
        self._lock = threading.Lock()
        self._worklist: Worklist | None = None

    def __call__(self) -> Worklist:
        with self._lock:
            if self._worklist is None:
                self._worklist = Worklist(self.path, self.max_wait_s)
            return self._worklist


def configured_worklist(settings: Settings) -> WorklistOpener:
    """The worklist named by ``settings`` (``worklist_path``, ``worklist_max_wait_min``), opened on first use."""
    return WorklistOpener(settings.worklist_path, 60.0 * settings.worklist_max_wait_min)


#: the annotations of the tab's three text inputs, for the handlers whose annotations are given as classes (below)
_TEXT_INPUTS: dict[str, Any] = {"status": str, "page": str | None, "selected": str | None}


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 1


def build_worklist_tab(
    open_worklist: Callable[[], Worklist], tab: gr.Tab, others: list[gr.Tab], audit: UiAudit
) -> gr.Timer:
    """The tab's components and events, inside the ``tab`` being built. It refreshes every :data:`REFRESH_S` while
    it is shown (the timer stops when one of ``others`` is selected; returned, for tabs built after it to stop) and
    on its Refresh button. Opening a study and its two buttons are recorded in ``audit`` (the refreshes and the
    pager are the middleware's ``ui.event``)."""
    gr = require("gradio", extra="demo", purpose="the web UI")
    open_feedback = FeedbackOpener(open_worklist)

    def listing(status: str, page: str | None, selected: str | None) -> tuple:
        """The table, the summary, the page kept, Previous/Next enabled where they lead somewhere, and the readers'
        agreement with the triage."""
        table, summary, shown, pages = worklist_page(open_worklist, status, _page_number(page), selected or None)
        prev_btn = gr.update(interactive=shown > 1)
        next_btn = gr.update(interactive=shown < pages)
        return table, summary, str(shown), prev_btn, next_btn, current_agreement_html(open_feedback)

    def moved(step: int) -> Callable[..., tuple]:
        return lambda status, page, selected: listing(status, str(max(1, _page_number(page) + step)), selected)

    def shown(status: str, page: str | None, selected: str | None) -> tuple:
        return (*listing(status, page, selected), gr.Timer(active=True))

    def filtered(status: str, selected: str | None) -> tuple:
        return listing(status, "1", selected)

    def study_buttons(open_: bool) -> tuple:
        return gr.update(visible=open_), gr.update(visible=open_)

    def open_study(status: str, page: str | None, selected: str | None, evt: gr.EventData, request: Any) -> tuple:
        key = getattr(evt, "key", None) if evt is not None else None
        if not isinstance(key, str) or not re.match(KEY_PATTERN, key):
            return (gr.update(), selected, *study_buttons(bool(selected)), *listing(status, page, selected))
        detail = read_study(open_worklist, key, audit, request)
        return (detail, key, *study_buttons(True), *listing(status, page, key))

    def closed_with(state: str) -> Callable[..., tuple]:
        def close(status: str, page: str | None, selected: str | None, request: Any) -> tuple:
            error = set_state_audited(open_worklist, selected, state, audit, request) if selected else None
            return (error or STUDY_PLACEHOLDER_HTML, "", *study_buttons(False), *listing(status, page, None))

        close.__annotations__ = {**_TEXT_INPUTS, "request": gr.Request, "return": tuple}
        return close

    # gradio finds the event-data and request parameters by their annotations; with postponed annotations and gradio
    # imported here, it could not resolve the strings, so the annotations are given as the classes themselves
    open_study.__annotations__ = {**_TEXT_INPUTS, "evt": gr.EventData, "request": gr.Request, "return": tuple}

    gr.HTML(
        '<p class="cxr-wl-intro">Triaged studies in reading order: every urgent study (Urgent or needs review, now or '
        "in an earlier version of the study) before every routine one, overdue ones first in each, then oldest first. "
        "Click a row to open it.</p>"
    )
    agreement = gr.HTML("", elem_id="cxr-wl-agreement")  # how often readers agreed (serve/ui/feedback.py)
    with gr.Row(equal_height=False, elem_id="cxr-wl-toolbar"):
        status = gr.Radio(
            list(FILTERS),
            value="active",
            show_label=False,
            container=False,
            scale=0,
            min_width=340,
            elem_id="cxr-wl-filter",
        )
        summary = gr.HTML("", elem_id="cxr-wl-summary", scale=1)
        prev_btn = gr.Button("← Previous", size="sm", scale=0, min_width=100, elem_id="cxr-wl-prev")
        next_btn = gr.Button("Next →", size="sm", scale=0, min_width=90, elem_id="cxr-wl-next")
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id="cxr-wl-refresh")
    # the open study's key and the page, kept in the page (hidden textboxes, not gr.State: session state makes the
    # page hold a heartbeat connection open, so the page never goes network-idle, which the browser tests wait for)
    selected = gr.Textbox(visible=False, elem_id="cxr-wl-selected")
    page = gr.Textbox("1", visible=False, elem_id="cxr-wl-page")
    timer = gr.Timer(REFRESH_S, active=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=9, min_width=600):
            worklist = gr.HTML("", elem_id="cxr-worklist", js_on_load=ROW_CLICK_JS)
        with gr.Column(scale=4, min_width=320):
            with gr.Row():
                reported = gr.Button(
                    "Mark reported", variant="primary", size="sm", visible=False, elem_id="cxr-wl-reported"
                )
                back = gr.Button("Return to list", size="sm", visible=False, elem_id="cxr-wl-return")
            study = gr.HTML(STUDY_PLACEHOLDER_HTML, elem_id="cxr-wl-study")
            build_feedback_panel(open_worklist, audit, prefix="cxr-wl-fb", key=selected)  # follows the open study

    quiet: dict[str, Any] = {"api_name": False, "show_progress": "hidden"}
    state = [status, page, selected]
    table_out = [worklist, summary, page, prev_btn, next_btn, agreement]
    tab.select(shown, inputs=state, outputs=[*table_out, timer], **quiet)
    for other in others:
        other.select(lambda: gr.Timer(active=False), outputs=timer, **quiet)
    # queue=False: the page's own refresh is sent to gradio_api/run/predict, which serve/auth.py does not count as the
    # reader's activity, so a Worklist tab left open still lets the session's idle timeout end it
    timer.tick(listing, inputs=state, outputs=table_out, queue=False, **quiet)
    refresh.click(listing, inputs=state, outputs=table_out, api_name=False)
    status.change(filtered, inputs=[status, selected], outputs=table_out, **quiet)
    prev_btn.click(moved(-1), inputs=state, outputs=table_out, **quiet)
    next_btn.click(moved(+1), inputs=state, outputs=table_out, **quiet)
    study_out = [study, selected, reported, back, *table_out]
    worklist.click(open_study, inputs=state, outputs=study_out, api_name=False)
    reported.click(closed_with("reported"), inputs=state, outputs=study_out, **quiet)
    back.click(closed_with("new"), inputs=state, outputs=study_out, **quiet)
    return timer
