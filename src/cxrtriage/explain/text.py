"""The one-line explanation, built only from evidence the system actually has.

It states the score band, where the model's evidence lies in anatomical terms, and whether the prior report
agrees. A finding is named only from a finding output whose held-out AUC reached the naming bar
(:mod:`cxrtriage.backends.finding_probe`), on an Urgent result, e.g. "Urgent: lung opacity likely (0.81) in the
right lower zone"; otherwise findings appear only inside verbatim quotes of the prior report (provenance).
"""

from __future__ import annotations

from cxrtriage.decision import Decision
from cxrtriage.explain.evidence import EvidenceBox
from cxrtriage.explain.report import ReportAnalysis


def _where(boxes: list[EvidenceBox]) -> str:
    zones: list[str] = []
    for box in boxes:
        if box.region not in zones:
            zones.append(box.region)
    if not zones:
        return ""
    return zones[0] if len(zones) == 1 else ", ".join(zones[:-1]) + " and " + zones[-1]


def build_explanation(
    decision: Decision,
    boxes: list[EvidenceBox],
    report: ReportAnalysis | None,
    *,
    has_map: bool = True,
    finding: tuple[str, float] | None = None,
) -> str:
    """One line: label, score against the threshold (in the decision's own words), where the evidence is, what the
    prior report says. ``has_map`` is False for backends without an activation map (MedSigLIP), which localise
    nothing. ``finding`` (name, probability): a nameable finding output judged likely; it leads an Urgent line."""
    label, score, threshold, band = decision.label, decision.score, decision.threshold, decision.band
    where = _where(boxes)
    if finding is not None and label == "Urgent":
        name, p = finding
        parts = [
            f"{label}: {name} likely ({p:.2f})" + (f" in the {where}" if where else ""),
            f"{band} urgency score {score:.2f} (threshold {threshold:.2f})",
        ]
        where = ""
    else:
        parts = [f"{label}: {band} urgency score {score:.2f} (threshold {threshold:.2f})"]
    if where:
        verb = (
            "urgent-pattern evidence strongest in the"
            if label == "Urgent"
            else "weak urgent-pattern evidence, mostly in the"
        )
        parts.append(f"{verb} {where}")
    elif not has_map:
        parts.append("this model gives no localisation (no activation map), so no evidence region is shown")
    elif label == "Urgent" and len(parts) == 1:
        parts.append("no focal region stands out in the activation map")
    if report is not None and report.sentences:
        n_sup, n_con = len(report.supporting), len(report.contradicting)
        if n_sup:
            parts.append(f"prior report affirms an urgent finding ({n_sup} sentence{'s' if n_sup > 1 else ''} quoted)")
        elif n_con:
            parts.append("prior report denies urgent findings")
        elif report.uncertain:
            parts.append("prior report raises an urgent finding as uncertain")
    if decision.needs_review:
        parts.append("needs human review")
    return "; ".join(parts) + "."
