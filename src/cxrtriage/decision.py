"""The decision: a calibrated score against the threshold and the review band -> label and ``needs_review``.

Safety first: a score in the review band is labelled Urgent even below the threshold. Decisions are made on the
values a result reports (4 decimals), so anyone re-scoring the JSON gets exactly the pipeline's decisions.
"""

from __future__ import annotations


#: decimals of the score, threshold and review band in every result
REPORTED_DECIMALS = 4


def reported(value: float) -> float:
    """A score or threshold as results report it; decisions are made on these values, not the raw floats."""
    return round(float(value), REPORTED_DECIMALS)


def decide(score: float, threshold: float, review_band: tuple[float, float]) -> tuple[str, bool]:
    """Label and review flag. Safety-first: a score in the review band is labelled Urgent even below the
    threshold, because the threshold itself is uncertain there."""
    low, high = review_band
    needs_review = low <= score < high
    urgent = score >= threshold or needs_review
    return ("Urgent" if urgent else "Non-Urgent"), needs_review
