"""Command line: ``cxrtriage predict | dicom-node | orthanc-pull | segment | train | train-segmenter | export-segmenter | export | recalibrate | evaluate | bench | split | serve | test-set | ratings``.

Each subcommand imports its machinery lazily so that ``cxrtriage predict`` never loads torch. A command that builds
an engine or a server builds its :class:`~cxrtriage.config.Settings` once
(:func:`cxrtriage.cli.options.command_settings`: the environment with its options on top) and passes them down;
nothing is written to the environment.
Exit codes: 0 success, 1 at least one input failed, 2 usage / configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from cxrtriage import config
from cxrtriage.cli.hai_def import add_parser as add_hai_def_parser
from cxrtriage.cli.pacs import add_parser as add_pacs_parser
from cxrtriage.cli.pacs_demo import add_parser as add_pacs_demo_parser
from cxrtriage.cli.options import add_backend_options, command_settings, resolve_data_dir
from cxrtriage.errors import ConfigurationError


def _require_extra(module: str, extra: str, purpose: str) -> None:
    """Exit 2 with one sentence naming the pip command when an optional dependency is missing."""
    from cxrtriage.optional import MissingDependency, require

    try:
        require(module, extra=extra, purpose=purpose)
    except MissingDependency as exc:
        raise SystemExit(f"error: {exc}") from None


def _data_dir(arg: str | None) -> Path:
    try:
        return resolve_data_dir(arg)
    except FileNotFoundError as exc:  # a configuration error: exit 2 with the sentence (module docstring)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_predict(args: argparse.Namespace) -> int:
    from cxrtriage.cli.batch import predict_paths

    settings = command_settings(args)
    if args.model_dir:  # the model of the chosen backend, whatever it is (as Triage(model_dir=...))
        settings = settings.with_model(model=args.model_dir)
    paths = list(args.paths)
    if args.examples:
        from cxrtriage.evaluation.held_out import example_paths
        from cxrtriage.evaluation.input_files import InputProblem

        try:
            paths += [str(p) for p in example_paths(Path(args.examples), _data_dir(args.data_dir), limit=args.limit)]
        except InputProblem as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.limit is not None:
        paths = paths[: max(args.limit, 0)]
    if not paths:
        print("error: give image paths or --examples FILE", file=sys.stderr)
        return 2
    from cxrtriage.cli.batch import SHORTHANDS, requested_outputs
    from cxrtriage.optional import MissingDependency

    try:
        outputs = requested_outputs({option: getattr(args, option) for option in SHORTHANDS}, args.format,
                                    args.out_dir)
    except (ValueError, MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return predict_paths(paths, prior_report_file=args.prior_report_file, out=args.out, settings=settings,
                         outputs=outputs)


def cmd_segment(args: argparse.Namespace) -> int:
    from cxrtriage.cli.segment import segment_paths

    return segment_paths(list(args.paths), args.out, command_settings(args, segmenter_dir=args.model_dir))


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    _require_extra("torch", "train", "training the segmentation network")
    from cxrtriage.train.segmentation import SegTrainConfig, train

    ckpt = train(SegTrainConfig(data_dir=str(_data_dir(args.data_dir)), out_dir=args.out, epochs=args.epochs,
                                seed=args.seed, threads=args.threads, limit=args.limit))
    print(f"checkpoint: {ckpt}")
    return 0


def cmd_export_segmenter(args: argparse.Namespace) -> int:
    _require_extra("torch", "train", "exporting the segmentation network")
    from cxrtriage.train.segmentation_export import export_segmenter

    ckpt = Path(args.checkpoint)
    meta = export_segmenter(ckpt, Path(args.out), data_dir=_data_dir(args.data_dir), train_log=ckpt.parent / "train_log.json",
                            limit=args.limit)
    print(json.dumps(meta["test_dice"], indent=2))
    return 0


def cmd_fit_view_probe(args: argparse.Namespace) -> int:
    _require_extra("sklearn", "train", "fitting the view probe")
    from cxrtriage.train.view_probe import fit_view_probe

    block = fit_view_probe(Path(args.model_dir), _data_dir(args.data_dir))
    print(json.dumps(block["validation"], indent=2))
    return 0


def cmd_fit_finding_probe(args: argparse.Namespace) -> int:
    _require_extra("sklearn", "train", "fitting the finding outputs")
    from cxrtriage.train.finding_probe import fit_finding_probe

    block = fit_finding_probe(Path(args.model_dir), _data_dir(args.data_dir))
    if block is None:
        print("error: no RSNA labels (nih/rsna_labels.csv) in the data directory: nothing to fit", file=sys.stderr)
        return 2
    print(json.dumps({k: block[k] for k in ("name", "fit", "held_out", "named_in_explanation")}, indent=2))
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    _require_extra("sklearn", "train", "refitting the calibration")
    _require_extra("torch", "train", "refitting the calibration")
    from cxrtriage.train.recalibrate import recalibrate

    op = recalibrate(Path(args.model_dir), _data_dir(args.data_dir))
    print(json.dumps({k: op[k] for k in ("calibration", "threshold", "review_band", "validation_by_source")}, indent=2))
    print("test figures of the old operating point were moved to previous_calibration: run `make evaluate`")
    return 0


def cmd_evaluate_anatomy(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.anatomy_eval import run_anatomy_evaluation

    report = run_anatomy_evaluation(_data_dir(args.data_dir), Path(args.out), model_dir=args.model_dir)
    if args.update_card:
        from cxrtriage.evaluation.model_card import update_bundle_anatomy

        update_bundle_anatomy(report, Path(args.model_dir) if args.model_dir else None)
    print(json.dumps({k: report[k] for k in ("rsna_localisation", "frontal_gate", "jsrt_test")}, indent=2))
    return 0


def cmd_evaluate_generalisation(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.generalisation import run_generalisation

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
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    report = run_generalisation(_data_dir(args.data_dir), runs, Path(args.out), shipped=args.shipped)
    if args.update_card:
        from cxrtriage.evaluation.model_card import update_bundle_generalisation

        update_bundle_generalisation(report, runs[args.shipped])
    print(json.dumps({"seed_spread": report["seed_spread"], "leave_one_source_out": report["leave_one_source_out"]}, indent=2))
    return 0


def _build_deliverable(name: str, build: Callable[[Path], object]) -> int:
    """Run a deliverable's builder on the checkout (``writeup``, ``video``); a missing input is a usage error."""
    from cxrtriage.evaluation.notebook_run import project_root

    root = project_root()
    if root is None:
        print(f"error: run `cxrtriage {name}` inside a cxrtriage checkout (it reads prototype/eval/ and docs/)", file=sys.stderr)
        return 2
    try:
        build(root)
    except (FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_writeup(args: argparse.Namespace) -> int:
    """Render writeup.pdf from docs/writeup/writeup.md.j2 and the metrics files."""
    from cxrtriage.evaluation.writeup import build_writeup

    data = None if args.no_screenshot else _data_dir(args.data_dir)
    return _build_deliverable("writeup", lambda root: build_writeup(
        root, (root / args.out).resolve(), data_dir=data, figures=not args.no_figures, screenshot=not args.no_screenshot))


def cmd_video(args: argparse.Namespace) -> int:
    """Record video/demo.mp4 from the running application."""
    from cxrtriage.evaluation.video import build_video

    return _build_deliverable("video", lambda root: build_video(root, _data_dir(args.data_dir)))


def cmd_test_set(args: argparse.Namespace) -> int:
    """The held-out test images of the committed split as a gold / examples JSONL (labels and IDs, no images)."""
    from cxrtriage.evaluation.held_out import held_out_examples
    from cxrtriage.evaluation.input_files import InputProblem, write_jsonl

    try:
        rows = held_out_examples(_data_dir(args.data_dir), args.dataset)
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
            out = cr.export_rating_sheet(scored, Path(args.out), n=args.n, seed=args.seed, data_dir=data_dir,
                                         thumb_paths=not args.no_thumb_paths)
            skipped = f" ({len(rows) - len(scored)} error rows skipped)" if len(scored) < len(rows) else ""
            print(f"wrote a rating sheet of {args.n or len(scored)} cases to {out}{skipped}; ratings are empty, "
                  "for clinicians to fill in (see prototype/eval/CLINICIAN_RATING.md)", file=sys.stderr)
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


def cmd_train(args: argparse.Namespace) -> int:
    _require_extra("torch", "train", "training")
    from cxrtriage.train.trainer import TrainConfig, train

    cfg = TrainConfig(data_dir=str(_data_dir(args.data_dir)), out_dir=args.out, epochs=args.epochs, seed=args.seed,
                      kermany_per_epoch=args.pediatric_per_epoch, nih_train=not args.no_nih, threads=args.threads,
                      window=args.window, jsrt_per_epoch=args.jsrt_per_epoch,
                      opacity_weight=args.opacity_weight, strong_augment=args.strong_augment,
                      box_weight=args.box_weight, lung_weight=args.lung_weight)
    ckpt = train(cfg)
    print(f"checkpoint written to {ckpt}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _require_extra("torch", "train", "the export")
    from cxrtriage.train.export import export_bundle

    out = export_bundle(Path(args.checkpoint), Path(args.out), data_dir=_data_dir(args.data_dir), train_log=args.train_log,
                        trace=Path(args.trace) if args.trace else None,
                        ablation_logs=[Path(p) for p in args.compare_log])
    from cxrtriage.train.view_probe import fit_view_probe

    probe = fit_view_probe(out, _data_dir(args.data_dir))
    print(f"view probe: {json.dumps(probe['validation'])}")
    from cxrtriage.train.finding_probe import fit_finding_probe

    finding = fit_finding_probe(out, _data_dir(args.data_dir))
    print(f"lung-opacity output: {json.dumps(finding['held_out']) if finding else 'not fitted (no RSNA labels)'}")
    print(f"model bundle written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.evaluate import run_evaluation

    report = run_evaluation(_data_dir(args.data_dir), model_dir=args.model_dir, out=Path(args.out), n_boot=args.n_boot,
                            update_card=args.update_card)
    print(json.dumps(report["summary"], indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cxrtriage.evaluation.bench import run_bench

    run_bench(repeats=args.repeats, onnx_fp32=args.fp32, checkpoint=args.checkpoint, out=args.out, update_card=args.update_card)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cxrtriage.cli.demo import run_demo

    return run_demo(args.paths, command_settings(args))


def cmd_split(args: argparse.Namespace) -> int:
    from cxrtriage.data import SPLIT_FILE, make_default_split, write_split

    write_split(make_default_split(_data_dir(args.data_dir)))
    print(f"split written to {SPLIT_FILE}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the web service (API + UI) with uvicorn; needs the [demo] extra, imported only here. The settings built
    here (environment + --host/--port/--backend/--model) reach every worker process as they are
    (:mod:`cxrtriage.serve.server`)."""
    from cxrtriage.optional import MissingDependency, require_all

    try:  # fail here with a clear message rather than inside a worker
        require_all({"uvicorn": "demo", "fastapi": "demo"}, purpose="the web service")
    except MissingDependency as exc:
        raise SystemExit(f"error: {exc}") from None
    from uvicorn.config import LOGGING_CONFIG

    from cxrtriage.serve.server import run_server

    settings = command_settings(args, host=args.host, port=args.port)
    print(f"cxrtriage UI: http://{settings.host}:{settings.port}/ui  "
          f"API docs: http://{settings.host}:{settings.port}/docs", flush=True)
    log_config = {**LOGGING_CONFIG, "loggers": {**LOGGING_CONFIG["loggers"],
                                                "cxrtriage": {"handlers": ["default"], "level": "INFO", "propagate": False}}}
    return run_server(settings, workers=args.workers, log_config=log_config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrtriage", description="Offline chest X-ray triage (decision support only — not a diagnostic tool).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("predict", help="triage one or more images (PNG, JPEG, DICOM)")
    s.add_argument("paths", nargs="*", help="image files")
    s.add_argument("--prior-report-file", help="text file with the prior radiology report (applies to every input)")
    s.add_argument("--out", help="write JSON lines here instead of stdout")
    s.add_argument("--model-dir", help="model bundle directory (default: the bundled model)")
    s.add_argument("--examples", help="also triage the images of a test-examples / gold JSONL ('path' relative to "
                                      "the data directory), e.g. from `cxrtriage test-set`")
    s.add_argument("--data-dir", help="data directory for --examples (default: CXRTRIAGE_DATA_DIR or ../shared/data)")
    s.add_argument("--limit", type=int, help="only the first N images (of --examples, else of the paths)")
    s.add_argument("--format", action="append", metavar="NAME",
                   help="also write this output format per triaged input to --out-dir DIR/<stem><suffix> (repeat "
                        "for several): json, fhir (FHIR DiagnosticReport), sr (DICOM SR), sc (DICOM Secondary "
                        "Capture; sr and sc for DICOM inputs only), or any format registered in "
                        "cxrtriage.interop.formats")
    s.add_argument("--out-dir", metavar="DIR", help="the folder --format writes to")
    s.add_argument("--fhir", metavar="DIR", help="also write a FHIR DiagnosticReport per triaged input to DIR/<stem>.fhir.json "
                                                 "(needs the [interop] extra; the same as --format fhir --out-dir DIR)")
    s.add_argument("--sr", metavar="DIR", help="also write a DICOM Structured Report (TID 1500: category, score, "
                                               "threshold, model, evidence boxes as regions on the image) per DICOM "
                                               "input to DIR/<stem>.sr.dcm, and beside it DIR/<stem>.sc.dcm, a "
                                               "Secondary Capture of the image with the boxes and the result burned "
                                               "in for viewers that cannot show SR regions (needs the [interop] "
                                               "extra; the same as --format sr --format sc --out-dir DIR)")
    add_backend_options(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("segment", help="lung and heart masks (0/255 PNG, original size) + cardiothoracic ratio per image")
    s.add_argument("paths", nargs="+", help="image files (PNG, JPEG, DICOM)")
    s.add_argument("--out", required=True, help="folder for <stem>_lungs.png and <stem>_heart.png")
    s.add_argument("--model-dir", help="folder with segment.onnx + segment.json (default: the bundled segmenter)")
    s.set_defaults(func=cmd_segment)

    s = sub.add_parser("train-segmenter", help="train the lung-and-heart segmentation network on JSRT/SCR (needs [train])")
    s.add_argument("--data-dir")
    s.add_argument("--out", default="runs/segment")
    s.add_argument("--epochs", type=int, default=60)
    s.add_argument("--seed", type=int, default=1202)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--limit", type=int, help="at most N images per part (smoke tests only)")
    s.set_defaults(func=cmd_train_segmenter)

    s = sub.add_parser("export-segmenter", help="int8 ONNX export of the segmentation network + Dice on the JSRT test split")
    s.add_argument("--checkpoint", default="runs/segment/checkpoint.pt")
    s.add_argument("--out", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.add_argument("--limit", type=int, help="at most N images per part (smoke tests only)")
    s.set_defaults(func=cmd_export_segmenter)

    s = sub.add_parser("recalibrate", help="refit calibration, threshold and review band of a bundle on every source's "
                       "validation part, without retraining (needs [train])")
    s.add_argument("--model-dir", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_recalibrate)

    s = sub.add_parser("fit-finding-probe", help="fit the lung-opacity output of a classifier bundle on the RSNA "
                       "radiologist labels into its model.json (needs [train])")
    s.add_argument("--model-dir", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_fit_finding_probe)

    s = sub.add_parser("fit-view-probe", help="fit the lateral-view probe of a classifier bundle into its model.json (needs [train])")
    s.add_argument("--model-dir", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_fit_view_probe)

    s = sub.add_parser("train", help="train the bundled CNN on the committed split (needs [train])")
    s.add_argument("--data-dir")
    s.add_argument("--out", default="runs/bundled")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--seed", type=int, default=1129)
    s.add_argument("--pediatric-per-epoch", type=int, default=1000, help="pediatric images sampled per epoch (0: NIH only)")
    s.add_argument("--no-nih", action="store_true",
                   help="leave the NIH adults out of training (leave-one-source-out; the epoch is chosen on pediatric validation)")
    s.add_argument("--jsrt-per-epoch", type=int, default=0, help="JSRT normal films sampled per epoch (default 0)")
    s.add_argument("--opacity-weight", type=float, default=0.0, help="weight of an RSNA lung-opacity head's loss (default 0: no head)")
    s.add_argument("--window", choices=["percentile-1-99"], default=None, help="percentile window in the preprocessing (default: none)")
    s.add_argument("--no-window", dest="window", action="store_const", const=None, help="no window (the default)")
    s.add_argument("--strong-augment", action="store_true", help="noise and resolution loss in the augmentation")
    s.add_argument("--gen1-augment", dest="strong_augment", action="store_false", help="generation 1's augmentation (the default)")
    s.add_argument("--box-weight", type=float, default=0.3, help="activation-map loss inside the RSNA boxes (default 0.3; 0: off)")
    s.add_argument("--lung-weight", type=float, default=0.3, help="activation-map loss outside the lungs (default 0.3; 0: off)")
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("export", help="ONNX export, int8 static quantisation, calibration, metadata (needs [train])")
    s.add_argument("--checkpoint", default="runs/bundled/checkpoint.pt")
    s.add_argument("--train-log", default=None, help="train_log.json to record (default: next to the checkpoint)")
    s.add_argument("--out", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.add_argument("--trace", help="write a human-readable trace of the conversion steps here")
    s.add_argument("--compare-log", action="append", default=[],
                   help="train_log.json of an alternative run (e.g. NIH only) to record beside the chosen one")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("evaluate", help="evaluate the model on held-out test patients")
    s.add_argument("--data-dir")
    s.add_argument("--model-dir")
    s.add_argument("--out", default="runs/eval/metrics.json", help="report JSON (per-image predictions and gold labels go to runs/eval/)")
    s.add_argument("--n-boot", type=int, default=2000)
    s.add_argument("--update-card", action="store_true", help="write the measured numbers into the bundled model card")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("evaluate-anatomy", help="evidence vs RSNA radiologist boxes, the frontal-view check on both sides, JSRT specificity")
    s.add_argument("--data-dir")
    s.add_argument("--model-dir")
    s.add_argument("--out", default="prototype/eval/anatomy_eval.json")
    s.add_argument("--update-card", action="store_true", help="store the figures in model.json and the model card")
    s.set_defaults(func=cmd_evaluate_anatomy)

    s = sub.add_parser("evaluate-generalisation",
                       help="seed spread and leave-one-source-out: exported runs scored on every source's test patients")
    s.add_argument("--run", action="append", default=[], metavar="NAME=MODEL_DIR",
                   help="an exported bundle (repeat); runs with the shipped recipe and another seed give the seed spread")
    s.add_argument("--shipped", default="shipped", help="the --run name of the shipped bundle (default: shipped)")
    s.add_argument("--data-dir")
    s.add_argument("--out", default="prototype/eval/generalisation.json")
    s.add_argument("--update-card", action="store_true", help="store the figures in the shipped bundle's model.json and card")
    s.set_defaults(func=cmd_evaluate_generalisation)

    s = sub.add_parser("writeup", help="render writeup.pdf (figures, UI screenshot, numbers from the metrics files; "
                       "needs the data directory, chromium and the [notebooks] extra)")
    s.add_argument("--out", default="writeup.pdf", help="PDF path, relative to the checkout (default writeup.pdf)")
    s.add_argument("--data-dir")
    s.add_argument("--no-figures", action="store_true", help="reuse the ROC, calibration and architecture figures of an earlier run")
    s.add_argument("--no-screenshot", action="store_true", help="reuse the UI screenshot of an earlier run")
    s.set_defaults(func=cmd_writeup)

    s = sub.add_parser("video", help="record video/demo.mp4 from the running service and UI (needs the data directory, "
                       "chromium, ffmpeg and Playwright)")
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_video)

    s = sub.add_parser("bench", help="speed and memory benchmark (prints numbers)")
    s.add_argument("--repeats", type=int, default=50)
    s.add_argument("--fp32", help="fp32 ONNX model to compare (default: the one next to the bundle if present)")
    s.add_argument("--checkpoint", help="torch checkpoint to compare (needs [train])")
    s.add_argument("--out", help="also write the numbers as JSON here")
    s.add_argument("--update-card", action="store_true", help="record the numbers in the bundled model card")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="triage example images from the data directory (or the given paths) and print readable results")
    s.add_argument("paths", nargs="*")
    add_backend_options(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("split", help="rewrite the committed patient-level split from the data directory")
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_split)

    s = sub.add_parser("serve", help="run the web service: REST API, UI at /ui, docs at /docs (needs [demo])")
    s.add_argument("--host", help="interface to listen on (default: CXRTRIAGE_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, help="TCP port (default: CXRTRIAGE_PORT or 7860)")
    s.add_argument("--workers", type=int, default=1, help="worker processes; each loads its own model (default 1)")
    add_backend_options(s)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("test-set", help="write the held-out test images of the committed split as gold JSONL (no images)")
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
    r.add_argument("--no-thumb-paths", action="store_true", help="leave the crop thumbnail column empty (temporary files)")
    r.set_defaults(func=cmd_ratings)
    r = rsub.add_parser("summarise", aliases=["summarize"], help="validate filled sheets and summarise agreement")
    r.add_argument("sheets", nargs="+", help="filled CSV sheets (one per rater)")
    r.add_argument("--reference", help="the exported sheet: unknown case ids and changed labels become errors")
    r.add_argument("--out", help="also write the summary as JSON here")
    r.set_defaults(func=cmd_ratings)

    add_hai_def_parser(sub)  # cxrtriage hai-def ... (cxrtriage.cli.hai_def)
    add_pacs_parser(sub)  # cxrtriage dicom-node / orthanc-pull (cxrtriage.cli.pacs)
    add_pacs_demo_parser(sub)  # cxrtriage pacs-demo (cxrtriage.cli.pacs_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigurationError as exc:  # a bad CXRTRIAGE_* value or option: the sentence names it
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
