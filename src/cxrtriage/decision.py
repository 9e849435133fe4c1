"""The decision: the one place that labels a result and sends it to a human.

A calibrated score against the threshold and the review band gives the label and the review flag. Then anything
that doubts the result escalates it here, and only here, each with a reason a reader sees as a warning:

* an atypical frontal film (the frontal-view check, the view probe, an embedding far from the training films):
  labelled Urgent and sent for review, whatever the score (safety first);
* a prior report that affirms an urgent finding on a film scored Non-Urgent: sent for review, the label stays
  (a prior report describes an earlier study, so it cannot decide the current one);
* a prior report that describes no urgent finding (it negates them, or calls the chest normal) on a film labelled
  Urgent: sent for review, the label stays (the disagreement is uncertainty, see :func:`with_prior_report`);
* an explainer (MedGemma) whose own reading disagrees with the label: sent for review, the label stays.

Nothing lowers a label or clears a review flag. Decisions are made on the values a result reports (4 decimals), so
anyone re-scoring the JSON gets exactly the pipeline's decisions. The plain words of each reason for review
(``Reason.summary``, which the explanation's headline gives) and the score band in words (``Decision.band``) come
from here too, so each rule and its wording have one home.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

#: decimals of the score, threshold and review band in every result
REPORTED_DECIMALS = 4

Label = Literal["Urgent", "Non-Urgent"]
URGENT: Label = "Urgent"
NON_URGENT: Label = "Non-Urgent"

#: why a result went to a human, by the stage that doubted it
ATYPICAL_FILM = "atypical_film"
PRIOR_REPORT = "prior_report"
PRIOR_REPORT_NORMAL = "prior_report_normal"
EXPLAINER = "explainer"
REVIEW_BAND = "review_band"

PRIOR_REPORT_WARNING = (
    "The prior report describes an urgent finding; this film scores Non-Urgent — review this film against the "
    "prior report"
)
PRIOR_REPORT_NORMAL_WARNING = (
    "The prior report describes no urgent finding; this film is triaged Urgent — compare with the prior study"
)

#: each review reason in plain words, for the headline of the explanation ("needs a radiologist's review: ...")
REVIEW_BAND_SUMMARY = "the score is too close to the threshold for the model to call"
PRIOR_REPORT_SUMMARY = "the prior report describes an urgent finding that this film does not score as urgent"
PRIOR_REPORT_NORMAL_SUMMARY = "the prior report describes no urgent finding, but this film is triaged Urgent"
EXPLAINER_SUMMARY = "the explainer's own reading disagrees with the label"

#: a measured value in parentheses inside an atypical-film reason, e.g. "(view probe 0.62 > 0.55)"; the warning
#: keeps it, the headline's plain reason does not
_MEASURED = re.compile(r"\s*\([^()]*\d[^()]*\)")


def in_review_band(score: float, review_band: tuple[float, float]) -> bool:
    """The review rule: a score in ``[low, high)`` is too close to the uncertain threshold to leave to the model.
    The label, the review flag and the explanation's "borderline" all come from this one test."""
    low, high = review_band
    return low <= score < high


def reported(value: float) -> float:
    """A score or threshold as results report it; decisions are made on these values, not the raw floats."""
    return round(float(value), REPORTED_DECIMALS)


