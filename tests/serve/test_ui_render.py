"""What the result page says, checked on the text it renders (no browser)."""

from __future__ import annotations

import html
import re

import pytest

from cxrtriage.backends.base import OperatingPointNotes
from cxrtriage.backends.finding_probe import NAME_MIN_AUC
from cxrtriage.schema import DISCLAIMER, Crop, Finding, ModelInfo, Prediction, Provenance
from cxrtriage.serve.ui.details import ModelFacts, details_html
from cxrtriage.serve.ui.render import (
    anatomy_line,
    crop_caption,
    explanation_html,
    label_html,
    provenance_html,
)


def _prediction(view: str | None) -> Prediction:
    image = {"source_format": "dicom", "width": 512, "height": 512}
    if view is not None:
        image["view_position"] = view
    return Prediction(
        label="Urgent",
        score=0.8,
        explanation="Urgent.",
        crops=[],
        provenance=[],
        threshold=0.2,
        review_band=(0.1, 0.15),
        needs_review=False,
        disclaimer=DISCLAIMER,
        model=ModelInfo(name="m", version="1", sha256="0" * 64, backend="bundled"),
        timings_ms={},
        warnings=[],
        image=image,
        anatomy={"lungs_found": ["right", "left"], "cardiothoracic_ratio": 0.58},
    )


@pytest.mark.parametrize(
    "view, caveat",
    [("PA", None), ("pa", None), ("AP", "an AP film magnifies the heart"), (None, "the view is not recorded")],
)
def test_the_magnification_caveat_only_where_it_can_apply(view, caveat):
    """A PA film's cardiothoracic ratio is shown plain; an AP film, or one whose view is not recorded, says why the
    heart may look large (a caveat shown on every film would teach readers to ignore it)."""
    line = anatomy_line(_prediction(view))
    assert line.startswith("Anatomy: both lungs found; cardiothoracic ratio 0.58")
    if caveat is None:
        assert "magnif" not in line
    else:
        assert caveat in line


def test_prior_report_quotes_say_what_the_report_states_about_the_finding():
    """'supports' / 'contradicts' read as agreeing with the AI or not; the page says what the report states."""
    quotes = [
        Provenance(source="prior_report", snippet=text, relation=relation)
        for text, relation in (
            ("Right effusion.", "supports"),
            ("No pneumothorax.", "contradicts"),
            ("Possible consolidation.", "uncertain"),
        )
    ]
    html = provenance_html(_prediction("PA").model_copy(update={"provenance": quotes}))
    for words in ("report: present", "report: absent", "report: uncertain"):
        assert words in html
    assert ">supports<" not in html and ">contradicts<" not in html


FACTS = ModelFacts(
    notes=OperatingPointNotes(
        calibration="validation films of every source",
        threshold_rule="highest calibrated score with sensitivity >= 0.95 on each validation source",
        review_band_rule="50% bootstrap interval of the threshold",
    ),
    likely_above={"lung opacity": 0.5, "pneumothorax": 0.4},
)


def _result(**update) -> Prediction:
    crop = Crop(x=10, y=20, w=30, h=40, thumb_path="/x.png", region="right lower zone", strength=0.81)
    findings = [
        Finding(name="lung opacity", probability=0.66, held_out_auc=0.725, named_in_explanation=False),
        Finding(name="pneumothorax", probability=0.62, held_out_auc=0.81, named_in_explanation=True),
    ]
    cases = [Provenance(source="training_case:nih/0001.png", snippet="similar case labelled Urgent", similarity=0.93)]
    base = _prediction("PA").model_copy(
        update={
            "score": 0.81,
            "threshold": 0.3,
            "review_band": (0.22, 0.4),
            "crops": [crop],
            "findings": findings,
            "provenance": cases,
            "explanation": "Urgent — likely abnormal; evidence in the right lower zone.",
        }
    )
    return base.model_copy(update=update)


def _text(markup: str) -> str:
    """What a reader sees: inline tags dropped, block tags as spaces, entities decoded."""
    inline = re.sub(r"</?(span|b|code)\b[^>]*>", "", markup)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline)).strip())


def test_the_main_view_is_words_and_every_number_in_it_says_what_it_is():
    """Banner, explanation, crop captions and provenance without Details: no bare score, threshold, strength, AUC
    or similarity; the one number left (the cardiothoracic ratio) carries its meaning."""
    pred = _result()
    banner = _text(label_html(pred))
    assert banner == "URGENT — likely abnormal"
    main = " ".join(
        [banner, _text(explanation_html(pred, FACTS)), _text(provenance_html(pred, similar_cases=False))]
        + [crop_caption(i, c) for i, c in enumerate(pred.crops)]
    )
    assert "Evidence in the right lower zone" in main and "Box 1 — right lower zone" in main
    numbers = re.findall(r"\d\.\d+", main)
    assert numbers == ["0.58"], main  # the cardiothoracic ratio only
    assert "cardiothoracic ratio 0.58 (the heart's width over the chest's" in main
    for bare in ("0.81", "0.30", "0.725", "0.93", "0.66", "strength", "AUC"):
        assert bare not in main, bare


