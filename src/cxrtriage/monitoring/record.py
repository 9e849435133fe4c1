"""The monitor record: what is kept of one result or refusal to watch the distribution of inputs and outputs.

One JSON object per line, with exactly :data:`RECORD_KEYS`::

    {"time": "2026-12-07T15:00:00Z", "source": "api"|"ui"|"node"|"commissioning",
     "outcome": "triaged"|"refused", "label": "Urgent"|"Non-Urgent"|null, "score": float|null,
     "needs_review": bool, "similarity": float|null, "image": {"mean", "std", "width", "height"}|null,
     "site": str|null, "model_sha256": str}

``similarity`` is the highest cosine similarity to a training case, as the result's provenance gives it; ``image``
holds the mean and standard deviation of the analysed grey pixels (``[0, 1]``, display polarity, the exposed field
when the film had borders) and the decoded image's size. A refusal keeps what was known when it was refused
(usually nothing of the image: ``image`` is null). No identifier, path, file name, accession or free text has a
key to go into: the site profile's name is the one string a person chose, and that is the site's, not a patient's.
A site profile's ``reference.jsonl`` (written by ``cxrtriage commission``) holds the same keys, ``source``
``"commissioning"``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cxrtriage.schema import Prediction

__all__ = [
    "OUTCOMES",
    "RECORD_KEYS",
    "SOURCES",
    "highest_similarity",
    "image_stats",
    "iso_time",
    "monitor_record",
    "parse_record",
    "record_time",
    "refusal_record",
    "run_record",
    "site_name",
    "utc_now",
]

#: a record's keys, in the order they are written (part of the site profile's interface: reference.jsonl)
RECORD_KEYS = (
    "time",
    "source",
    "outcome",
    "label",
    "score",
    "needs_review",
    "similarity",
    "image",
    "site",
    "model_sha256",
)
SOURCES = ("api", "ui", "node", "commissioning")
OUTCOMES = ("triaged", "refused")
IMAGE_KEYS = ("mean", "std", "width", "height")
_LABELS = ("Urgent", "Non-Urgent")
_MAX_SIDE = 512  # statistics from at most about 512 x 512 pixels: a mean and a spread need no more


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso_time(when: dt.datetime | None = None) -> str:
    """A time as the records write it: UTC, whole seconds, ``Z`` (now when not given)."""
    when = (when or utc_now()).astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    return when.isoformat() + "Z"


def record_time(record: Mapping[str, Any]) -> dt.datetime:
    """A record's time as an aware UTC datetime."""
    return dt.datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def image_stats(pixels: np.ndarray, width: int, height: int, exposed_field: Any = None) -> dict[str, float | int]:
    """Mean and standard deviation of the analysed grey pixels (``[0, 1]``), with the decoded image's ``width`` and
    ``height``. ``exposed_field``: the result's ``image["exposed_field"]`` (x, y, w, h in original pixels) when the
    film sat on a canvas or inside borders; the statistics then describe the film, as the model saw it."""
    grey = np.asarray(pixels, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    if exposed_field is not None and width > 0 and height > 0:
        x, y, w, h = (float(v) for v in exposed_field)
        sy, sx = grey.shape[0] / height, grey.shape[1] / width
        cropped = grey[int(y * sy) : int(math.ceil((y + h) * sy)), int(x * sx) : int(math.ceil((x + w) * sx))]
        grey = cropped if cropped.size else grey
    step = max(1, int(math.ceil(max(grey.shape) / _MAX_SIDE)))
    sample = grey[::step, ::step]
    return {
        "mean": round(float(sample.mean()), 4),
        "std": round(float(sample.std()), 4),
        "width": int(width),
        "height": int(height),
    }


def highest_similarity(prediction: Prediction) -> float | None:
    """The highest cosine similarity to a training case among the result's provenance (None without one)."""
    values = [
        p.similarity for p in prediction.provenance if p.similarity is not None and p.source.startswith("training_case")
    ]
    return round(float(max(values)), 4) if values else None


def site_name(engine: Any) -> str | None:
    """The name of the site profile an engine uses (``Triage.site``, None or an object with ``.name``), else None.
    Read by attribute because a fake engine in a test, or an engine of an earlier version, has no profile."""
    site = getattr(engine, "site", None)
    name = getattr(site, "name", None)
    return str(name) if name else None


def monitor_record(
    prediction: Prediction,
    image: Mapping[str, Any] | None,
    source: str,
    site: str | None,
    *,
    time: dt.datetime | None = None,
) -> dict[str, Any]:
    """The record of one triaged result: ``image`` is :func:`image_stats` of what it analysed (None if unknown)."""
    _check_source(source)
    return {
        "time": iso_time(time),
        "source": source,
        "outcome": "triaged",
        "label": prediction.label,
        "score": round(float(prediction.score), 4),
        "needs_review": bool(prediction.needs_review),
        "similarity": highest_similarity(prediction),
        "image": _image(image),
        "site": site,
        "model_sha256": prediction.model.sha256,
    }


def run_record(run: Any, source: str, site: str | None) -> dict[str, Any]:
    """The record of a pipeline run (``Triaged``, or an output context: ``prediction``, ``image`` with its ``meta``,
    the analysed ``pixels``), its statistics taken from the pixels the model analysed."""
    prediction, meta = run.prediction, run.image.meta
    stats = image_stats(run.pixels, meta.width, meta.height, prediction.image.get("exposed_field"))
    return monitor_record(prediction, stats, source, site)


def refusal_record(
    source: str,
    site: str | None,
    model_sha256: str,
    *,
    image: Mapping[str, Any] | None = None,
    time: dt.datetime | None = None,
) -> dict[str, Any]:
    """The record of an input the gate refused (not a frontal chest radiograph, unreadable, too unusual): no label,
    no score; a refused film always goes to a person, so ``needs_review`` is true."""
    _check_source(source)
    return {
        "time": iso_time(time),
        "source": source,
        "outcome": "refused",
        "label": None,
        "score": None,
        "needs_review": True,
        "similarity": None,
        "image": _image(image),
        "site": site,
        "model_sha256": model_sha256,
    }


def parse_record(obj: Any) -> dict[str, Any] | None:
    """A record read back from a file, checked and reduced to :data:`RECORD_KEYS`; None for anything else (a line
    cut off by a crash, a record of another shape), which the caller counts as skipped."""
    if not isinstance(obj, dict) or obj.get("outcome") not in OUTCOMES or obj.get("source") not in SOURCES:
        return None
    try:
        record_time(obj)
    except (KeyError, TypeError, ValueError):
        return None
    score: Any = obj.get("score")
    triaged = obj["outcome"] == "triaged"
    if triaged and (obj.get("label") not in _LABELS or not _number(score) or not 0.0 <= float(score) <= 1.0):
        return None
    similarity: Any = obj.get("similarity")
    image: Any = obj.get("image")
    image_ok = isinstance(image, dict) and all(_number(image.get(k)) for k in IMAGE_KEYS)
    return {
        "time": str(obj["time"]),
        "source": obj["source"],
        "outcome": obj["outcome"],
        "label": obj.get("label") if triaged else None,
        "score": float(score) if triaged else None,
        "needs_review": bool(obj.get("needs_review")),
        "similarity": float(similarity) if _number(similarity) else None,
        "image": {k: image[k] for k in IMAGE_KEYS} if image_ok else None,
        "site": str(obj["site"]) if obj.get("site") else None,
        "model_sha256": str(obj.get("model_sha256") or ""),
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _image(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return {k: image[k] for k in IMAGE_KEYS} if image is not None else None


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