@dataclass(frozen=True)
class Reason:
    """Why a result goes to a human: ``kind`` (one of the constants above), the warning a reader sees (empty
    when the result says it elsewhere, e.g. the explainer's own warnings, or the score in the band) and
    ``summary``, the reason in plain words that the explanation's headline gives ("needs a radiologist's review:
    <summary>"), so a reader learns why before reading any number."""

    kind: str
    warning: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Decision:
    """Label, review flag and the reasons for review, plus the wording of the score for the explanation."""

    label: Label
    needs_review: bool
    reasons: tuple[Reason, ...]
    score: float
    threshold: float
    review_band: tuple[float, float]

    @property
    def band(self) -> str:
        """The score in words: ``borderline`` inside the review band, else ``high`` / ``moderately high`` above the
        threshold and ``low`` below it."""
        if in_review_band(self.score, self.review_band):
            return "borderline"
        if self.score >= self.threshold:
            return "high" if self.score >= max(self.review_band[1], 0.5 * (1 + self.threshold)) else "moderately high"
        return "low"

    @property
    def review_summaries(self) -> list[str]:
        """The plain reasons for review, in the order they were made, each once."""
        out: list[str] = []
        for r in self.reasons:
            if r.summary and r.summary not in out:
                out.append(r.summary)
        return out

    @property
    def warnings(self) -> list[str]:
        """The readers' warnings of every escalation, in the order they were made."""
        return [r.warning for r in self.reasons if r.warning]

    def _escalated(self, reason: Reason, *, urgent: bool = False) -> Decision:
        return replace(self, label=URGENT if urgent else self.label, needs_review=True, reasons=(*self.reasons, reason))


def decide(
    score: float, threshold: float, review_band: tuple[float, float], *, atypical_film: list[str] | tuple[str, ...] = ()
) -> Decision:
    """Label and review flag of a score, then the image's own doubts. Safety first: a score in the review band is
    labelled Urgent even below the threshold, because the threshold itself is uncertain there; an atypical
    frontal film (``atypical_film``: the check's reasons, in words) is labelled Urgent for human review."""
    score, threshold = reported(score), reported(threshold)
    band = (reported(review_band[0]), reported(review_band[1]))
    in_band = in_review_band(score, band)
    decision = Decision(
        label=URGENT if score >= threshold or in_band else NON_URGENT,
        needs_review=in_band,
        reasons=(Reason(REVIEW_BAND, summary=REVIEW_BAND_SUMMARY),) if in_band else (),
        score=score,
        threshold=threshold,
        review_band=band,
    )
    for why in atypical_film:
        decision = decision._escalated(
            Reason(
                ATYPICAL_FILM,
                f"atypical frontal radiograph: {why}; labelled Urgent for human review",
                summary=f"the film looks atypical, as {_MEASURED.sub('', why)}",
            ),
            urgent=True,
        )
    return decision


def with_prior_report(
    decision: Decision, affirms_urgent_finding: bool, describes_no_urgent_finding: bool = False
) -> Decision:
    """The image and the prior report disagree, in either direction: the result goes for review, the label stays
    (the report describes an earlier study, so it can neither clear nor condemn this one).

    * ``affirms_urgent_finding`` on a film scored Non-Urgent: the model may have missed what the report saw.
    * ``describes_no_urgent_finding`` (the report negates every urgent finding it mentions, or calls the chest
      normal, and affirms or hedges none) on a film labelled Urgent: either the film shows something new since the
      prior study, or the model raised a false alarm. An Urgent film is read first anyway, but the two sources
      disagree, and a disagreement is uncertainty: safety first, it also sets ``needs_review``, so a reader (and a
      client of the JSON) knows that a human must compare the two studies rather than accept either. The flag only
      ever adds scrutiny: the label stays Urgent and the film keeps its place at the top of the worklist.
    """
    if affirms_urgent_finding and decision.label == NON_URGENT:
        return decision._escalated(Reason(PRIOR_REPORT, PRIOR_REPORT_WARNING, PRIOR_REPORT_SUMMARY))
    if describes_no_urgent_finding and not affirms_urgent_finding and decision.label == URGENT:
        reason = Reason(PRIOR_REPORT_NORMAL, PRIOR_REPORT_NORMAL_WARNING, PRIOR_REPORT_NORMAL_SUMMARY)
        return decision._escalated(reason)
    return decision


def with_second_opinion(decision: Decision, disagrees: bool) -> Decision:
    """An explainer whose reading disagrees with the label sends the result for review (the label stays; the
    explainer's own warnings say what it saw)."""
    return decision._escalated(Reason(EXPLAINER, summary=EXPLAINER_SUMMARY)) if disagrees else decision
