"""What the reader-feedback panel and the worklist's agreement line draw, as pure functions (tested without a
browser): a study's assessment history, the answer to a Save, and the readers' agreement with the triage.

Everything a reader typed (their name, the comment) is escaped; agreement rates are shown with the number of studies
they rest on, and a class nobody has assessed yet says so instead of showing a rate.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["FEEDBACK_CSS", "agreement_html", "history_html", "saved_html"]

FEEDBACK_CSS = """
.cxr-fb-head {font-weight:700; font-size:1.05rem; margin:0;}
.cxr-fb-note {color:#555; font-size:0.88rem; margin:2px 0 0 0;}
.cxr-fb-saved {background:#f0fff4; border-left:4px solid #38a169; padding:6px 10px; border-radius:4px;}
table.cxr-fb-history {border-collapse:collapse !important; width:100%; font-size:0.88rem; border:none !important;
  margin:4px 0 0 0 !important;}
table.cxr-fb-history :is(td, th) {border:none !important; border-bottom:1px solid #e2e2e2 !important;
  padding:4px 6px !important; text-align:left; vertical-align:top;}
table.cxr-fb-history tr.cxr-fb-current td {font-weight:700;}
.cxr-fb-disagrees {color:#9b2c2c;}
.cxr-fb-agrees {color:#276749;}
#cxr-wl-agreement p {margin:0; color:#444; font-size:0.92rem;}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def verdict(record: Mapping[str, Any]) -> str:
    """``disagrees: Non-Urgent`` / ``agrees: Urgent``: what the reader said, in words."""
    return f"{'agrees' if record['agrees'] else 'disagrees'}: {record['label']}"


def history_html(records: list[dict[str, Any]]) -> str:
    """A study's assessments, the latest first and marked current; a line saying there are none yet."""
    if not records:
        return '<p class="cxr-fb-note" id="cxr-fb-none">No reader has assessed this result yet.</p>'
    rows = []
    for record in reversed(records):
        mark = " (current)" if record.get("current") else ""
        kind = "cxr-fb-agrees" if record["agrees"] else "cxr-fb-disagrees"
        rows.append(
            f'<tr class="{"cxr-fb-current" if record.get("current") else "cxr-fb-earlier"}" data-id="{record["id"]}">'
            f"<td>{_esc(record['time'].replace('T', ' ').removesuffix('Z'))} UTC{mark}</td>"
            f"<td>{_esc(record['reader'])}</td>"
            f'<td class="{kind}">{_esc(verdict(record))} (of {_esc(record["model_label"])}, version '
            f"{record['version']})</td><td>{_esc(record.get('finding') or '—')}</td>"
            f"<td>{_esc(record.get('comment') or '')}</td></tr>"
        )
    return (
        '<table class="cxr-fb-history"><thead><tr><th>When</th><th>Reader</th><th>Assessment</th><th>Finding</th>'
        f"<th>Comment</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def saved_html(record: Mapping[str, Any]) -> str:
    """The answer to a Save: what was recorded, under whose name."""
    return (
        f'<p class="cxr-fb-saved" role="status">Saved: {_esc(record["reader"])} {_esc(verdict(record))} '
        f"(the result said {_esc(record['model_label'])}).</p>"
    )


def _share(rate: float | None) -> str:
    return "not yet assessed" if rate is None else f"{100 * rate:.0f}%"


def agreement_html(rates: Mapping[str, Any] | None) -> str:
    """The worklist's line: how often readers agreed with the triage (each assessed study's current assessment)."""
    if rates is None:
        return '<p id="cxr-wl-agreement-text">Reader agreement: unavailable (the worklist could not be read)</p>'
    if not rates["n"]:
        return '<p id="cxr-wl-agreement-text">Reader agreement: no result has been assessed yet</p>'
    return (
        f'<p id="cxr-wl-agreement-text">Readers agreed with {_share(rates["overall"])} of {rates["n"]:,} assessed '
        f"results · Urgent: {_share(rates['urgent'])} · Non-Urgent: {_share(rates['non_urgent'])}</p>"
    )
