"""Decision rule, review band and explanation text: pure functions, no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from cxrtriage import decision
from cxrtriage.decision import decide
from cxrtriage.errors import InvalidImageError, NotAChestXrayError
from cxrtriage.explain.evidence import EvidenceBox
from cxrtriage.explain.report import analyze_prior_report
from cxrtriage.explain.text import build_explanation
from cxrtriage.imaging.gate import check_embedding, check_header_and_statistics
from cxrtriage.imaging.load import ImageMeta


@pytest.mark.parametrize(
    "score,expected",
    [
        (0.10, ("Non-Urgent", False)),
        (0.24, ("Urgent", True)),
        (0.30, ("Urgent", True)),
        (0.35, ("Urgent", True)),
        (0.40, ("Urgent", False)),
        (0.95, ("Urgent", False)),
    ],
)
def test_review_band_is_labelled_urgent(score, expected):
    d = decide(score, threshold=0.30, review_band=(0.22, 0.40))
    assert (d.label, d.needs_review) == expected
    assert d.band == "borderline" if expected[1] else d.band != "borderline"


def test_atypical_film_is_urgent_for_review_with_its_reason():
    d = decide(0.05, 0.30, (0.22, 0.40), atypical_film=["only one lung was found"])
    assert (d.label, d.needs_review) == ("Urgent", True)
    assert d.warnings == ["atypical frontal radiograph: only one lung was found; labelled Urgent for human review"]
    assert [r.kind for r in d.reasons] == [decision.ATYPICAL_FILM]


def test_prior_report_and_second_opinion_escalate_but_never_change_the_label():
    low = decide(0.05, 0.30, (0.22, 0.40))
    assert (low.label, low.needs_review, low.reasons) == ("Non-Urgent", False, ())
    flagged = decision.with_prior_report(low, affirms_urgent_finding=True)
    assert (flagged.label, flagged.needs_review) == ("Non-Urgent", True)
    assert flagged.warnings == [decision.PRIOR_REPORT_WARNING]
    assert decision.with_prior_report(low, affirms_urgent_finding=False) == low
    urgent = decide(0.9, 0.30, (0.22, 0.40))
    assert decision.with_prior_report(urgent, affirms_urgent_finding=True) == urgent  # already goes first
    second = decision.with_second_opinion(urgent, disagrees=True)
    assert (second.label, second.needs_review, second.warnings) == ("Urgent", True, [])
    assert decision.with_second_opinion(low, disagrees=False) == low


def test_decisions_are_made_on_the_reported_values():
    # 0.29996 is reported as 0.3000 and is therefore at the threshold, exactly as a re-scorer of the JSON sees it
    d = decide(0.29996, 0.30, (0.10, 0.20))
    assert (d.label, d.score) == ("Urgent", 0.3)


def _meta(**kw) -> ImageMeta:
    return ImageMeta(source_format="dicom", width=512, height=512, **kw)


def _chest_like() -> np.ndarray:
    y, x = np.mgrid[0:512, 0:512] / 512.0
    return (0.5 + 0.3 * np.sin(3 * x) * np.cos(2 * y)).astype(np.float32)


@pytest.mark.parametrize(
    "meta,message",
    [
        (_meta(modality="CT"), "CT image"),
        (_meta(modality="DX", view_position="LL"), "lateral"),
        (_meta(modality="CR", body_part="KNEE"), "KNEE"),
    ],
)
def test_header_gate(meta, message):
    with pytest.raises(NotAChestXrayError, match=message):
        check_header_and_statistics(_chest_like(), meta)


def test_statistics_gate_rejects_colour_tiny_and_elongated_images():
    with pytest.raises(NotAChestXrayError, match="colour"):
        check_header_and_statistics(_chest_like(), _meta(colourfulness=0.3))
    with pytest.raises(InvalidImageError, match="at least 64"):
        check_header_and_statistics(np.random.rand(32, 32).astype(np.float32), _meta())
    with pytest.raises(NotAChestXrayError, match="aspect ratio"):
        check_header_and_statistics(np.random.rand(100, 400).astype(np.float32), _meta())


def test_embedding_gate():
    check_embedding(0.9, 0.5)
    check_embedding(None, 0.5)
    with pytest.raises(NotAChestXrayError, match="does not resemble"):
        check_embedding(0.2, 0.5)


def test_explanation_uses_zones_and_report_but_names_no_finding():
    box = EvidenceBox(x=10, y=300, w=100, h=100, strength=0.8, peak_xy=(50, 350), region="right lower zone")
    report = analyze_prior_report("Right lower lobe pneumonia. No pneumothorax.")
    text = build_explanation(decide(0.91, 0.3, (0.22, 0.4)), [box], report)
    assert text.startswith("Urgent — likely abnormal; evidence in the right lower zone")
    assert "prior report also describes an urgent finding" in text
    assert "pneumonia" not in text.lower() and "pneumothorax" not in text.lower()
    borderline = build_explanation(decide(0.25, 0.3, (0.22, 0.4)), [], None)
    assert borderline.startswith("Urgent — needs a radiologist's review: the score is too close to the threshold")


@pytest.mark.parametrize(
    "score, atypical, start",
    [
        (0.91, (), "Urgent — likely abnormal"),
        (0.05, (), "Non-Urgent — no urgent finding detected"),
        (0.25, (), "Urgent — needs a radiologist's review: the score is too close to the threshold"),
        (
            0.05,
            ("it may be a lateral view (view probe 0.62 > 0.55)",),
            "Urgent — needs a radiologist's review: the film looks atypical, as it may be a lateral view.",
        ),
    ],
)
def test_the_explanation_reads_in_plain_words_without_bare_numbers(score, atypical, start):
    """The reading station sees the label, what it means and why a human must look, before any number; the
    numbers live in the result's fields (and the UI's Details), never bare in the one line."""
    box = EvidenceBox(x=10, y=300, w=100, h=100, strength=0.81, peak_xy=(50, 350), region="right lower zone")
    text = build_explanation(decide(score, 0.3, (0.22, 0.4), atypical_film=list(atypical)), [box], None)
    assert text.startswith(start), text
    assert not any(ch.isdigit() for ch in text), text


def test_a_normal_prior_report_on_an_urgent_film_is_a_disagreement_sent_for_review():
    """The other direction of the image/report disagreement: the label stays Urgent, the result goes to review and
    the reader is told in plain words to compare the studies."""
    normal = analyze_prior_report("No acute cardiopulmonary abnormality. No pneumothorax or pleural effusion.")
    assert normal.describes_no_urgent_finding and not normal.has_affirmed_urgent_finding
    urgent = decide(0.9, 0.30, (0.22, 0.40))
    flagged = decision.with_prior_report(urgent, normal.has_affirmed_urgent_finding, normal.describes_no_urgent_finding)
    assert (flagged.label, flagged.needs_review) == ("Urgent", True)
    assert flagged.warnings == [decision.PRIOR_REPORT_NORMAL_WARNING]
    assert "describes no urgent finding" in decision.PRIOR_REPORT_NORMAL_WARNING
    assert [r.kind for r in flagged.reasons] == [decision.PRIOR_REPORT_NORMAL]
    text = build_explanation(flagged, [], normal)
    assert text.startswith("Urgent — needs a radiologist's review: the prior report describes no urgent finding")
    # a Non-Urgent film with a normal prior report agrees with it: nothing to review
    low = decide(0.05, 0.30, (0.22, 0.40))
    assert decision.with_prior_report(low, False, True) == low
    # a report that hedges or affirms a finding is not a normal report, whatever else it negates
    for text_ in ("No pneumothorax. Possible pneumonia.", "No pneumothorax. Small left effusion."):
        assert not analyze_prior_report(text_).describes_no_urgent_finding
    # a report silent on urgent findings says nothing either way
    assert not analyze_prior_report("Degenerative changes of the spine.").describes_no_urgent_finding
