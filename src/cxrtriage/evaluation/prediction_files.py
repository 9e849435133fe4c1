"""A ``cxrtriage predict --out`` file: scored rows (score, threshold, label, evidence boxes, image size) and the
rows of images the gate or the reader rejected, by image id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.input_files import InputProblem, is_number, read_jsonl, row_image_id

__all__ = [
    "PredictionsFile",
    "load_predictions",
]


@dataclass
class PredictionsFile:
    """A ``cxrtriage predict --out`` file, split into scored rows and rows the gate (or the reader) rejected."""

    path: Path
    scored: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> score, threshold, label, crops, image
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> error, error_type

    @property
    def ids(self) -> set[str]:
        return set(self.scored) | set(self.errors)

    def __len__(self) -> int:
        return len(self.scored) + len(self.errors)


def _crop_boxes(row: dict[str, Any], where: str) -> list[tuple[float, float, float, float]]:
    crops = row.get("crops") or []
    if not isinstance(crops, list):
        raise InputProblem(f"{where}: 'crops' must be a list of {{x, y, w, h, ...}} objects")
    boxes = []
    for i, crop in enumerate(crops):
        if not isinstance(crop, dict):
            raise InputProblem(f"{where}: crops[{i}] is not an object")
        missing = [k for k in "xywh" if not is_number(crop.get(k))]
        if missing:
            raise InputProblem(f"{where}: crops[{i}] has no numeric {', '.join(repr(k) for k in missing)}")
        boxes.append(tuple(float(crop[k]) for k in "xywh"))
    return boxes  # type: ignore[return-value]


def load_predictions(path: Path) -> PredictionsFile:
    """Read a predictions file; a row with ``error`` is kept as present-but-unscored, never dropped."""
    path = Path(path)
    out = PredictionsFile(path)
    lines: dict[str, int] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        key = row_image_id(row, where)
        if key in lines:
            raise InputProblem(
                f"{where}: file name {key!r} appears twice in the predictions (also line {lines[key]}); "
                "the join is by file name"
            )
        lines[key] = lineno
        if row.get("error"):
            out.errors[key] = {"error": str(row["error"]), "error_type": str(row.get("error_type") or "error")}
            continue
        score = row.get("score")
        if not is_number(score):
            what = "missing field 'score'" if score is None else f"'score' is not a number ({score!r})"
            raise InputProblem(
                f"{where}: {what}; a prediction row needs a numeric 'score' (or an 'error' for a rejected image)"
            )
        image = row.get("image") if isinstance(row.get("image"), dict) else {}
        out.scored[key] = {
            "score": float(score),
            "threshold": row.get("threshold"),
            "label": row.get("label"),
            "boxes": _crop_boxes(row, where),
            "width": image.get("width"),
            "height": image.get("height"),
        }
    if not len(out):
        raise InputProblem(f"{path} contains no rows (empty predictions file)")
    return out
