"""What the Worklist tab draws, as pure functions of the worklist's rows (tested without a browser): the table in
reading order, the line above it ("Studies 1–50 of 1,234 · 12 urgent"), and one study's stored result, drawn by the
Triage tab's renderers (:mod:`cxrtriage.serve.ui.render`) so that a stored result looks like a fresh one.

A study sent again shows its latest version; when its reading changed between versions, the review column says how
(``changed: Urgent → Non-Urgent``), the row keeps the urgent colours if any version was urgent (the worklist keeps it
with the urgent studies), and the stored result's warning says so.

Privacy: the table shows what the hospital's own reading list shows (accession, study date and time, view,
modality) and the triage; it holds no name or patient ID. The study date is shown here and never logged.
"""

from __future__ import annotations

import html
import logging

from cxrtriage.schema import Prediction
from cxrtriage.serve.ui.details import details_html
from cxrtriage.serve.ui.render import (
    crop_caption,
    disclaimer_html,
    error_html,
    explanation_html,
    label_html,
    provenance_html,
    warnings_html,
)

log = logging.getLogger(__name__)

#: seconds between the tab's own refreshes (only while the tab is shown)
REFRESH_S = 5.0
#: the filter's choices: (what the reader sees, the worklist's status)
FILTERS = (("Active", "active"), ("Reported", "reported"), ("All", "all"))
#: what an empty list says, per filter
EMPTY_TEXT = {
    "active": "No studies to read. Studies arrive here once they are triaged: through <code>POST /predict</code>, "
    "the Triage tab of this page, or the DICOM node; reported ones move to <b>Reported</b>.",
    "reported": "No reported studies yet. Open a study and press <b>Mark reported</b> once it is read.",
    "all": "The worklist is empty. Studies arrive here once they are triaged: through <code>POST /predict</code>, "
    "the Triage tab of this page, or the DICOM node.",
}
STUDY_PLACEHOLDER_HTML = (
    '<div class="cxr-placeholder">Click a row of the worklist to open that study\'s stored result here '
    "(it is then marked <b>opened</b>).</div>"
)
UNAVAILABLE_TITLE = "The worklist is unavailable"
NO_VALUE = "—"

