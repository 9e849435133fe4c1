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
ul.cxr-fb-history {list-style:none; margin:4px 0 0 0 !important; padding:0 !important; font-size:0.9rem;}
ul.cxr-fb-history li {border-bottom:1px solid #e2e2e2; padding:4px 0;}
ul.cxr-fb-history li.cxr-fb-current {font-weight:700;}
.cxr-fb-who {color:#555; font-weight:400; font-size:0.85rem;}
.cxr-fb-comment {font-weight:400; white-space:pre-wrap; overflow-wrap:anywhere;}
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
    """A study's assessments, the latest first and marked current (a list: the panel sits in a narrow column); a
    line saying there are none yet."""
    if not records:
        return '<p class="cxr-fb-note" id="cxr-fb-none">No reader has assessed this result yet.</p>'
    items = []
    for record in reversed(records):
        current = bool(record.get("current"))
        kind = "cxr-fb-agrees" if record["agrees"] else "cxr-fb-disagrees"
        when = record["time"].replace("T", " ").removesuffix("Z")
        finding = f" · finding: {_esc(record['finding'])}" if record.get("finding") else ""
        comment = f'<div class="cxr-fb-comment">{_esc(record["comment"])}</div>' if record.get("comment") else ""
        items.append(
            f'<li class="{"cxr-fb-current" if current else "cxr-fb-earlier"}" data-id="{record["id"]}">'
            f'<span class="{kind}">{_esc(verdict(record))}</span> (of {_esc(record["model_label"])}, version '
            f'{record["version"]}){finding}<div class="cxr-fb-who">{_esc(record["reader"])} · {_esc(when)} UTC'
            f"{' · current' if current else ''}</div>{comment}</li>"
        )
    return f'<ul class="cxr-fb-history">{"".join(items)}</ul>'


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
        f"result{'' if rates['n'] == 1 else 's'} · Urgent: {_share(rates['urgent'])} · "
        f"Non-Urgent: {_share(rates['non_urgent'])}</p>"
    )
