"""The one-line explanation, in the words a radiologist reads at a glance, built only from evidence the system has.

It opens with the label and what it means ("Urgent — likely abnormal", "Non-Urgent — no urgent finding detected",
or "Urgent — needs a radiologist's review: <the plain reason>"), then says where the model's evidence lies in
anatomical terms and what the prior report says. It carries no numbers: the score, the threshold and the other
values are fields of the result, which the web UI shows with their meaning behind its "Details" toggle; a bare
"0.39" at the reading station is noise. A finding is named only from a finding output whose held-out AUC reached the
naming bar (:mod:`cxrtriage.backends.finding_probe`), on an Urgent result, e.g. "Urgent — likely abnormal; suggests
lung opacity in the right lower zone"; otherwise findings appear only inside verbatim quotes of the prior report
(provenance).
"""

from __future__ import annotations

from cxrtriage.decision import PRIOR_REPORT, PRIOR_REPORT_NORMAL, URGENT, Decision
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


#: what a label means to the reader, by (label is Urgent, needs review)
NEEDS_REVIEW_SENSE = "needs a radiologist's review"
LIKELY_ABNORMAL_SENSE = "likely abnormal"
NO_URGENT_FINDING_SENSE = "no urgent finding detected"


def label_sense(label: str, needs_review: bool) -> str:
    """The label's meaning in words, shared by the explanation and the UI's banner so the two always agree."""
    if needs_review:
        return NEEDS_REVIEW_SENSE
    return LIKELY_ABNORMAL_SENSE if label == URGENT else NO_URGENT_FINDING_SENSE


def headline(decision: Decision) -> str:
    """The label and what it means, in words, with the plain reasons when a human must look."""
    sense = f"{decision.label} — {label_sense(decision.label, decision.needs_review)}"
    reasons = decision.review_summaries if decision.needs_review else []
    return sense + (": " + "; ".join(reasons) if reasons else "")


def _evidence(decision: Decision, boxes: list[EvidenceBox], has_map: bool, finding: tuple[str, float] | None) -> str:
    where = _where(boxes)
    if decision.label != URGENT:
        return f"the model's weak evidence (not a finding) lies mostly in the {where}" if where else ""
    if finding is not None:
        return f"suggests {finding[0]}" + (f" in the {where}" if where else "")
    if where:
        return f"evidence in the {where}"
    if not has_map:
        return "this model gives no localisation (no activation map), so no evidence region is shown"
    return "no focal region stands out in the model's evidence"


def _prior_report(decision: Decision, report: ReportAnalysis | None) -> str:
    """What the prior report says, unless a review reason already said it."""
    if report is None or not report.sentences:
        return ""
    if any(r.kind in (PRIOR_REPORT, PRIOR_REPORT_NORMAL) for r in decision.reasons):
        return ""
    n_sup = len(report.supporting)
    if n_sup:
        also = " also" if decision.label == URGENT else ""
        return f"the prior report{also} describes an urgent finding ({n_sup} sentence{'s' if n_sup > 1 else ''} quoted)"
    if report.uncertain:
        return "the prior report raises an urgent finding as uncertain"
    if report.contradicting:
        return "the prior report describes no urgent finding"
    return ""


def build_explanation(
    decision: Decision,
    boxes: list[EvidenceBox],
    report: ReportAnalysis | None,
    *,
    has_map: bool = True,
    finding: tuple[str, float] | None = None,
) -> str:
    """The headline (:func:`headline`), then where the evidence is and what the prior report says. ``has_map`` is
    False for backends without an activation map (MedSigLIP), which localise nothing. ``finding`` (name,
    probability): a nameable finding output judged likely; it is named on an Urgent result only."""
    rest = [p for p in (_evidence(decision, boxes, has_map, finding), _prior_report(decision, report)) if p]
    if not rest:
        return headline(decision) + "."
    if decision.needs_review:  # the reasons end the first sentence; the rest is a second one
        text = "; ".join(rest)
        return f"{headline(decision)}. {text[0].upper()}{text[1:]}."
    return f"{headline(decision)}; " + "; ".join(rest) + "."
