"""A commissioning case from a result already on the worklist (a reader's assessment exported by
``cxrtriage feedback export``: ``path`` ``worklist:KEY`` and the ``version`` assessed), so a site re-commissions
from its own readers' judgement without the images: the service keeps none, but every stored result keeps the
classifier's own logit (``Prediction.model_logit``), which is all a site's calibration is fitted on.

What such a case lacks: the embedding (so a site head cannot be fitted on a sample that holds one) and the image
statistics of the monitor's reference (left empty). A result filed by another model, or before results kept their
logit, cannot be rescored and is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cxrtriage.backends.bundled import BundledOnnxBackend
from cxrtriage.pipeline import Triage
from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import PATH_PREFIX


@dataclass(frozen=True)
class StoredCase:
    """What commissioning needs of one stored result."""

    logit: float
    base_score: float  # the bundled calibration of that logit, whatever profile the result was filed under
    similarity: float | None


def is_stored(ref: str) -> bool:
    return ref.startswith(PATH_PREFIX)


def stored_case(ref: str, row: dict[str, Any], worklist: Worklist | None, engine: Triage) -> StoredCase | str:
    """The case behind ``ref`` (``worklist:KEY``), or why it cannot be used."""
    if worklist is None:
        return "a worklist study, but no worklist was given (--worklist)"
    key = ref[len(PATH_PREFIX) :]
    version = row.get("version")
    try:
        version = int(version) if version not in (None, "") else None
    except (TypeError, ValueError):
        return f"version {version!r} is not a number"
    stored = worklist.result(key, version)
    if stored is None:
        return "no such study" + (f" version {version}" if version else "") + " on the worklist"
    sha = str((stored.get("model") or {}).get("sha256", ""))
    if sha != engine.info.sha256:
        return f"filed by model {sha[:12] or '?'}, not the loaded {engine.info.sha256[:12]}: its logit is another's"
    logit = stored.get("model_logit")
    if not isinstance(logit, (int, float)):
        return "filed before results kept the model's logit: triage the film again"
    if not isinstance(engine.backend, BundledOnnxBackend):
        return f"the {engine.info.backend} backend cannot rescore a stored logit"
    similarity = (stored.get("image") or {}).get("knn_similarity")
    return StoredCase(
        logit=float(logit),
        base_score=float(engine.backend.calibrate(float(logit))),
        similarity=float(similarity) if isinstance(similarity, (int, float)) else None,
    )
