"""The web UI's Worklist tab: the service's reading worklist (:mod:`cxrtriage.worklist`) as a table in reading
order, refreshed by itself, and the stored result of the study a reader clicks.

Kept apart from :mod:`cxrtriage.serve.ui.app` (the page and the Triage tab) so that neither grows into one large
module. The HTML is rendered by pure functions here (tested without a browser); the study view reuses the Triage
tab's renderers of :mod:`cxrtriage.serve.ui.render`, so a stored result looks like a fresh one. Gradio is imported
only inside :func:`build_worklist_tab`.

Privacy: the table shows the accession-like key, label, score, flags and times, which is all the worklist stores;
it holds no patient identifier.
"""

from __future__ import annotations

import html
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
from cxrtriage.serve.ui.render import (
    crop_caption,
    disclaimer_html,
    error_html,
    explanation_html,
    label_html,
    provenance_html,
    warnings_html,
)
from cxrtriage.worklist import KEY_PATTERN, Worklist, file_on_worklist

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

log = logging.getLogger(__name__)

#: seconds between the tab's own refreshes (only while the tab is shown)
REFRESH_S = 5.0
EMPTY_HTML = (
    '<div class="cxr-placeholder" id="cxr-wl-empty">The worklist is empty. Studies arrive here once they are '
    "triaged: through <code>POST /predict</code>, the Triage tab of this page, or the DICOM node.</div>"
)
STUDY_PLACEHOLDER_HTML = (
    '<div class="cxr-placeholder">Click a row of the worklist to open that study\'s stored result here.</div>'
)
UNAVAILABLE_TITLE = "The worklist is unavailable"
#: how each priority is shown (the worklist's own names, see Worklist.priority)
PRIORITY_BADGES = {"overdue": "OVERDUE", "urgent": "URGENT", "routine": "routine"}

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

WORKLIST_CSS = """
.cxr-wl-intro {margin:0; color:#444;}
#cxr-worklist .cxr-wl-scroll {overflow-x:auto;}
#cxr-worklist table.cxr-wl-table {border-collapse:collapse !important; width:100%; font-size:0.92rem;
  margin:0 !important; border:none !important;}
#cxr-worklist .cxr-wl-table :is(th, td) {border:none !important; border-bottom:1px solid #e2e2e2 !important;
  padding:6px 7px !important; vertical-align:middle; white-space:nowrap; text-align:left;}
#cxr-worklist .cxr-wl-table th {font-weight:700; color:#444; border-bottom:2px solid #bbb !important;
  background:#f7f7f7;}
#cxr-worklist .cxr-wl-table td.cxr-wl-num {text-align:right; font-variant-numeric:tabular-nums;}
#cxr-worklist tr.cxr-wl-row {cursor:pointer;}
#cxr-worklist tr.cxr-wl-row:hover td {filter:brightness(0.95);}
#cxr-worklist tr.cxr-wl-row:focus-visible {outline:2px solid #3182ce; outline-offset:-2px;}
#cxr-worklist tr.cxr-wl-overdue td {background:#fed7d7;}
#cxr-worklist tr.cxr-wl-overdue td:first-child {box-shadow:inset 6px 0 0 #9b2c2c;}
#cxr-worklist tr.cxr-wl-urgent td {background:#fff0f0;}
#cxr-worklist tr.cxr-wl-urgent td:first-child {box-shadow:inset 6px 0 0 #c53030;}
#cxr-worklist tr.cxr-wl-review td {background:#fff4e5;}
#cxr-worklist tr.cxr-wl-review td:first-child {box-shadow:inset 6px 0 0 #c05621;}
#cxr-worklist tr.cxr-wl-routine td:first-child {box-shadow:inset 6px 0 0 #cbd5e0;}
/* the open study: a blue frame around its row (its colour stays) */
#cxr-worklist tr.cxr-wl-selected td {font-weight:700; box-shadow:inset 0 3px 0 #2b6cb0, inset 0 -3px 0 #2b6cb0;}
#cxr-worklist tr.cxr-wl-selected td:first-child {box-shadow:inset 6px 0 0 #2b6cb0, inset 0 3px 0 #2b6cb0,
  inset 0 -3px 0 #2b6cb0;}
#cxr-worklist tr.cxr-wl-selected td:last-child {box-shadow:inset -3px 0 0 #2b6cb0, inset 0 3px 0 #2b6cb0,
  inset 0 -3px 0 #2b6cb0;}
#cxr-worklist .cxr-wl-lbl-urgent {color:#c53030; font-weight:700;}
#cxr-worklist .cxr-wl-lbl-nonurgent {color:#2f855a; font-weight:600;}
.cxr-wl-badge {display:inline-block; padding:1px 8px; border-radius:999px; font-size:0.8rem; font-weight:700;
  color:#fff; white-space:nowrap;}
.cxr-wl-badge-overdue {background:#9b2c2c;}
.cxr-wl-badge-urgent {background:#c53030;}
.cxr-wl-badge-review {background:#c05621;}
.cxr-wl-badge-routine {background:#718096;}
.cxr-wl-caption {color:#555; font-size:0.88rem; margin-top:6px;}
.cxr-wl-head {font-size:1.1rem; font-weight:700; margin:0 0 6px 0;}
.cxr-wl-study > * + * {margin-top:8px;}
.cxr-wl-crops {margin:4px 0 0 18px;}
.cxr-filed {margin:0; color:#555; font-size:0.92rem;}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def format_wait(seconds: float) -> str:
    """How long a study has waited, as a reader says it: ``< 1 min``, ``3 min``, ``2 h 5 min``, ``1 d 3 h``."""
    minutes = int(max(0.0, float(seconds)) // 60)
    if minutes < 1:
        return "< 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def row_kind(item: dict) -> str:
    """The row's colour: overdue, then needs-review (amber, like the label line), Urgent, or routine."""
    if item["priority"] == "overdue":
        return "overdue"
    if item["needs_review"]:
        return "review"
    return "urgent" if item["label"] == "Urgent" else "routine"


