"""A monitoring report as people read it: plain text for the terminal, and HTML (the alerts, the table of figures
and one small inline SVG plot per figure over time, the reference's level dashed and the window shaded) for the
UI's Monitoring tab and ``cxrtriage monitor --html``. SVG drawn here, so the page needs no plotting library and
loads nothing from outside."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from html import escape

from cxrtriage.monitoring.drift import Figure, Report
from cxrtriage.monitoring.monitor import Bucket

__all__ = ["PLOTS", "report_html", "report_page", "report_text", "svg_plot"]

#: what is plotted over time: title, the bucket's value, the figure whose reference level is drawn, percent or not
PLOTS: tuple[tuple[str, Callable[[Bucket], float | None], str, bool], ...] = (
    ("Urgent rate", lambda b: b.urgent_rate, "urgent_rate", True),
    ("Review rate", lambda b: b.review_rate, "review_rate", True),
    ("Refusal rate", lambda b: b.refusal_rate, "refusal_rate", True),
    ("Mean score", lambda b: b.mean_score, "score_psi", False),
    ("Similarity to training cases", lambda b: b.mean_similarity, "similarity", False),
    ("Mean grey of the films", lambda b: b.image_mean, "image_mean", False),
)
_W, _H, _PAD = 320, 120, 28


def _value(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.3g}"


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report_text(report: Report) -> str:
    """What ``cxrtriage monitor`` prints: the reference, the window, the alerts, then every figure."""
    recent = report.recent
    refused = sum(r["outcome"] == "refused" for r in recent)
    lines = [
        f"Reference: {report.reference.description}",
        f"Window: {_stamp(report.window_start)} to {_stamp(report.window_end)} ({report.window_label}): "
        f"{len(recent)} results ({len(recent) - refused} triaged, {refused} refused)",
    ]
    if report.ks_method:
        lines.append(f"Two-sample test: Kolmogorov-Smirnov, {report.ks_method}")
    lines.append("")
    alerts = report.alerts
    lines.append(
        f"ALERTS ({len(alerts)}):" if alerts else "No alerts: every figure that could be judged is within its limit."
    )
    lines += [f"  ! {f.message}" for f in alerts]
    lines += ["", "Figures:"]
    for f in report.figures:
        mark = {"alert": "ALERT", "ok": "ok", "too_few": "n/a"}.get(f.status, f.status)
        lines.append(f"  [{mark:5}] {f.message}  (limit: {f.limit})")
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines)


def svg_plot(
    title: str,
    buckets: Sequence[Bucket],
    get: Callable[[Bucket], float | None],
    reference: float | None,
    window_start: dt.datetime,
    percent: bool,
) -> str:
    """One small line plot of ``get`` over the buckets; a break where a bucket is empty, the reference dashed, the
    recent window shaded."""
    if not buckets:
        return ""
    values = [get(b) for b in buckets]
    known = [v for v in values if v is not None] + ([reference] if reference is not None else [])
    low, high = (0.0, 1.0) if percent else (min(known, default=0.0), max(known, default=1.0))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    t0, t1 = buckets[0].start, buckets[-1].start
    span = max((t1 - t0).total_seconds(), 1.0)

    def x(when: dt.datetime) -> float:
        return _PAD + (_W - 2 * _PAD) * max(0.0, min(1.0, (when - t0).total_seconds() / span))

    def y(v: float) -> float:
        return _H - _PAD + (2 * _PAD - _H) * (v - low) / (high - low)

    parts = [
        f'<svg class="cxr-mon-plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{escape(title)} over time" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{x(window_start):.1f}" y="{_PAD - 8}" width="{_W - _PAD - x(window_start):.1f}" '
        f'height="{_H - 2 * _PAD + 8}" fill="#f1e7d0"><title>recent window</title></rect>',
        f'<text x="{_PAD}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<text x="2" y="{_PAD:.0f}" font-size="9">{escape(_value(high, percent))}</text>',
        f'<text x="2" y="{_H - _PAD:.0f}" font-size="9">{escape(_value(low, percent))}</text>',
        f'<text x="{_PAD}" y="{_H - 6}" font-size="9">{t0:%m-%d %H:%M}</text>',
        f'<text x="{_W - _PAD}" y="{_H - 6}" font-size="9" text-anchor="end">{t1:%m-%d %H:%M}</text>',
    ]
    if reference is not None:
        parts.append(
            f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{y(reference):.1f}" y2="{y(reference):.1f}" '
            f'stroke="#777" stroke-dasharray="4 3"><title>reference {escape(_value(reference, percent))}'
            "</title></line>"
        )
    segment: list[str] = []
    for bucket, v in [*zip(buckets, values), (None, None)]:
        if v is None or bucket is None:
            if len(segment) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="#1f4e8c" stroke-width="1.5" points="{" ".join(segment)}"/>'
                )
            segment = []
            continue
        segment.append(f"{x(bucket.start):.1f},{y(v):.1f}")
        parts.append(
            f'<circle cx="{x(bucket.start):.1f}" cy="{y(v):.1f}" r="2" fill="#1f4e8c">'
            f"<title>{bucket.start:%Y-%m-%d %H:%M}: {escape(_value(v, percent))} ({bucket.n} results)"
            "</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _figure_row(f: Figure) -> str:
    status = {"alert": "ALERT", "ok": "ok", "too_few": "too few"}.get(f.status, f.status)
    percent = f.key.endswith("_rate") or f.key.startswith("agreement")
    return (
        f'<tr class="cxr-mon-{escape(f.status)}"><td>{escape(status)}</td><td>{escape(f.name)}</td>'
        f"<td>{escape(_value(f.reference, percent))}</td><td>{escape(_value(f.recent, percent))}</td>"
        f"<td>{escape(f.limit)}</td><td>{escape(f.message)}</td></tr>"
    )


def report_html(report: Report, buckets: Sequence[Bucket]) -> str:
    """The report as an HTML fragment (the UI's Monitoring tab; :func:`report_page` wraps it as a file)."""
    by_key = {f.key: f for f in report.figures}
    recent = report.recent
    refused = sum(r["outcome"] == "refused" for r in recent)
    alerts = report.alerts
    head = (
        f'<div class="cxr-mon-alerts cxr-mon-has-alerts"><b>{len(alerts)} alert(s)</b><ul>'
        + "".join(f"<li>{escape(f.message)}</li>" for f in alerts)
        + "</ul></div>"
        if alerts
        else '<div class="cxr-mon-alerts"><b>No alerts</b>: every figure that could be judged is within '
        "its limit.</div>"
    )
    plots = "".join(
        svg_plot(title, buckets, get, by_key[key].reference if key in by_key else None, report.window_start, pct)
        for title, get, key, pct in PLOTS
    )
    ks = f"; two-sample test: Kolmogorov-Smirnov, {escape(report.ks_method)}" if report.ks_method else ""
    notes = "".join(f"<p class='cxr-mon-note'>Note: {escape(n)}</p>" for n in report.notes)
    return (
        '<div class="cxr-monitoring">'
        f"<p><b>Reference</b>: {escape(report.reference.description)}<br><b>Window</b>: "
        f"{escape(_stamp(report.window_start))} to {escape(_stamp(report.window_end))} ({escape(report.window_label)}):"
        f" {len(recent)} results ({len(recent) - refused} triaged, {refused} refused){ks}</p>"
        f"{head}<div class='cxr-mon-plots'>{plots}</div>"
        "<table class='cxr-mon-table'><thead><tr><th>status</th><th>figure</th><th>reference</th><th>recent</th>"
        "<th>limit</th><th>in words</th></tr></thead><tbody>"
        + "".join(_figure_row(f) for f in report.figures)
        + f"</tbody></table>{notes}</div>"
    )


MONITOR_CSS = """
.cxr-mon-alerts { padding: 8px 12px; border-radius: 6px; background: #e8f0e8; margin: 8px 0; }
.cxr-mon-has-alerts { background: #fde2e1; border: 1px solid #b3261e; }
.cxr-mon-plots { display: flex; flex-wrap: wrap; gap: 8px; }
.cxr-mon-table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
.cxr-mon-table td, .cxr-mon-table th { border: 1px solid #ccc; padding: 3px 6px; text-align: left; }
.cxr-mon-alert td:first-child { color: #b3261e; font-weight: bold; }
"""


def report_page(report: Report, buckets: Sequence[Bucket]) -> str:
    """A whole HTML file (``cxrtriage monitor --html``), self-contained and offline."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>cxrtriage monitoring</title>"
        f"<style>body {{ font-family: system-ui, sans-serif; margin: 16px; }} {MONITOR_CSS}</style></head><body>"
        f"<h1>cxrtriage monitoring</h1>{report_html(report, buckets)}</body></html>\n"
    )
