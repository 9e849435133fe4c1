"""Predictions flattened into table rows (lists of dicts) that notebooks show as pandas DataFrames.

Kept in the package, not in notebook cells, so what a table shows is tested and is the same everywhere.
No pandas import here: callers wrap the rows (``pandas.DataFrame(rows)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxrtriage.schema import Prediction


def summary_row(name: str, pred: Prediction) -> dict[str, Any]:
    """One line per result: what a reader checks first."""
    return {
        "example": name,
        "label": pred.label,
        "score": pred.score,  # as reported (4 decimals): the label is decided on exactly these values
        "threshold": pred.threshold,
        "needs_review": pred.needs_review,
        "crops": len(pred.crops),
        "provenance": len(pred.provenance),
        "explanation": pred.explanation,
        "warnings": "; ".join(pred.warnings),
    }


def provenance_rows(pred: Prediction) -> list[dict[str, Any]]:
    """Each quoted prior-report sentence and similar training case behind a result."""
    return [
        {
            "source": p.source,
            "relation": p.relation or "",
            "snippet": p.snippet,
            "similarity": None if p.similarity is None else round(p.similarity, 3),
        }
        for p in pred.provenance
    ]


def crop_rows(pred: Prediction) -> list[dict[str, Any]]:
    """The evidence boxes in original-image pixels, numbered as in
    :func:`cxrtriage.evaluation.figures.prediction_plot`."""
    return [
        {
            "crop": i,
            "x": c.x,
            "y": c.y,
            "w": c.w,
            "h": c.h,
            "region": c.region or "",
            "strength": None if c.strength is None else round(c.strength, 3),
            "source": c.source,
        }
        for i, c in enumerate(pred.crops, start=1)
    ]


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


def headline_rows(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per test set from :func:`cxrtriage.evaluation.eval_report.evaluate_files` reports: the numbers a reader
    quotes."""
    rows = []
    for name, r in reports.items():
        op, tr = r["operating_point"], r.get("target_recall") or {}
        top = tr.get("operating_point") or {}
        lo, hi = r["auc_ci95"]
        rows.append(
            {
                "test set": name,
                "n": r["n"],
                "urgent": r["n_pos"],
                "AUC [95% CI]": f"{r['auc']:.3f} [{lo:.3f}, {hi:.3f}]" if r["auc"] is not None else "n/a",
                "threshold (shipped)": round(r["threshold"], 4),  # as every result reports it
                "sensitivity": _r(op["sensitivity"]),
                "specificity": _r(op["specificity"]),
                "PPV": _r(op["ppv"]),
                "NPV": _r(op["npv"]),
                f"threshold for recall {tr.get('target', '')}": _r(tr.get("threshold")),
                "sensitivity there": _r(top.get("sensitivity")),
                "specificity there": _r(top.get("specificity")),
                "ECE": _r(r.get("ece")),
                "not scored (gate)": r.get("not_scored", {}).get("n", 0),
            }
        )
    return rows


def _r(value: Any, digits: int = 3) -> Any:
    return None if value is None else round(float(value), digits)


def subgroup_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Subgroup table (view, sex, age band, ...) from an evaluation report, counts first."""
    rows = []
    for field, groups in report.get("subgroups", {}).items():
        for name, g in groups.items():
            rows.append(
                {
                    "by": field,
                    "group": name,
                    "n": g["n"],
                    "urgent": g["n_pos"],
                    "AUC": _r(g["auc"]),
                    "sensitivity": _r(g["sensitivity"]),
                    "specificity": _r(g["specificity"]),
                    "PPV": _r(g["ppv"]),
                    "NPV": _r(g["npv"]),
                }
            )
    return rows
