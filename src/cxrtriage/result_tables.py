"""Predictions flattened into table rows (lists of dicts) that notebooks show as pandas DataFrames.

Kept in the package, not in notebook cells, so what a table shows is tested and is the same everywhere.
No pandas import here: callers wrap the rows (``pandas.DataFrame(rows)``).
"""

from __future__ import annotations

from typing import Any, Mapping

from cxrtriage.schema import Prediction


def summary_row(name: str, pred: Prediction) -> dict[str, Any]:
    """One line per result: what a reader checks first."""
    return {
        "example": name,
        "label": pred.label,
        "score": round(pred.score, 3),
        "threshold": round(pred.threshold, 3),
        "needs_review": pred.needs_review,
        "crops": len(pred.crops),
        "provenance": len(pred.provenance),
        "explanation": pred.explanation,
        "warnings": "; ".join(pred.warnings),
    }


def provenance_rows(pred: Prediction) -> list[dict[str, Any]]:
    """Each quoted prior-report sentence and similar training case behind a result."""
    return [{"source": p.source, "relation": p.relation or "", "snippet": p.snippet,
             "similarity": None if p.similarity is None else round(p.similarity, 3)} for p in pred.provenance]


def crop_rows(pred: Prediction) -> list[dict[str, Any]]:
    """The evidence boxes in original-image pixels, numbered as in :func:`cxrtriage.figures.prediction_plot`."""
    return [{"crop": i, "x": c.x, "y": c.y, "w": c.w, "h": c.h, "region": c.region or "",
             "strength": None if c.strength is None else round(c.strength, 3), "source": c.source}
            for i, c in enumerate(pred.crops, start=1)]


def timing_rows(preds: Mapping[str, Prediction]) -> list[dict[str, Any]]:
    """Per-stage milliseconds for each result (stages the pipeline reports in ``timings_ms``), total last."""
    stages: list[str] = []
    for pred in preds.values():
        stages += [k for k in pred.timings_ms if k not in stages and k != "total"]
    rows = []
    for name, pred in preds.items():
        row: dict[str, Any] = {"example": name}
        row.update({f"{k}_ms": round(pred.timings_ms[k], 1) for k in stages if k in pred.timings_ms})
        row["total_ms"] = round(pred.timings_ms.get("total", float("nan")), 1)
        rows.append(row)
    return rows
