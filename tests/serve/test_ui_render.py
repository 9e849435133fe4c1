"""What the result page says, checked on the text it renders (no browser)."""

from __future__ import annotations

import pytest

from cxrtriage.schema import DISCLAIMER, ModelInfo, Prediction, Provenance
from cxrtriage.serve.ui.render import anatomy_line, provenance_html


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
