#!/usr/bin/env python
"""Reproduce the triage metrics from a predictions file and a gold-label file.

    python prototype/eval/eval_metrics.py --preds demo_outputs.jsonl --gold test_labels.jsonl \
        [--threshold T] [--target-recall 0.95] [--target-specificity 0.95] [--boxes boxes.csv] \
        [--allow-unmatched] [--n-boot 2000] [--seed 0] [--out metrics.json]

The two input files of that command come from the held-out test list (see README, "The bundled model and
its numbers"):

    cxrtriage test-set --dataset nih --out test_labels.jsonl            # gold: a filtered test_examples.jsonl
    cxrtriage predict --examples test_labels.jsonl --out demo_outputs.jsonl

``demo_outputs.jsonl`` is what ``cxrtriage predict --out`` writes: one object per image with "path" and either
"score" (+ "label", "threshold", "crops") or "error" (the gate rejected the image: reported, not scored).
The gold file has "path" or "id"/"image_id", the truth as "label" (Urgent / Non-Urgent), "urgency"
(urgent / non_urgent) or "y" (0 / 1), and optionally "view", "sex", "patient_id";
``prototype/eval/test_examples.jsonl`` is one, and so is any file of your own labelled images in that format.
Rows are joined on the image id (the file name without its directory); ids in only one of the files stop the
run (exit 2, the ids listed) unless --allow-unmatched. ``--target-sensitivity`` is an alias of ``--target-recall``.

This script only parses the command line: reading, joining and reporting live in ``cxrtriage.evaluation``
(``eval_report`` builds the report, ``eval_report_text`` prints it, ``eval_metrics_cli`` is this command line; also
used by notebook 03) and every number comes from ``cxrtriage.evaluation.metrics``. Exit code 0 on success, 2 when the
inputs cannot be evaluated.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from cxrtriage.evaluation import eval_metrics_cli
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from cxrtriage.evaluation import eval_metrics_cli

from cxrtriage.evaluation.eval_metrics_cli import build_parser  # noqa: E402
from cxrtriage.evaluation.eval_report import evaluate_files  # noqa: E402
from cxrtriage.evaluation.eval_report_text import format_report  # noqa: E402
from cxrtriage.evaluation.input_files import InputProblem  # noqa: E402

__all__ = ["InputProblem", "build_parser", "evaluate_files", "format_report", "main"]


def main(argv: list[str] | None = None) -> int:
    return eval_metrics_cli.main(argv, prog="eval_metrics.py")


if __name__ == "__main__":
    raise SystemExit(main())
