"""The site profile folder ``cxrtriage commission`` writes: ``site.json`` (what the engine applies, the sample and
the figures), ``commissioning.json`` (the figures and the command), ``commissioning.html`` (the same numbers with the
ROC, the calibration diagrams and the score histograms as data-URI PNGs, so the file stands alone) and
``reference.jsonl`` (one monitor record per commissioning film, the drift monitor's baseline: scores, labels and
review flags as the profile gives them, image statistics; no identifier, path or file name)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage import decision
from cxrtriage.evaluation import figures as plots
from cxrtriage.evaluation.commissioning import REFERENCE_KEYS, Commissioned
from cxrtriage.evaluation.metrics import to_jsonable
from cxrtriage.files import private_dir
from cxrtriage.monitoring.record import parse_record
from cxrtriage.site.profile import FIGURES_FILE, REFERENCE_FILE, REPORT_FILE, SITE_FILE


def write_site(done: Commissioned, out: Path, command: str) -> list[Path]:
    """Write the four files into ``out`` (created owner-only); returns their paths."""
    out = Path(out)
    private_dir(out)
    s = done.sample
    sample = {
        "n": done.profile.n_cases,
        "urgent": int(sum(s.labels)),
        "non_urgent": len(s.labels) - int(sum(s.labels)),
        "refused_by_gate": len(s.refused),
        "unreadable_rows": len(s.unreadable),
    }
    body = {"command": command, "name": done.profile.name, "created": done.profile.created, "sample": sample}
    figures = {**body, "base_model": done.profile.base_model, "figures": done.figures, "in_sample": done.in_sample}
    site = {**done.profile.to_dict(), "sample": sample, "target_sensitivity": done.figures["target_sensitivity"]}
    site["figures"] = done.figures
    paths = [out / SITE_FILE, out / FIGURES_FILE, out / REFERENCE_FILE, out / REPORT_FILE]
    _write_json(paths[0], site)
    _write_json(paths[1], figures)
    paths[2].write_text("".join(json.dumps(r) + "\n" for r in reference_records(done)), encoding="utf-8")
    paths[3].write_text(report_html(done, figures), encoding="utf-8")
    return paths


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def reference_records(done: Commissioned) -> list[dict[str, Any]]:
    """The monitor records of the commissioning films (interface 2 of issue 25), in :data:`REFERENCE_KEYS`."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fit, s, sha = done.fit, done.sample, done.profile.base_model["sha256"]
    rows = []
    for score, sim, image in zip(done.fit.scores(s.cases()), s.similarity, s.images):
        d = decision.decide(float(score), fit.threshold, fit.review_band)
        values = (now, "commissioning", "triaged", d.label, d.score, d.needs_review, sim, image, done.profile.name, sha)
        rows.append(dict(zip(REFERENCE_KEYS, values)))
    for image in s.refused:
        values = (now, "commissioning", "refused", None, None, True, None, image, done.profile.name, sha)
        rows.append(dict(zip(REFERENCE_KEYS, values)))  # a refusal goes to a human, as the monitor records it
    unreadable = [row for row in rows if parse_record(row) is None]
    if unreadable:  # the monitor would skip them: a reference it cannot read is no reference
        raise ValueError(f"{len(unreadable)} reference records do not parse as monitor records")
    return rows


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plots.pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _charts(done: Commissioned) -> list[tuple[str, str]]:
    """(caption, data URI) of the ROC, the calibration diagrams and the score histograms."""
    cases, f = done.sample.cases(), done.figures
    y, base, site = cases.labels, cases.base_scores, done.out_of_fold.scores
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    plots.roc_plot({"base model": (y, base)}, thresholds={"base model": f["base"]["threshold"]}, ax=axes[0])
    if f["adopted"] == "site_head":  # recalibration keeps the base model's order: its ROC is the base curve
        plots.roc_plot({"site head, cross-validated": (y, site)}, ax=axes[0])
    plots.reliability_plot(y, base, name="base calibration", ax=axes[1])
    plots.reliability_plot(y, site, name="site calibration (cross-validated)", ax=axes[2])
    roc = "ROC (recalibration keeps the base model's ranking)" if f["adopted"] != "site_head" else "ROC"
    charts = [(f"{roc} and calibration before (base) and after (site, out-of-fold scores)", _png(fig))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    plots.score_histogram(
        y, base, threshold=f["base"]["threshold"], review_band=f["base"]["review_band"], name="base", ax=axes[0]
    )
    plots.score_histogram(
        y, site, threshold=done.fit.threshold, review_band=done.fit.review_band, name="site (out-of-fold)", ax=axes[1]
    )
    charts.append(("Scores by true class, with the threshold and the review band", _png(fig)))
    return charts


_ROWS = (
    ("AUC (95% bootstrap CI)", lambda r: f"{r['auc']:.3f} ({r['auc_ci95'][0]:.3f}-{r['auc_ci95'][1]:.3f})"),
    ("sensitivity (exact 95% CI)", lambda r: _rate(r, "sensitivity")),
    ("specificity (exact 95% CI)", lambda r: _rate(r, "specificity")),
    ("PPV", lambda r: _num(r.get("ppv"))),
    ("NPV", lambda r: _num(r.get("npv"))),
    ("urgent rate", lambda r: _num(r["urgent_rate"])),
    ("review rate", lambda r: _num(r["review_rate"])),
    ("ECE", lambda r: _num(r["ece"])),
    *(
        (
            f"specificity at sensitivity {t} (threshold chosen on these films)",
            lambda r, t=t: _num(r["specificity_at_sensitivity"][t]),
        )
        for t in ("0.95", "0.98", "0.99")
    ),
)


def _num(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def _rate(r: dict, key: str) -> str:
    lo, hi = r[f"{key}_ci95"]
    return f"{_num(r[key])} ({lo:.3f}-{hi:.3f})"


def report_html(done: Commissioned, data: dict[str, Any]) -> str:
    f, p, esc = done.figures, done.profile, html.escape
    columns = [c for c in ("base", "recalibration", "site_head") if c in f]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{esc(label)}</td>" + "".join(f"<td>{esc(cell(f[c]))}</td>" for c in columns) + "</tr>"
        for label, cell in _ROWS
    )
    sens, more = f["sensitivity"], f["sensitivity"]["more_urgent_needed"]
    at_rate = more["at_observed_rate"]
    needs = (
        "the lower bound already reaches the target"
        if sens["lower_bound_reaches_target"]
        else f"at least {more['if_all_found']} more urgent films, every one of them found, for the lower bound "
        f"to reach {f['target_sensitivity']:g}; "
        + (
            f"{at_rate} more at the observed rate"
            if at_rate is not None
            else "never at the observed rate, which is not above the target"
        )
    )
    charts = "".join(
        f"<figure><img alt='{esc(c)}' src='{uri}'><figcaption>{esc(c)}</figcaption></figure>"
        for c, uri in _charts(done)
    )
    s = data["sample"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Commissioning: {esc(p.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
td,th{{border:1px solid #ccc;padding:4px 8px}}table{{border-collapse:collapse}}img{{max-width:100%}}
.note{{color:#555}}</style></head><body>
<h1>Site commissioning: {esc(p.name)}</h1>
<p>{esc(p.created)} · base model {esc(p.base_model["name"])} {esc(p.base_model["version"])}
(sha256 {esc(p.base_model["sha256"][:12])}) · {s["n"]} films triaged ({s["urgent"]} urgent, {s["non_urgent"]}
non-urgent), {s["refused_by_gate"]} refused by the input gate, {s["unreadable_rows"]} rows unreadable
· command: <code>{esc(data["command"])}</code></p>
<p>The profile adopts <b>{esc(f["adopted"])}</b>: threshold {p.threshold:.4f}, review band [{p.review_band[0]:.4f},
{p.review_band[1]:.4f}) for sensitivity &ge; {f["target_sensitivity"]:g}.</p>
<p>Sensitivity at the site's operating point, {esc(sens["of"])}: {sens["found"]} of {sens["urgent"]} urgent films
({sens["value"]:.3f}, exact 95% CI {sens["ci95"][0]:.3f}-{sens["ci95"][1]:.3f}); {esc(needs)}.</p>
<table><tr><th></th>{head}</tr>{body}</table>
<p class="note">base: {esc(f["base"]["how"])}. recalibration / site_head: {esc(f["recalibration"]["how"])}.
Specificity at a fixed sensitivity picks its threshold on the same films (labelled so). On the films the final profile
was fitted to (optimistic): sensitivity {done.in_sample["sensitivity"]:.3f},
specificity {done.in_sample["specificity"]:.3f}.</p>
{charts}</body></html>
"""
