"""Predictions matched to gold rows by image id; ids that are in one file and not the other are refused unless asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.input_files import InputProblem, listed_ids
from cxrtriage.evaluation.prediction_files import PredictionsFile

__all__ = [
    "Join",
    "join",
]


@dataclass
class Join:
    """Which image ids are in both files and which are not (ids only; the rows stay in their files)."""

    matched: list[str]  # in gold and scored, sorted
    not_scored: list[str]  # in gold, prediction row is an error (the image went to a human)
    gold_only: list[str]  # in gold, no prediction row at all
    preds_only: list[str]  # prediction rows (scored or error) without a gold row


def join(
    gold: dict[str, dict[str, Any]],
    preds: PredictionsFile,
    *,
    gold_path: Path | str = "gold",
    allow_unmatched: bool = False,
) -> Join:
    """Match by image id. Ids in one file and not the other are an error unless ``allow_unmatched``:
    a silently smaller test set reports numbers on other cases than the reader thinks."""
    result = Join(
        matched=sorted(k for k in gold if k in preds.scored),
        not_scored=sorted(k for k in gold if k in preds.errors),
        gold_only=sorted(k for k in gold if k not in preds.ids),
        preds_only=sorted(k for k in preds.ids if k not in gold),
    )
    if not result.matched:
        raise InputProblem(
            f"no prediction matches a gold row by file name ({len(preds)} prediction rows, "
            f"{len(preds.errors)} of them errors; {len(gold)} gold rows); check that both files refer to the same "
            f"images (gold ids e.g. {listed_ids(gold, 3)}; prediction ids e.g. {listed_ids(preds.ids, 3)})"
        )
    if (result.gold_only or result.preds_only) and not allow_unmatched:
        parts = [f"{len(gold)} gold rows, {len(preds)} prediction rows"]
        if result.gold_only:
            parts.append(
                f"{len(result.gold_only)} gold image id(s) have no row in {preds.path}: {listed_ids(result.gold_only)}"
            )
        if result.preds_only:
            parts.append(
                f"{len(result.preds_only)} prediction image id(s) have no row in {gold_path}: "
                f"{listed_ids(result.preds_only)}"
            )
        raise InputProblem(
            "the predictions and the gold file do not list the same images (joined by file name): "
            + "; ".join(parts)
            + ". Predict every gold image (cxrtriage predict --examples GOLD) "
            "or pass --allow-unmatched to score the images in both"
        )
    return result