def _row_html(position: int, item: dict, selected: str | None) -> str:
    kind = row_kind(item)
    label_cls = "cxr-wl-lbl-urgent" if item["label"] == "Urgent" else "cxr-wl-lbl-nonurgent"
    review = '<span class="cxr-wl-badge cxr-wl-badge-review">needs review</span>' if item["needs_review"] else "–"
    priority = item["priority"]
    is_selected = item["key"] == selected
    return (
        f'<tr class="cxr-wl-row cxr-wl-{kind}{" cxr-wl-selected" if is_selected else ""}" '
        f'data-key="{_esc(item["key"])}" data-priority="{_esc(priority)}" tabindex="0" '
        f'aria-selected="{"true" if is_selected else "false"}">'
        f'<td class="cxr-wl-num">{position}</td><td><code>{_esc(item["key"])}</code></td>'
        f'<td class="{label_cls}">{_esc(item["label"])}</td><td>{review}</td>'
        f'<td class="cxr-wl-num">{float(item["score"]):.2f}</td>'
        f'<td class="cxr-wl-wait" title="received {_esc(item["received"])}">'
        f"{_esc(format_wait(item['waiting_s']))}</td>"
        f'<td><span class="cxr-wl-badge cxr-wl-badge-{_esc(priority)}">'
        f"{_esc(PRIORITY_BADGES.get(priority, priority))}</span></td></tr>"
    )


def worklist_html(items: list[dict], selected: str | None = None, max_wait_s: float | None = None) -> str:
    """The worklist as a table in the order given (:meth:`Worklist.items`' reading order), or the empty-list note."""
    if not items:
        return EMPTY_HTML
    rows = "".join(_row_html(i, item, selected) for i, item in enumerate(items, start=1))
    overdue = f"waiting over {format_wait(max_wait_s)}" if max_wait_s else "waiting too long"
    count = f"{len(items)} stud{'y' if len(items) == 1 else 'ies'}"
    return (
        '<div class="cxr-wl-scroll"><table class="cxr-wl-table"><thead><tr><th>#</th><th>key</th><th>label</th>'
        "<th>review</th><th>score</th><th>waiting</th><th>priority</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
        f'<div class="cxr-wl-caption">{count}, refreshed every {REFRESH_S:.0f} s. Priority: overdue = {overdue}; '
        "urgent = labelled Urgent or needs review; routine = the rest.</div>"
    )


def unavailable_html(exc: BaseException) -> str:
    """What the tab shows when the worklist database cannot be opened or read (never a traceback)."""
    return error_html(
        f"The worklist database could not be read ({type(exc).__name__}). Triage still works, and each "
        "result says when it could not be filed; ask the administrator to check CXRTRIAGE_WORKLIST_PATH.",
        title=UNAVAILABLE_TITLE,
    )


def crops_html(pred: Prediction) -> str:
    """The evidence regions of a stored result as a list (their thumbnails are not kept for long)."""
    if not pred.crops:
        return "<p><b>Evidence regions:</b> none in this result.</p>"
    items = "".join(
        f"<li>{_esc(crop_caption(i, c))}: box at x {c.x}, y {c.y}, {c.w} × {c.h} px</li>"
        for i, c in enumerate(pred.crops)
    )
    return f'<div class="cxr-wl-evidence"><b>Evidence regions</b><ul class="cxr-wl-crops">{items}</ul></div>'