def test_only_a_finding_that_may_be_named_is_named_in_the_main_view_and_in_words():
    pred = _result()
    main = _text(explanation_html(pred, FACTS))
    assert "Finding output: suggests pneumothorax." in main  # AUC 0.81 >= the bar, 0.62 >= its 0.4
    assert "lung opacity" not in main  # AUC 0.725 is below the bar: only in Details
    quiet = pred.model_copy(update={"findings": [pred.findings[1].model_copy(update={"probability": 0.1})]})
    assert "does not suggest pneumothorax" in _text(explanation_html(quiet, FACTS))
    assert "Finding output" not in _text(explanation_html(pred, None))  # without the model's metadata: none


def test_details_give_every_number_with_its_meaning_from_the_result_and_the_metadata():
    pred = _result()
    markup = details_html(pred, FACTS)
    assert markup.startswith('<details class="cxr-details"') and " open" not in markup.split(">", 1)[0]
    text = _text(markup)
    assert "Score 0.81 — the model's estimated chance that this film is urgent" in text
    assert "Calibrated on validation films of every source." in text
    assert "0.81 is at or above the threshold and outside the review band: Urgent on the score alone." in text
    assert "Threshold 0.30 — a film scoring at or above it is labelled Urgent; set for sensitivity" in text
    assert "highest calibrated score with sensitivity >= 0.95" in text
    assert "Review band 0.22 up to 0.40" in text and "50% bootstrap interval of the threshold" in text
    assert "Box 1, right lower zone: strength 0.81 — the share of the model's evidence for urgency" in text
    assert "lung opacity: output 0.66" in text and "Held-out AUC 0.725" in text
    assert f"names a finding only when its held-out AUC reaches {NAME_MIN_AUC:.2f}, and this one's does not" in text
    assert "pneumothorax: output 0.62" in text and "Held-out AUC 0.810" in text
    assert "(it suggests the finding at or above 0.40)" in text
    assert text.count("Not named on the page") == 1  # the pneumothorax output reaches the bar
    assert "nih/0001.png" in text and "0.93" in text and "it is not agreement on a diagnosis" in text
    # without the model's metadata nothing is made up: the page says it is not recorded
    bare = _text(details_html(pred, None))
    assert "how it was set is not recorded in this model's metadata" in bare
    assert "How it was calibrated is not recorded" in bare


@pytest.mark.parametrize(
    "score, words",
    [
        (0.31, "0.31 lies inside the review band: too close to the threshold to call"),
        (0.05, "0.05 is below the threshold and the review band: Non-Urgent on the score alone."),
    ],
)
def test_details_say_where_the_score_falls_by_the_decision_rule(score, words):
    label = "Urgent" if score > 0.2 else "Non-Urgent"
    assert words in _text(details_html(_result(score=score, label=label, needs_review=score > 0.2), FACTS))


def test_two_values_that_would_round_alike_are_shown_with_the_results_decimals():
    text = _text(details_html(_result(score=0.1265, threshold=0.1269, review_band=(0.2, 0.3), label="Non-Urgent")))
    assert "Score 0.1265" in text and "Threshold 0.1269" in text


def test_an_escalated_label_is_explained_in_details():
    text = _text(details_html(_result(score=0.05, label="Urgent", needs_review=True), FACTS))
    assert "Non-Urgent on the score alone. The label is Urgent for another reason" in text


@pytest.mark.parametrize(
    "label, review, cls, banner",
    [
        ("Urgent", False, "cxr-urgent", "URGENT — likely abnormal"),
        ("Urgent", True, "cxr-urgent", "URGENT — needs a radiologist's review"),
        ("Non-Urgent", True, "cxr-amber", "NON-URGENT — needs a radiologist's review"),
        ("Non-Urgent", False, "cxr-nonurgent", "NON-URGENT — no urgent finding detected"),
    ],
)
def test_the_banner_says_the_label_in_words_and_urgent_stays_red(label, review, cls, banner):
    """Urgent needing review stays red (amber would read as less urgent); nothing negative is green."""
    markup = label_html(_result(label=label, needs_review=review))
    assert f'class="cxr-label {cls}"' in markup and _text(markup) == banner


def test_no_reassuring_green_on_a_negative_result_or_an_absent_finding():
    from cxrtriage.serve.ui.render import UI_CSS

    for rule in (".cxr-nonurgent", ".cxr-rel-contradicts"):
        colour = re.search(re.escape(rule) + r" \{background:(#[0-9a-f]{6});\}", UI_CSS).group(1)
        red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert not (green > red and green > blue), (rule, colour)


def test_the_explanation_under_the_banner_does_not_repeat_it():
    pred = _result(
        label="Urgent",
        needs_review=True,
        explanation="Urgent — needs a radiologist's review: the score is too close to the threshold for the model "
        "to call. Evidence in the right lower zone.",
    )
    text = _text(explanation_html(pred, FACTS))
    assert text.startswith("The score is too close to the threshold for the model to call. Evidence in the right")
    medgemma = pred.model_copy(update={"explanation": "Right lower zone opacity, likely pneumonia."})
    assert _text(explanation_html(medgemma)).startswith("Right lower zone opacity, likely pneumonia.")
