"""The numbers behind a result, each with its meaning in words, inside a "Details" toggle (an HTML ``<details>``).

Why a toggle: at the reading station a bare "score 0.39" or "held-out AUC 0.725" is noise, and a number near a
threshold invites over-reading; the main view says the label, what it means and where the evidence is, in words
(:mod:`cxrtriage.explain.text`). Whoever wants to check opens Details and finds every number with what it means and
where it comes from: the score and how it was calibrated, where it falls against the threshold and the review band
(by the decision's own rule, :func:`cxrtriage.decision.in_review_band`), how the threshold and band were set, each
evidence box's strength, each finding output with its held-out AUC (and why an output below the naming bar is not
named), and the similar training cases. Every value is read from the :class:`~cxrtriage.schema.Prediction` or the
model's metadata (:class:`ModelFacts`, from the engine's declared
:class:`~cxrtriage.backends.base.OperatingPointNotes` and finding probes); nothing here types a number in. Without the
metadata (a stored result, a fake engine) the page says that how they were set is not recorded here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxrtriage.backends.base import OperatingPointNotes
from cxrtriage.backends.finding_probe import NAME_MIN_AUC
from cxrtriage.decision import in_review_band
from cxrtriage.schema import Finding, Prediction

DETAILS_SUMMARY = "Details — the numbers behind this result, and what each means"

DETAILS_CSS = """
.cxr-details {border:1px solid #cbd5e0; border-radius:8px; padding:6px 12px; background:#f8fafc;}
.cxr-details > summary {cursor:pointer; font-weight:700; font-size:1rem; padding:4px 0;}
.cxr-details ul {margin:6px 0 6px 18px;}
.cxr-details li {margin:4px 0;}
.cxr-details .cxr-num {font-weight:700; font-variant-numeric:tabular-nums;}
.cxr-details h4 {margin:10px 0 2px 0 !important; font-size:0.98rem;}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class ModelFacts:
    """What the model's metadata says about the numbers of its results: how the score was calibrated and the
    threshold and review band were set, and each finding output's probability above which it suggests the finding."""

    notes: OperatingPointNotes = field(default_factory=OperatingPointNotes)
    likely_above: Mapping[str, float] = field(default_factory=dict)


def model_facts(engine: Any) -> ModelFacts | None:
    """The facts of an engine's classifier (:class:`cxrtriage.pipeline.Triage`); None for an engine that does not
    declare them (a test double), so the page says they are not recorded instead of failing."""
    try:
        backend = engine.backend
        notes = backend.operating_point_notes
        likely = {p.name: float(p.likely_above) for p in backend.finding_probes}
    except (AttributeError, TypeError):
        return None
    return ModelFacts(
        notes=notes if isinstance(notes, OperatingPointNotes) else OperatingPointNotes(), likely_above=likely
    )


def _n(value: float, digits: int = 2) -> str:
    return f'<span class="cxr-num">{value:.{digits}f}</span>'


def _digits(*values: float) -> int:
    """2 decimals, or the result's 4 when 2 would show two different values alike (a score of 0.1265 beside a
    threshold of 0.1269 must not read as "0.13 is below 0.13")."""
    distinct = set(values)
    return 2 if len({f"{v:.2f}" for v in distinct}) == len(distinct) else 4


def is_nameable(finding: Finding) -> bool:
    """A finding output that may be named in the main view: its held-out AUC reaches the naming bar."""
    return finding.named_in_explanation and finding.held_out_auc is not None and finding.held_out_auc >= NAME_MIN_AUC


def nameable_findings_line(pred: Prediction, facts: ModelFacts | None) -> str:
    """The main view's finding outputs, in words and only those that may be named ("Finding output: suggests lung
    opacity."); empty when none may be named or the model's metadata (the probability that suggests it) is unknown."""
    words = []
    for f in pred.findings:
        if not is_nameable(f) or facts is None or f.name not in facts.likely_above:
            continue
        words.append(("suggests " if f.probability >= facts.likely_above[f.name] else "does not suggest ") + f.name)
    return f"Finding output: {'; '.join(words)}." if words else ""


def _threshold_why(rule: str | None) -> str:
    if not rule:
        return "how it was set is not recorded in this model's metadata"
    if "sensitivity" in rule:
        return f"set for sensitivity, to miss few urgent films at the cost of more false alarms: {_esc(rule)}"
    return f"set as: {_esc(rule)}"


def _score_items(pred: Prediction, notes: OperatingPointNotes) -> list[str]:
    low, high = pred.review_band
    d = _digits(pred.score, pred.threshold, low, high)
    score, threshold, band_low, band_high = _n(pred.score, d), _n(pred.threshold, d), _n(low, d), _n(high, d)
    calibrated = (
        f"Calibrated on {_esc(notes.calibration)}."
        if notes.calibration
        else "How it was calibrated is not recorded in this model's metadata."
    )
    items = [
        f"Score {score} — the model's estimated chance that this film is urgent; it is not a measure of how "
        f"severe a finding is. {calibrated}"
    ]
    in_band = in_review_band(pred.score, pred.review_band)
    if in_band:
        where = (
            f"{score} lies inside the review band: too close to the threshold to call, so the film is labelled "
            "Urgent and sent for review."
        )
    elif pred.score >= pred.threshold:
        where = f"{score} is at or above the threshold and outside the review band: Urgent on the score alone."
    else:
        where = f"{score} is below the threshold and the review band: Non-Urgent on the score alone."
    on_score = "Urgent" if in_band or pred.score >= pred.threshold else "Non-Urgent"
    if pred.label != on_score:
        where += f" The label is {_esc(pred.label)} for another reason: see the explanation and the warnings."
    items.append(where)
    why = _threshold_why(notes.threshold_rule)
    items.append(f"Threshold {threshold} — a film scoring at or above it is labelled Urgent; {why}.")
    band_rule = f" How it was set: {_esc(notes.review_band_rule)}." if notes.review_band_rule else ""
    items.append(
        f"Review band {band_low} up to {band_high} — a score from {band_low} up to (not including) {band_high} is "
        f"labelled Urgent and sent for review, because the threshold itself is uncertain there.{band_rule}"
    )
    return items


def _evidence_items(pred: Prediction) -> list[str]:
    items = []
    for i, crop in enumerate(pred.crops):
        where = _esc(crop.region or "evidence region")
        if crop.source == "medgemma":
            items.append(f"Box {i + 1}, {where}: proposed by MedGemma (generative, unverified); it has no strength.")
        elif crop.strength is not None:
            items.append(
                f"Box {i + 1}, {where}: strength {_n(crop.strength)} — the share of the model's evidence for urgency "
                "(the positive part of its activation map) that lies inside this box; 1 would be all of it. "
                "It is not a probability of disease."
            )
    return items


def _finding_items(pred: Prediction, facts: ModelFacts | None) -> list[str]:
    items = []
    for f in pred.findings:
        name = _esc(f.name)
        text = f"{name}: output {_n(f.probability)} — this finding output's estimated probability of {name}"
        if facts is not None and f.name in facts.likely_above:
            text += f" (it suggests the finding at or above {_n(facts.likely_above[f.name])})"
        text += "."
        if f.held_out_auc is not None:
            text += (
                f' Held-out AUC <span class="cxr-num">{f.held_out_auc:.3f}</span> — how well it separates films with '
                "and without the finding on patients it was never fitted on (0.5 is chance, 1 is perfect)."
            )
        if not is_nameable(f):
            bar = f'<span class="cxr-num">{NAME_MIN_AUC:.2f}</span>'
            text += f" Not named on the page: this tool names a finding only when its held-out AUC reaches {bar}" + (
                ", and this one's does not." if f.held_out_auc is not None else ", and this one has none."
            )
        items.append(text)
    return items


def _case_label(snippet: str) -> str:
    for label in ("Non-Urgent", "Urgent"):
        if f"labelled {label}" in snippet:
            return label
    return ""


def similar_cases_html(pred: Prediction) -> str:
    """The most similar training films, with what the similarity and their labels mean (and do not mean)."""
    cases = [p for p in pred.provenance if p.source.startswith("training_case:")]
    if not cases:
        return "<p>No similar-case index in this model.</p>"
    rows = "".join(
        f"<tr><td><code>{_esc(p.source.split(':', 1)[1])}</code></td><td>{_esc(_case_label(p.snippet))}</td>"
        f"<td>{'' if p.similarity is None else f'{p.similarity:.2f}'}</td></tr>"
        for p in cases
    )
    return (
        '<p class="cxr-cases-note">Training films whose image features, as the model sees them, are closest to this '
        "one. Similarity is the cosine of the two feature vectors (1 = the same features); it is not agreement on a "
        "diagnosis. Their labels are those training films' own, not a reading of this film.</p>"
        "<table><thead><tr><th>training film (ID only)</th><th>its training label</th><th>similarity</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def details_html(pred: Prediction, facts: ModelFacts | None = None) -> str:
    """The Details toggle (closed by default): every number of the result with its meaning."""
    notes = facts.notes if facts is not None else OperatingPointNotes()
    sections = [("Score, threshold and review band", _score_items(pred, notes))]
    evidence = _evidence_items(pred)
    if evidence:
        sections.append(("Evidence boxes (numbered as on the image)", evidence))
    findings = _finding_items(pred, facts)
    if findings:
        sections.append(("Finding outputs", findings))
    body = "".join(
        f"<h4>{_esc(title)}</h4><ul>{''.join(f'<li>{item}</li>' for item in items)}</ul>" for title, items in sections
    )
    cases = f'<h4>Most similar training cases</h4><div class="cxr-prov">{similar_cases_html(pred)}</div>'
    return (
        f'<details class="cxr-details" id="cxr-details-toggle"><summary>{_esc(DETAILS_SUMMARY)}</summary>'
        f"{body}{cases}</details>"
    )