def study_html(key: str, result: dict | None) -> str:
    """One study's stored result, drawn by the Triage tab's renderers, with the disclaimer."""
    if result is None:
        return error_html("This study is no longer on the worklist.", title=f"Study {key}")
    try:
        pred = Prediction.model_validate(result)
    except ValueError:
        log.warning("worklist: the stored result of a study could not be read")
        return error_html(
            "The stored result of this study could not be read (it may come from another version).",
            title=f"Study {key}",
        )
    return (
        f'<div class="cxr-wl-study"><div class="cxr-wl-head">Study <code>{_esc(key)}</code> · stored result</div>'
        f"{label_html(pred)}{explanation_html(pred)}{warnings_html(pred)}{crops_html(pred)}{provenance_html(pred)}"
        f"{disclaimer_html()}</div>"
    )


def filed_html(key: str | None) -> str:
    """The line under a fresh Triage result that names its worklist key (empty when it was not filed)."""
    return f'<p class="cxr-filed">Filed on the worklist (Worklist tab) as <code>{_esc(key)}</code>.</p>' if key else ""


def worklist_view(open_worklist: Callable[[], Worklist], selected: str | None = None) -> str:
    """The table as it stands now, or a clear message when the database cannot be opened or read."""
    try:
        worklist = open_worklist()
        return worklist_html(worklist.items(), selected, worklist.max_wait_s)
    except (OSError, sqlite3.Error) as exc:
        log.error("worklist read failed in the web UI: %s", type(exc).__name__)
        return unavailable_html(exc)


def study_view(open_worklist: Callable[[], Worklist], key: str) -> str:
    """One study's stored result, or a clear message when the database cannot be opened or read."""
    try:
        result = open_worklist().result(key)
    except (OSError, sqlite3.Error) as exc:
        log.error("worklist read failed in the web UI: %s", type(exc).__name__)
        return unavailable_html(exc)
    return study_html(key, result)


def file_ui_result(open_worklist: Callable[[], Worklist], pred: Prediction) -> tuple[Prediction, str | None]:
    """File a result of the Triage button under a random key, as ``POST /predict`` files one without an accession:
    stored with crop URLs (server paths stay private); a failed write comes back as a warning on the result."""
    return file_on_worklist(open_worklist, pred, stored=with_crop_urls(pred))


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


def build_worklist_tab(open_worklist: Callable[[], Worklist], tab: gr.Tab, others: list[gr.Tab]) -> None:
    """The tab's components and events, inside the ``tab`` being built. It refreshes every :data:`REFRESH_S` while
    it is shown (the timer stops when one of ``others`` is selected) and on its Refresh button."""
    gr = require("gradio", extra="demo", purpose="the web UI")

    def table(selected: str | None) -> str:
        return worklist_view(open_worklist, selected)

    def shown(selected: str | None) -> tuple:
        return table(selected), gr.Timer(active=True)

    def open_study(selected: str | None, evt: gr.EventData) -> tuple:
        key = getattr(evt, "key", None) if evt is not None else None
        if not isinstance(key, str) or not re.match(KEY_PATTERN, key):
            return gr.update(), selected, gr.update()
        detail = study_view(open_worklist, key)
        return detail, key, table(key)

    # gradio finds the event-data parameter by its annotation; with postponed annotations and gradio imported here,
    # it could not resolve the string, so the annotation is given as the class itself
    open_study.__annotations__ = {"selected": str | None, "evt": gr.EventData, "return": tuple}

    with gr.Row(equal_height=False):
        gr.HTML(
            '<p class="cxr-wl-intro">Triaged studies in reading order: Urgent or needs review first (overdue ones at '
            "the top), then the rest (overdue ones first), oldest first. Click a row to open its stored result.</p>",
            scale=8,
        )
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=110, elem_id="cxr-wl-refresh")
    # the open study's key, kept in the page (a hidden textbox, not gr.State: session state makes the page hold a
    # heartbeat connection open, so the page never goes network-idle, which the browser tests and the video wait for)
    selected = gr.Textbox(visible=False, elem_id="cxr-wl-selected")
    timer = gr.Timer(REFRESH_S, active=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=7, min_width=460):
            worklist = gr.HTML("", elem_id="cxr-worklist", js_on_load=ROW_CLICK_JS)
        with gr.Column(scale=5, min_width=420):
            study = gr.HTML(STUDY_PLACEHOLDER_HTML, elem_id="cxr-wl-study")

    quiet: dict[str, Any] = {"api_name": False, "show_progress": "hidden"}
    tab.select(shown, inputs=selected, outputs=[worklist, timer], **quiet)
    for other in others:
        other.select(lambda: gr.Timer(active=False), outputs=timer, **quiet)
    timer.tick(table, inputs=selected, outputs=worklist, **quiet)
    refresh.click(table, inputs=selected, outputs=worklist, api_name=False)
    worklist.click(open_study, inputs=selected, outputs=[study, selected, worklist], api_name=False)
