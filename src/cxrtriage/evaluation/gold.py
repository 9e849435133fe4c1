"""The gold-label file: truth (Urgent / Non-Urgent, urgent / non_urgent or 1 / 0) and the subgroup fields, by image
id."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.input_files import InputProblem, read_jsonl, row_image_id

__all__ = [
    "AGE_BANDS",
    "age_band",
    "gold_label",
    "gold_rows",
    "load_gold",
]


#: Age bands (years, lower bound inclusive) for the subgroup table: children, young, middle-aged and older adults.
AGE_BANDS = ((0, "0-17"), (18, "18-39"), (40, "40-59"), (60, "60+"))


def gold_label(row: dict[str, Any], where: str) -> int:
    """1 = urgent, 0 = non-urgent, from whichever of "urgency", "label", "y" is present."""
    if "urgency" in row:
        value = str(row["urgency"]).strip().lower().replace("-", "_")
        mapping: dict[Any, int] = {"urgent": 1, "non_urgent": 0}
    elif "label" in row:
        value = str(row["label"]).strip().lower()
        mapping = {"urgent": 1, "non-urgent": 0}
    elif "y" in row:
        value = row["y"]
        mapping = {0: 0, 1: 1} if not isinstance(value, bool) and isinstance(value, (int, float)) else {}
    else:
        raise InputProblem(f"{where}: no truth field ('urgency', 'label' or 'y')")
    if value not in mapping:
        raise InputProblem(
            f"{where}: unknown truth value {value!r} (expected Urgent / Non-Urgent, urgent / non_urgent or 1 / 0)"
        )
    return mapping[value]


def age_band(age: Any) -> str | None:
    """The :data:`AGE_BANDS` label of an age in years (a number or numeric string); None when unknown."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return None
    if not 0 <= years < 130:
        return None
    return [label for low, label in AGE_BANDS if years >= low][-1]


def gold_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a gold file: JSONL, or a CSV with the same columns (``path``, ``label``, ...) when its
    name ends in ``.csv``; empty CSV cells count as absent."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return read_jsonl(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return [
                (lineno, {k: v for k, v in row.items() if k and v not in (None, "")})
                for lineno, row in enumerate(csv.DictReader(fh), start=2)
            ]
    except OSError as exc:
        raise InputProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise InputProblem(f"{path}: not a valid CSV ({exc})") from exc


def load_gold(path: Path) -> dict[str, dict[str, Any]]:
    """Gold rows by image id: ``y`` (1 = urgent), ``view``, ``sex``, ``age_band`` (from ``age``), ``patient_id``
    (None when absent)."""
    path = Path(path)
    gold: dict[str, dict[str, Any]] = {}
    for lineno, row in gold_rows(path):
        where = f"{path}:{lineno}"
        key = row_image_id(row, where)
        if key in gold:
            raise InputProblem(
                f"{where}: file name {key!r} appears twice in the gold file (also line "
                f"{gold[key]['line']}); the join is by file name"
            )
        gold[key] = {
            "y": gold_label(row, where),
            "line": lineno,
            "view": row.get("view"),
            "sex": row.get("sex"),
            "age_band": age_band(row.get("age")),
            "patient_id": row.get("patient_id"),
        }
    if not gold:
        raise InputProblem(f"{path} contains no rows (empty gold file)")
    return gold
