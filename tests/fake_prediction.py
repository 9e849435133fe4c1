"""A :class:`~cxrtriage.schema.Prediction` to file on a worklist in tests (the worklist's own, its API's and the UI's
rendering of it): what the worklist reads (label, score, the review flag) is set, with a fixed stand-in model; no
crops, no provenance. Importable from any test: the top-level ``conftest.py`` puts ``tests/`` on ``sys.path``
(pytest's default ``prepend`` import mode)."""

from __future__ import annotations

from cxrtriage.schema import ModelInfo, Prediction

__all__ = ["MODEL", "fake_prediction"]

MODEL = ModelInfo(name="m", version="1", sha256="0" * 64)


def fake_prediction(label: str = "Urgent", score: float | None = None, review: bool = False) -> Prediction:
    """``label`` with ``score`` (default 0.9 for Urgent, 0.1 otherwise: either side of the 0.3 threshold and its
    review band) and ``review`` as its needs-review flag."""
    return Prediction(
        label=label,
        score=(0.9 if label == "Urgent" else 0.1) if score is None else score,
        explanation=f"{label}.",
        threshold=0.3,
        review_band=(0.25, 0.35),
        needs_review=review,
        model=MODEL,
    )