#: the Worklist tab's table and study view (``serve/ui/worklist.py`` adds the feedback panel's for the page)
TABLE_CSS = """
.cxr-wl-intro {margin:0; color:#444;}
#cxr-wl-toolbar {align-items:center;}
#cxr-wl-summary p {font-weight:600; margin:0 0 0 8px; text-align:left;}
#cxr-worklist .cxr-wl-scroll {overflow-x:auto;}
#cxr-worklist table.cxr-wl-table {border-collapse:collapse !important; width:100%; font-size:0.9rem;
  margin:0 !important; border:none !important;}
#cxr-worklist .cxr-wl-table :is(th, td) {border:none !important; border-bottom:1px solid #e2e2e2 !important;
  padding:5px 5px !important; vertical-align:middle; white-space:nowrap; text-align:left;}
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
#cxr-worklist tr.cxr-wl-reported td {color:#555; background:#f7f7f7;}
#cxr-worklist tr.cxr-wl-reported td:first-child {box-shadow:inset 6px 0 0 #38a169;}
#cxr-worklist td.cxr-wl-late {color:#9b2c2c; font-weight:700;}
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
.cxr-wl-badge-review {background:#c05621;}
.cxr-wl-badge-changed {background:#6b46c1;}
.cxr-wl-state {display:inline-block; padding:0 6px; border-radius:4px; font-size:0.8rem; border:1px solid #a0aec0;}
.cxr-wl-state-new {background:#ebf8ff; border-color:#3182ce; color:#2c5282; font-weight:700;}
.cxr-wl-state-opened {background:#fefcbf; border-color:#b7791f; color:#744210;}
.cxr-wl-state-reported {background:#f0fff4; border-color:#38a169; color:#276749;}
.cxr-wl-caption {color:#555; font-size:0.85rem; margin-top:6px;}
.cxr-wl-head {font-size:1.1rem; font-weight:700; margin:0 0 6px 0;}
.cxr-wl-facts {color:#444; font-size:0.92rem;}
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


def study_when(item: dict) -> str:
    """The study date and time from the header (``2026-12-02 14:05``), the date alone, or ``—``."""
    date, time = item.get("study_date"), item.get("study_time")
    return f"{date} {time}" if date and time else date or NO_VALUE


def row_kind(item: dict) -> str:
    """The row's colour: reported (grey: no longer waiting), overdue, then needs-review (amber, like the label
    line), Urgent, or routine."""
    if item.get("state") == "reported":
        return "reported"
    if item["priority"] == "overdue":
        return "overdue"
    if item["needs_review"]:
        return "review"
    if item["label"] == "Urgent":
        return "urgent"
    return "review" if item.get("ever_urgent") else "routine"  # once urgent: amber until reported


def review_cell(item: dict) -> str:
    """The review column: ``needs review``, and ``changed: Urgent → Non-Urgent`` when the reading changed between
    versions of the study; ``–`` when neither."""
    badges = ['<span class="cxr-wl-badge cxr-wl-badge-review">needs review</span>'] if item["needs_review"] else []
    if item.get("label_changed"):
        count = item.get("versions") or 2
        badges.append(
            f'<span class="cxr-wl-badge cxr-wl-badge-changed" title="the reading changed between the {count} versions '
            f'of this study">changed: {_esc(item["label_changed"])}</span>'
        )
    return " ".join(badges) or "–"


def state_badge(item: dict) -> str:
    state = item.get("state") or "new"
    since = item.get("state_changed") or item.get("received", "")
    return f'<span class="cxr-wl-state cxr-wl-state-{_esc(state)}" title="since {_esc(since)}">{_esc(state)}</span>'


def wait_cell(item: dict, max_wait_s: float | None) -> str:
    """The waiting column: the time since the study arrived, red when overdue; ``—`` once it is reported (it no
    longer waits; the time it was reported is in the tooltip)."""
    received = _esc(item["received"])
    if item.get("state") == "reported":
        return f'<td class="cxr-wl-wait" title="received {received}; reported {_esc(item.get("state_changed"))}">—</td>'
    late = item["priority"] == "overdue"
    title = f"received {received}" + (
        f"; overdue: waiting over {format_wait(max_wait_s)}" if late and max_wait_s else ""
    )
    return (
        f'<td class="cxr-wl-wait{" cxr-wl-late" if late else ""}" title="{_esc(title)}">'
        f"{_esc(format_wait(item['waiting_s']))}</td>"
    )


def _row_html(position: int, item: dict, selected: str | None, max_wait_s: float | None) -> str:
    kind = row_kind(item)
    label_cls = "cxr-wl-lbl-urgent" if item["label"] == "Urgent" else "cxr-wl-lbl-nonurgent"
    review = review_cell(item)
    is_selected = item["key"] == selected
    state = item.get("state") or "new"
    return (
        f'<tr class="cxr-wl-row cxr-wl-{kind}{" cxr-wl-selected" if is_selected else ""}" '
        f'data-key="{_esc(item["key"])}" data-priority="{_esc(item["priority"])}" data-state="{_esc(state)}" '
        f'tabindex="0" aria-selected="{"true" if is_selected else "false"}">'
        f'<td class="cxr-wl-num">{position}</td>'
        f'<td><code title="key {_esc(item["key"])}">{_esc(item.get("accession") or item["key"])}</code></td>'
        f"<td>{_esc(study_when(item))}</td><td>{_esc(item.get('view') or NO_VALUE)}</td>"
        f"<td>{_esc(item.get('modality') or NO_VALUE)}</td>{wait_cell(item, max_wait_s)}"
        f'<td class="{label_cls}" title="score {float(item["score"]):.2f}">{_esc(item["label"])}</td><td>{review}</td>'
        f"<td>{state_badge(item)}</td></tr>"
    )


def worklist_html(
    items: list[dict],
    selected: str | None = None,
    max_wait_s: float | None = None,
    *,
    first: int = 1,
    status: str = "active",
) -> str:
    """The rows of one page as a table in the order given (:meth:`Worklist.items`' reading order), numbered from
    ``first`` (their place in the whole list), or what an empty list of ``status`` says."""
    if not items:
        return f'<div class="cxr-placeholder" id="cxr-wl-empty">{EMPTY_TEXT.get(status, EMPTY_TEXT["all"])}</div>'
    rows = "".join(_row_html(i, item, selected, max_wait_s) for i, item in enumerate(items, start=first))
    overdue = f"waiting over {format_wait(max_wait_s)}" if max_wait_s else "waiting too long"
    return (
        '<div class="cxr-wl-scroll"><table class="cxr-wl-table"><thead><tr><th>#</th><th>accession</th>'
        "<th>study date</th><th>view</th><th>modality</th><th>waiting</th><th>label</th><th>review</th>"
        "<th>state</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
        f'<div class="cxr-wl-caption">Rows: red = Urgent, amber = needs review, dark red with a red wait = overdue '
        f"({overdue}), grey bar = routine, green bar = reported; <i>changed</i> = the study was sent again and its "
        "reading changed (it stays amber, with the urgent studies, if any version was urgent). State: new → opened "
        f"(when a reader opens it) → reported. Hover a label for its score. Refreshed every {REFRESH_S:.0f} s.</div>"
    )


def summary_html(listing: dict) -> str:
    """The line above the table: ``Studies 1–50 of 1,234 · 12 urgent`` (the urgent count is the whole list's)."""
    total, shown = listing["total"], len(listing["items"])
    if not total:
        return '<p id="cxr-wl-summary-text">No studies</p>'
    first = (listing["page"] - 1) * listing["per_page"] + 1
    where = f"Studies {first:,}–{first + shown - 1:,} of {total:,}" if shown else f"Page past the end of {total:,}"
    page = f" · page {listing['page']:,} of {listing['pages']:,}" if listing["pages"] > 1 else ""
    return f'<p id="cxr-wl-summary-text">{where} · {listing["urgent_total"]:,} urgent{page}</p>'


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


def _versions_fact(item: dict) -> str:
    """`` · version 2 (changed: Urgent → Non-Urgent)`` for a study filed more than once, else nothing."""
    if (item.get("versions") or 1) < 2:
        return ""
    changed = f" (changed: {_esc(item['label_changed'])})" if item.get("label_changed") else ""
    return f" · version {int(item['versions'])}{changed}"


def study_html(key: str, result: dict | None, item: dict | None = None) -> str:
    """One study's stored result, drawn by the Triage tab's renderers, with the disclaimer and the same Details toggle
    (how the model set its threshold is not stored with a result, so that part says 'not recorded'); ``item`` (its
    row) adds the accession, study date, view, modality and state to the heading."""
    name = (item or {}).get("accession") or key
    if result is None:
        return error_html("This study is no longer on the worklist.", title=f"Study {name}")
    try:
        pred = Prediction.model_validate(result)
    except ValueError:
        log.warning("worklist: the stored result of a study could not be read")
        return error_html(
            "The stored result of this study could not be read (it may come from another version).",
            title=f"Study {name}",
        )
    facts = ""
    if item is not None:
        facts = (
            f'<div class="cxr-wl-facts">study date {_esc(study_when(item))} · view {_esc(item.get("view") or NO_VALUE)}'
            f" · {_esc(item.get('modality') or NO_VALUE)} · state {state_badge(item)}{_versions_fact(item)}</div>"
        )
    return (
        f'<div class="cxr-wl-study" data-key="{_esc(key)}"><div class="cxr-wl-head">Study <code>{_esc(name)}</code> · '
        f"stored result</div>{facts}{label_html(pred)}{explanation_html(pred)}{warnings_html(pred)}"
        f"{crops_html(pred)}{provenance_html(pred)}{details_html(pred)}{disclaimer_html()}</div>"
    )


def filed_html(key: str | None) -> str:
    """The line under a fresh Triage result that names its worklist key (empty when it was not filed)."""
    return f'<p class="cxr-filed">Filed on the worklist (Worklist tab) as <code>{_esc(key)}</code>.</p>' if key else ""
