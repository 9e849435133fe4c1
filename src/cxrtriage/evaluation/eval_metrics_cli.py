"""The command line of ``prototype/eval/eval_metrics.py``: options, the report printed, optionally written as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cxrtriage.evaluation.eval_report import evaluate_files
from cxrtriage.evaluation.eval_report_text import format_report
from cxrtriage.evaluation.input_files import InputProblem

__all__ = [
    "build_parser",
    "main",
]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The options of ``prototype/eval/eval_metrics.py``."""
    p = argparse.ArgumentParser(prog=prog, description="Triage metrics from cxrtriage predictions and gold labels.")
    p.add_argument("--preds", type=Path, required=True, help="predictions JSONL (cxrtriage predict --out)")
    p.add_argument(
        "--gold",
        type=Path,
        required=True,
        help="gold labels JSONL, e.g. prototype/eval/test_examples.jsonl or `cxrtriage test-set --out`",
    )
    p.add_argument("--threshold", type=float, help="operating threshold (default: the predictions' 'threshold')")
    p.add_argument(
        "--target-recall",
        "--target-sensitivity",
        dest="target_recall",
        type=float,
        default=0.95,
        help="sensitivity target: the threshold reaching it here, specificity @ it (default 0.95)",
    )
    p.add_argument(
        "--target-specificity", type=float, default=0.95, help="for sensitivity @ specificity (default 0.95)"
    )
    p.add_argument(
        "--boxes",
        type=Path,
        help="reference boxes (CSV or JSONL: image id, x, y, w, h in the predicted "
        "image's pixels) for IoU and the pointing game",
    )
    p.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="score the images in both files instead of stopping at ids found in only one",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the AUC CI (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, help="also write the report as JSON here")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Exit code 0 on success, 2 when the inputs cannot be evaluated (the message says why)."""
    args = build_parser(prog).parse_args(argv)
    try:
        report = evaluate_files(
            args.preds,
            args.gold,
            threshold=args.threshold,
            target_recall=args.target_recall,
            target_specificity=args.target_specificity,
            n_boot=args.n_boot,
            seed=args.seed,
            allow_unmatched=args.allow_unmatched,
            boxes_path=args.boxes,
        )
    except (InputProblem, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0
