"""The rating sheet of the clinician rating loop (:mod:`cxrtriage.evaluation.clinician_rating`): its columns and
allowed values, and its export. The model's output for each case (label, score, explanation, evidence boxes,
provenance) is written beside EMPTY rating columns; nothing here ever fills a rating in."""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.input_files import image_id

#: What the model said about each case (filled by :func:`export_rating_sheet`).
CASE_COLUMNS = (
    "case_id",
    "image_id",
    "image_path",
    "label",
    "score",
    "threshold",
    "needs_review",
    "explanation",
    "crop_boxes",
    "crop_thumb_paths",
    "provenance",
    "model",
)
#: What the rater says (always exported empty).
RATING_COLUMNS = ("rater_role", "agrees_with_label", "explanation_quality_1to5", "crops_useful", "comment")
RATER_ROLES = (
    "radiologist",
    "radiology_trainee",
    "emergency_physician",
    "other_physician",
    "radiographer",
    "nurse",
    "other",
)
YES_NO = ("yes", "no")
CROPS_VALUES = ("yes", "no", "no_crops")


class RatingSheetError(ValueError):
    """A rating sheet cannot be read or summarised; the message names file, row and column."""


def _as_row(pred: Any) -> dict[str, Any]:
    """A Prediction (pydantic) or a ``cxrtriage predict --out`` row, as a plain dict."""
    if hasattr(pred, "model_dump"):
        return pred.model_dump(mode="json")
    if isinstance(pred, Mapping):
        return dict(pred)
    raise TypeError(f"expected a Prediction or a prediction dict, got {type(pred).__name__}")


def _image_id(row: dict[str, Any]) -> str:
    return image_id(str(row.get("image_id") or row.get("path") or ""))


def pick_cases(predictions: Sequence[Any], n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` scored predictions, stratified so that raters see both labels, review-flagged cases, and both
    datasets when the paths say ``nih/`` or ``kermany/``: round-robin over (dataset, label, needs_review)
    groups, shuffled within a group by ``seed``.
    Rows with an ``error`` (rejected images) are skipped: there is no label to agree with."""
    rows = [_as_row(p) for p in predictions]
    rows = [r for r in rows if not r.get("error") and r.get("label")]
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if len(rows) < n:
        raise ValueError(f"asked for {n} cases but only {len(rows)} scored predictions were given")
    groups: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    for r in rows:
        parts = str(r.get("path", "")).replace("\\", "/").split("/")
        dataset = next((d for d in ("nih", "kermany") if d in parts), "")
        groups.setdefault((dataset, str(r["label"]), bool(r.get("needs_review"))), []).append(r)
    rng = random.Random(seed)  # noqa: S311 - a seeded, reproducible order, not a secret
    queues = []
    order = ("nih", "kermany", "")  # adults first: with an odd share they get the extra case
    for key in sorted(groups, key=lambda k: (order.index(k[0]), k[1], k[2])):
        members = sorted(groups[key], key=_image_id)
        rng.shuffle(members)
        queues.append(members)
    picked: list[dict[str, Any]] = []
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def _relative(path: str, data_dir: Path | None) -> str:
    if not path or data_dir is None:
        return path
    try:
        return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()
    except ValueError:
        return path


def _case_cells(
    row: dict[str, Any], case_id: str, image_id: str, *, data_dir: Path | None, thumb_paths: bool
) -> dict[str, str]:
    crops = row.get("crops") or []
    boxes = "; ".join(
        f"x={c['x']} y={c['y']} w={c['w']} h={c['h']}" + (f" ({c['region']})" if c.get("region") else "") for c in crops
    )
    prov = " | ".join(f"{p.get('source', '')}: {p.get('snippet', '')}" for p in row.get("provenance") or [])
    model = row.get("model") or {}
    return {
        "case_id": case_id,
        "image_id": image_id,
        "image_path": _relative(str(row.get("path", "")), data_dir),
        "label": str(row["label"]),
        "score": f"{float(row['score']):.4f}",
        "threshold": f"{float(row['threshold']):.4f}" if row.get("threshold") is not None else "",
        "needs_review": "yes" if row.get("needs_review") else "no",
        "explanation": str(row.get("explanation", "")),
        "crop_boxes": boxes,
        "crop_thumb_paths": ";".join(str(c.get("thumb_path", "")) for c in crops) if thumb_paths else "",
        "provenance": prov,
        "model": " ".join(str(model.get(k, "")) for k in ("name", "version")).strip()
        + (f" sha256:{str(model['sha256'])[:12]}" if model.get("sha256") else ""),
    }


def export_rating_sheet(
    predictions: Sequence[Any],
    path: Path | str,
    *,
    case_ids: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    thumb_paths: bool = True,
) -> Path:
    """Write a rating sheet: one row per prediction, the model's output then EMPTY rating columns.

    ``predictions``: Prediction objects or ``cxrtriage predict --out`` rows. ``n``: export only ``n`` cases,
    chosen by :func:`pick_cases` (``seed``). ``case_ids``: default ``case-001``, ``case-002``, ...
    ``image_ids``: needed for Prediction objects (which carry no path); dict rows use ``image_id`` or the file
    name of ``path``. ``data_dir``: write image paths relative to it. ``thumb_paths=False`` leaves the
    thumbnail column empty (for a sheet shared elsewhere: thumbnails are temporary local files; the image id
    and the boxes say what to look at).
    """
    rows = pick_cases(predictions, n, seed=seed) if n is not None else [_as_row(p) for p in predictions]
    if not rows:
        raise ValueError("no predictions to export")
    if image_ids is not None and len(image_ids) != len(rows):
        raise ValueError(f"image_ids has {len(image_ids)} entries for {len(rows)} predictions")
    if case_ids is not None and len(case_ids) != len(rows):
        raise ValueError(f"case_ids has {len(case_ids)} entries for {len(rows)} predictions")
    cases = list(case_ids) if case_ids is not None else [f"case-{i:03d}" for i in range(1, len(rows) + 1)]
    if len(set(cases)) != len(cases) or any(not str(c).strip() for c in cases):
        raise ValueError("case_ids must be unique and non-empty")
    out_rows = []
    for i, row in enumerate(rows):
        if row.get("error"):
            raise ValueError(f"prediction {i} is an error row ({row.get('error_type', 'error')}): no label to rate")
        iid = image_ids[i] if image_ids is not None else _image_id(row)
        if not iid:
            raise ValueError(f"prediction {i} has no image id: pass image_ids= for Prediction objects")
        cells = _case_cells(row, str(cases[i]), str(iid), data_dir=data_dir, thumb_paths=thumb_paths)
        out_rows.append({**cells, **{c: "" for c in RATING_COLUMNS}})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CASE_COLUMNS, *RATING_COLUMNS])
        writer.writeheader()
        writer.writerows(out_rows)
    return path
