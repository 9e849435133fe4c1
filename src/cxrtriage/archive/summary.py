"""The end of a run: what the whole output holds (every part file, earlier runs' included when resumed) and how
fast this run went, printed and written as JSON beside the results (``results.parquet`` ->
``results.summary.json``).

Rates are over every input in the output: ``review_rate`` (needs a human: flagged results and every input that
could not be triaged), ``refusal_rate`` (the gate refused the image as not a frontal chest film) and
``failure_rate`` (could not be triaged for another reason: unreadable, unsupported, too large).
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cxrtriage.archive.storage import Location, part_files, write_atomically

#: the score histogram's bins: tenths of the calibrated score
SCORE_BINS = np.linspace(0.0, 1.0, 11)
COLUMNS = ["label", "score", "needs_review", "refused", "error_type"]


def summary_location(out: Location) -> Location:
    """``results.parquet`` -> ``results.summary.json`` in the same folder."""
    stem = posixpath.splitext(posixpath.basename(out.path.rstrip("/")))[0]
    path = posixpath.join(posixpath.dirname(out.path.rstrip("/")), f"{stem}.summary.json")
    return Location(out.fs, path, path)


def summarise(out: Location, run: dict[str, Any]) -> dict[str, Any]:
    """Counts by label and error type, the rates, the score histogram over every part file; ``run`` (this run's
    inputs, triaged, skipped, wall time, workers) is copied in with its throughput."""
    labels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    histogram = np.zeros(len(SCORE_BINS) - 1, dtype=int)
    rows = review = refused = 0
    for part in part_files(out):
        with out.fs.open_input_file(part) as fh:
            table = pq.read_table(fh, columns=COLUMNS)
        rows += table.num_rows
        labels.update(v for v in table.column("label").to_pylist() if v is not None)
        errors.update(v for v in table.column("error_type").to_pylist() if v is not None)
        review += sum(bool(v) for v in table.column("needs_review").to_pylist())
        refused += sum(bool(v) for v in table.column("refused").to_pylist())
        scores = np.array([s for s in table.column("score").to_pylist() if s is not None], dtype=float)
        histogram += np.histogram(np.clip(scores, 0.0, 1.0), bins=SCORE_BINS)[0]
    failed = sum(errors.values()) - refused

    def rate(n: int) -> float | None:
        return round(n / rows, 4) if rows else None

    wall = float(run.get("wall_s") or 0.0)
    return {
        "rows": rows,
        "by_label": dict(sorted(labels.items())),
        "by_error_type": dict(sorted(errors.items())),
        "review_rate": rate(review),
        "refusal_rate": rate(refused),
        "failure_rate": rate(failed),
        "score_histogram": {
            "bins": [round(float(b), 2) for b in SCORE_BINS],
            "counts": [int(c) for c in histogram],
        },
        "run": {**run, "images_per_s": round(run.get("triaged", 0) / wall, 2) if wall > 0 else None},
    }


def write_summary(out: Location, summary: dict[str, Any]) -> str:
    data = (json.dumps(summary, indent=2) + "\n").encode()
    return write_atomically(out.fs, summary_location(out).path, lambda stream: stream.write(data))


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few lines for the terminal."""
    run = summary["run"]
    labels = ", ".join(f"{k} {v}" for k, v in summary["by_label"].items()) or "none"
    errors = ", ".join(f"{k} {v}" for k, v in summary["by_error_type"].items()) or "none"
    hist = summary["score_histogram"]
    bars = "  ".join(f"{lo:.1f}-{hi:.1f}: {n}" for lo, hi, n in zip(hist["bins"], hist["bins"][1:], hist["counts"]))

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    return "\n".join(
        [
            f"{summary['rows']} input(s) in the results; by label: {labels}; not triaged: {errors}",
            f"review rate {pct(summary['review_rate'])}, refusal rate {pct(summary['refusal_rate'])}, "
            f"failure rate {pct(summary['failure_rate'])}",
            f"scores: {bars}",
            f"this run: {run.get('triaged', 0)} triaged, {run.get('skipped', 0)} already done, "
            f"{run.get('wall_s', 0):.1f} s wall, {run.get('images_per_s') or 0:.1f} images/s "
            f"on {run.get('workers')} worker(s)",
        ]
    )
