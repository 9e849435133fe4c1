"""The frontal-view check built on the lung segmentation: refuse only what is clearly not a frontal chest film,
send every doubtful frontal film to a human.

* Refused (NotAChestXrayError): an image whose coarse layout is unlike a chest film's AND that does not show a
  typical pair of lungs (photographs, screenshots, other body parts that the statistics gate let through); an
  image whose layout is far from every chest film whatever the masks show; a lateral view (the view probe,
  after the model: :mod:`cxrtriage.backends.view_probe`) that does not show a typical pair of lungs, or that does
  but scores above the probe's higher two-lung cut-off.
* Triaged, labelled Urgent with ``needs_review`` and the reason: a film with a typical pair of lungs but an unusual
  layout or embedding (ICU films with lines and tubes, rotation, collimation, a missing costophrenic angle), a
  lung field not found on an image that otherwise looks like a chest film (a white-out hemithorax is a sick
  patient), or a view-probe score between the review and the refusal cut-offs.
"""

from __future__ import annotations

from cxrtriage.anatomy.measure import Anatomy
from cxrtriage.errors import NotAChestXrayError

#: beyond max_layout_residual * this factor an image is refused whatever the masks show
HARD_LAYOUT_FACTOR = 1.5
LATERAL_MESSAGE = (
    "this looks like a lateral view (view probe {score:.2f} > {cut:.2f}: no right and left lung side by "
    "side); cxrtriage only triages frontal (PA/AP) chest radiographs"
)


def check(anatomy: Anatomy, residual: float | None, max_residual: float | None) -> list[str]:
    """Before the model: raise NotAChestXrayError for what is clearly not a frontal chest film; return the reasons
    for review (empty: a typical frontal film)."""
    known = residual is not None and max_residual is not None
    layout_ok = not known or residual <= max_residual  # type: ignore[operator]
    if known and residual > max_residual * HARD_LAYOUT_FACTOR:  # type: ignore[operator]
        raise NotAChestXrayError(
            "the image does not have the layout of a frontal chest radiograph "
            f"(layout residual {residual:.2f} > {max_residual:.2f})"
        )
    if not layout_ok and not anatomy.typical_pair:
        found = "no lung field was found" if not anatomy.lungs else "no typical pair of lungs was found"
        raise NotAChestXrayError(
            f"the image does not have the layout of a frontal chest radiograph (layout residual "
            f"{residual:.2f} > {max_residual:.2f}) and {found}"
        )
    reasons = anatomy.frontal_problems()
    if not layout_ok:
        reasons.append(
            f"its coarse layout is unusual for a frontal chest film (layout residual {residual:.2f} > "
            f"{max_residual:.2f}: lines and tubes, rotation, collimation or cropping?)"
        )
    return reasons


def check_view(
    score: float | None,
    reject_above: float,
    review_above: float,
    typical_pair: bool = False,
    reject_with_lungs_above: float = 1.0,
) -> list[str]:
    """After the model: the view probe's lateral-view probability -> refusal, a review reason, or nothing. An image
    that shows a typical pair of lungs is refused only above the much higher ``reject_with_lungs_above`` (two
    pediatric pneumonia films scored above ``reject_above`` with one candidate classifier; the segmenter, trained
    on frontal films, finds two "lungs" on a third of the laterals): below it, it goes to review."""
    if score is None:
        return []
    if score > reject_with_lungs_above or (score > reject_above and not typical_pair):
        cut = reject_above if not typical_pair else reject_with_lungs_above
        raise NotAChestXrayError(LATERAL_MESSAGE.format(score=score, cut=cut))
    if score > review_above:
        return [f"it may be a lateral view (view probe {score:.2f} > {review_above:.2f})"]
    return []


def embedding_doubt(knn_similarity: float | None, min_similarity: float | None) -> list[str]:
    """A film with two lungs whose embedding is far from the training images: a reason for review, not refusal."""
    if knn_similarity is None or min_similarity is None or knn_similarity >= min_similarity:
        return []
    return [f"it resembles the training films less than usual (similarity {knn_similarity:.2f} < {min_similarity:.2f})"]
