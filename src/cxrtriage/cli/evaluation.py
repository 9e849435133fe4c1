"""Evaluation commands: ``cxrtriage evaluate | evaluate-anatomy | evaluate-generalisation |
evaluate-operating-points | bench | test-set | ratings``, what is measured about a model and the files a reader
checks it with.

The ``--update-card`` options store what they measured in the bundle's ``card.json`` and regenerate its
``MODEL_CARD.md`` (:mod:`cxrtriage.evaluation.model_card`); the run-time ``model.json`` is never rewritten. Each
command imports its machinery when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrtriage.cli.options import SubCommands, command_settings, data_dir_or_exit
from cxrtriage.evaluation.trees import DEFAULT_BEFORE  # stdlib only at import


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.evaluate import run_evaluation

    report = run_evaluation(
        data_dir_or_exit(args.data_dir),
        model_dir=args.model_dir,
        out=Path(args.out),
        n_boot=args.n_boot,
        update_card=args.update_card,
    )
    print(json.dumps(report["summary"], indent=2))
    return 0


def cmd_evaluate_anatomy(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.anatomy_eval import run_anatomy_evaluation

    report = run_anatomy_evaluation(data_dir_or_exit(args.data_dir), Path(args.out), model_dir=args.model_dir)
    if args.update_card:
        from cxrtriage.evaluation.model_card import update_bundle_anatomy

        update_bundle_anatomy(report, Path(args.model_dir) if args.model_dir else None)
    print(json.dumps({k: report[k] for k in ("rsna_localisation", "frontal_gate", "jsrt_test")}, indent=2))
    return 0


def cmd_evaluate_generalisation(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.generalisation import previous_generation, run_generalisation

    runs: dict[str, Path] = {}
    problem = None
    for item in args.run:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            problem = f"--run takes NAME=MODEL_DIR, got {item!r}"
        elif not (Path(path) / "model.json").is_file():
            problem = f"--run {name}: {path} holds no model.json (export the run with `cxrtriage export --out {path}`)"
        runs[name] = Path(path)
    if problem is None and args.shipped not in runs:
        problem = f"--shipped {args.shipped!r} is not one of the --run names ({', '.join(runs) or 'none given'})"
    previous = None
    if problem is None and args.previous:  # read before scoring: a bad file must not cost an hour of scoring
        try:
            previous = previous_generation(Path(args.previous), args.previous_name)
        except ValueError as exc:
            problem = f"--previous: {exc}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    report = run_generalisation(
        data_dir_or_exit(args.data_dir), runs, Path(args.out), shipped=args.shipped, previous=previous
    )
    if args.update_card:
        from cxrtriage.evaluation.model_card import update_bundle_generalisation

        update_bundle_generalisation(report, runs[args.shipped])
    summary = {k: report[k] for k in ("seed_spread", "leave_one_source_out", "loso_table")}
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate_operating_points(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.operating_points import run_operating_points

    report = run_operating_points(
        data_dir_or_exit(args.data_dir),
        out=Path(args.out),
        model_dir=args.model_dir,
        generation=args.generation,
        n_boot=args.n_boot,
        jsonl_dir=Path(args.jsonl_dir),
    )
    if args.update_card:
        from cxrtriage.evaluation.model_card import update_bundle_operating_points

        update_bundle_operating_points(report, Path(args.model_dir) if args.model_dir else None)
    if args.doc:
        from cxrtriage.evaluation.operating_points_card import main as render_doc

        render_doc([args.doc])
    keys = ("n", "auc", "specificity_at_sensitivity", "at_threshold", "ece", "review_rate", "refused_by_gate")
    print(json.dumps({name: {k: b.get(k) for k in keys} for name, b in report["sets"].items()}, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.bench import run_bench

    run_bench(
        repeats=args.repeats,
        onnx_fp32=args.fp32,
        checkpoint=args.checkpoint,
        out=args.out,
        update_card=args.update_card,
        baseline_model=args.baseline_model,
        before=None if args.before in ("", "none") else args.before,
    )
    return 0


def cmd_test_set(args: argparse.Namespace) -> int:
    """The held-out test images of the committed split as a gold / examples JSONL (labels and IDs, no images)."""
    from cxrtriage.evaluation.held_out import held_out_examples
    from cxrtriage.evaluation.input_files import InputProblem, write_jsonl

    try:
        rows = held_out_examples(data_dir_or_exit(args.data_dir), args.dataset)
    except (InputProblem, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_jsonl(rows, Path(args.out))
        n_urgent = sum(r["label"] == "Urgent" for r in rows)
        print(f"wrote {len(rows)} test images ({n_urgent} Urgent) to {args.out}", file=sys.stderr)
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_ratings(args: argparse.Namespace) -> int:
    """``ratings export``: a rating sheet from predictions; ``ratings summarise``: read filled sheets back."""
    from cxrtriage.evaluation import clinician_rating as cr
    from cxrtriage.evaluation.input_files import InputProblem, read_jsonl

    try:
        if args.action == "export":
            rows = [row for _, row in read_jsonl(Path(args.preds))]
            scored = [r for r in rows if not r.get("error")]
            if not scored:
                raise InputProblem(f"{args.preds}: no scored prediction to rate")
            data_dir = Path(args.data_dir) if args.data_dir else command_settings(args).find_data_dir()
            out = cr.export_rating_sheet(
                scored, Path(args.out), n=args.n, seed=args.seed, data_dir=data_dir, thumb_paths=not args.no_thumb_paths
            )
            skipped = f" ({len(rows) - len(scored)} error rows skipped)" if len(scored) < len(rows) else ""
            print(
                f"wrote a rating sheet of {args.n or len(scored)} cases to {out}{skipped}; ratings are empty, "
                "for clinicians to fill in (see prototype/eval/CLINICIAN_RATING.md)",
                file=sys.stderr,
            )
            return 0
        ratings = [r for sheet in args.sheets for r in cr.read_ratings(Path(sheet), reference=args.reference)]
        summary = cr.summarise_ratings(ratings)
    except (InputProblem, ValueError) as exc:  # RatingSheetError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(cr.format_summary(summary))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def add_parser(sub: SubCommands) -> None:
    """Register the evaluation commands on the main CLI's subcommands."""
    s = sub.add_parser("evaluate", help="evaluate the model on held-out test patients")
    s.add_argument("--data-dir")
    s.add_argument("--model-dir")
    s.add_argument(
        "--out",
        default="runs/eval/metrics.json",
        help="report JSON (per-image predictions and gold labels go to runs/eval/)",
    )
    s.add_argument("--n-boot", type=int, default=2000)
    s.add_argument(
        "--update-card",
        action="store_true",
        help="write the measured numbers into the bundle's card.json and model card (of --model-dir, default the "
        "bundled model)",
    )
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser(
        "evaluate-anatomy",
        help="evidence vs RSNA radiologist boxes, the frontal-view check on both sides, JSRT specificity",
    )
    s.add_argument("--data-dir")
    s.add_argument("--model-dir")
    s.add_argument("--out", default="prototype/eval/anatomy_eval.json")
    s.add_argument(
        "--update-card",
        action="store_true",
        help="store the figures in the bundle's card.json and model card (of --model-dir, default the bundled model)",
    )
    s.set_defaults(func=cmd_evaluate_anatomy)

    s = sub.add_parser(
        "evaluate-generalisation",
        help="seed spread and leave-one-source-out: exported runs scored on every source's test patients",
    )
    s.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=MODEL_DIR",
        help="an exported bundle (repeat); runs with the shipped recipe and another seed give the seed spread",
    )
    s.add_argument("--shipped", default="shipped", help="the --run name of the shipped bundle (default: shipped)")
    s.add_argument("--data-dir")
    s.add_argument("--out", default="prototype/eval/generalisation.json")
    s.add_argument(
        "--previous",
        metavar="FILE",
        help="the previous generation's report (e.g. prototype/eval/generalisation_gen2.json): its shipped run's "
        "test figures are kept beside this generation's",
    )
    s.add_argument(
        "--previous-name",
        help="how the card names that run (default: from the file name, generalisation_gen2.json -> generation 2)",
    )
    s.add_argument(
        "--update-card",
        action="store_true",
        help="store the figures in the shipped bundle's card.json and model card",
    )
    s.set_defaults(func=cmd_evaluate_generalisation)

    s = sub.add_parser(
        "evaluate-operating-points",
        help="per source and view: AUC, specificity at sensitivity 0.95/0.98/0.99, ECE, review rate, gate refusals",
    )
    s.add_argument("--data-dir")
    s.add_argument("--model-dir", help="the bundle to measure (default: the bundled model)")
    s.add_argument("--generation", default="", help="how the report names the model, e.g. 'generation 2 (shipped)'")
    s.add_argument("--out", default="prototype/eval/operating_points.json")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the 95%% CIs")
    s.add_argument(
        "--jsonl-dir",
        default="runs/eval",
        help="per-image predictions and gold labels go to JSONL_DIR/<stem of --out>/ (the write-up's curves)",
    )
    s.add_argument("--doc", help="then regenerate the operating-point block of this Markdown file (docs/MODEL.md)")
    s.add_argument(
        "--update-card",
        action="store_true",
        help="store the figures in the bundle's card.json and model card (of --model-dir, default the bundled model)",
    )
    s.set_defaults(func=cmd_evaluate_operating_points)

    s = sub.add_parser("bench", help="speed and memory benchmark (prints numbers)")
    s.add_argument("--repeats", type=int, default=50)
    s.add_argument("--fp32", help="fp32 ONNX model to compare (default: the one next to the bundle if present)")
    s.add_argument("--checkpoint", help="torch checkpoint to compare (needs [train])")
    s.add_argument("--out", help="also write the numbers as JSON here")
    s.add_argument(
        "--baseline-model",
        help="another model bundle (e.g. the previous generation's) timed in the same run, calls interleaved",
    )
    s.add_argument(
        "--before",
        default=DEFAULT_BEFORE,
        metavar="GIT_REF",
        help="time this commit's src/ (unpacked with git archive) against this tree, both pinned to one CPU, calls "
        f"alternating (default {DEFAULT_BEFORE}, the commit before issue 26's speed-up; 'none' to skip)",
    )
    s.add_argument(
        "--update-card",
        action="store_true",
        help="record the numbers in the bundled model's card.json and model card",
    )
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser(
        "test-set", help="write the held-out test images of the committed split as gold JSONL (no images)"
    )
    s.add_argument("--out", help="JSONL file (default: stdout); prototype/eval/test_examples.jsonl is --dataset all")
    s.add_argument("--dataset", choices=["nih", "kermany", "all"], default="all")
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_test_set)

    s = sub.add_parser("ratings", help="clinician rating sheets: export model outputs, summarise filled sheets")
    rsub = s.add_subparsers(dest="action", required=True)
    r = rsub.add_parser("export", help="write a CSV with the model's outputs and EMPTY rating columns")
    r.add_argument("--preds", required=True, help="predictions JSONL (cxrtriage predict --out)")
    r.add_argument("--out", required=True, help="CSV sheet to write")
    r.add_argument("--n", type=int, help="export N cases, stratified by dataset and label (default: all)")
    r.add_argument("--seed", type=int, default=0, help="seed of the case choice (default 0)")
    r.add_argument("--data-dir", help="write image paths relative to this folder (default: the data directory)")
    r.add_argument(
        "--no-thumb-paths", action="store_true", help="leave the crop thumbnail column empty (temporary files)"
    )
    r.set_defaults(func=cmd_ratings)
    r = rsub.add_parser("summarise", aliases=["summarize"], help="validate filled sheets and summarise agreement")
    r.add_argument("sheets", nargs="+", help="filled CSV sheets (one per rater)")
    r.add_argument("--reference", help="the exported sheet: unknown case ids and changed labels become errors")
    r.add_argument("--out", help="also write the summary as JSON here")
    r.set_defaults(func=cmd_ratings)
