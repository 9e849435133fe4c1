"""Training commands: ``cxrtriage train | export | recalibrate | fit-view-probe | fit-finding-probe |
train-segmenter | export-segmenter | split``, what makes and refits the bundled models.

Most need the ``[train]`` extra (torch, scikit-learn): :func:`cxrtriage.cli.options.require_extra` checks it before
the machinery is imported, so a missing extra is one ``error:`` sentence with the pip command and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrtriage import config
from cxrtriage.cli.options import SubCommands, data_dir_or_exit, require_extra

DEFAULT_CHECKPOINT = "runs/bundled/checkpoint.pt"


def cmd_train(args: argparse.Namespace) -> int:
    require_extra("torch", "train", "training")
    from cxrtriage.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        data_dir=str(data_dir_or_exit(args.data_dir)),
        out_dir=args.out,
        epochs=args.epochs,
        seed=args.seed,
        kermany_per_epoch=args.pediatric_per_epoch,
        nih_train=not args.no_nih,
        threads=args.threads,
        window=args.window,
        jsrt_per_epoch=args.jsrt_per_epoch,
        opacity_weight=args.opacity_weight,
        augment=args.augment,
        box_weight=args.box_weight,
        lung_weight=args.lung_weight,
        shenzhen_per_epoch=args.shenzhen_per_epoch,
        select_on=args.select_on,
        balance=args.balance,
        nih_per_epoch=args.nih_per_epoch,
        keep_epochs=args.keep_epochs,
    )
    ckpt = train(cfg)
    print(f"checkpoint written to {ckpt}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    require_extra("torch", "train", "the export")
    from cxrtriage.train.ensemble import MemberMismatch
    from cxrtriage.train.export import export_bundle

    try:
        out = export_bundle(
            [Path(p) for p in args.checkpoint or [DEFAULT_CHECKPOINT]],
            Path(args.out),
            data_dir=data_dir_or_exit(args.data_dir),
            train_log=args.train_log,
            trace=Path(args.trace) if args.trace else None,
            ablation_logs=[Path(p) for p in args.compare_log],
            fp32_copy=Path(args.fp32_copy) if args.fp32_copy else None,
        )
    except MemberMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.no_probes:
        print(f"model bundle written to {out} (no view or finding probe: for measurement, not for shipping)")
        return 0
    from cxrtriage.train.view_probe import fit_view_probe

    probe = fit_view_probe(out, data_dir_or_exit(args.data_dir))
    print(f"view probe: {json.dumps(probe['validation'])}")
    from cxrtriage.train.finding_probe import fit_finding_probe

    finding = fit_finding_probe(out, data_dir_or_exit(args.data_dir))
    print(f"lung-opacity output: {json.dumps(finding['held_out']) if finding else 'not fitted (no RSNA labels)'}")
    print(f"model bundle written to {out}")
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    require_extra("sklearn", "train", "refitting the calibration")
    require_extra("torch", "train", "refitting the calibration")
    from cxrtriage.train.recalibrate import recalibrate

    op = recalibrate(Path(args.model_dir), data_dir_or_exit(args.data_dir))
    print(json.dumps({k: op[k] for k in ("calibration", "threshold", "review_band", "validation_by_source")}, indent=2))
    print("test figures of the old operating point were moved to previous_calibration: run `make evaluate`")
    return 0


def cmd_fit_view_probe(args: argparse.Namespace) -> int:
    require_extra("sklearn", "train", "fitting the view probe")
    from cxrtriage.train.view_probe import fit_view_probe

    block = fit_view_probe(Path(args.model_dir), data_dir_or_exit(args.data_dir))
    print(json.dumps(block["validation"], indent=2))
    return 0


def cmd_fit_finding_probe(args: argparse.Namespace) -> int:
    require_extra("sklearn", "train", "fitting the finding outputs")
    from cxrtriage.train.finding_probe import fit_finding_probe

    block = fit_finding_probe(Path(args.model_dir), data_dir_or_exit(args.data_dir))
    if block is None:
        print("error: no RSNA labels (nih/rsna_labels.csv) in the data directory: nothing to fit", file=sys.stderr)
        return 2
    print(json.dumps({k: block[k] for k in ("name", "fit", "held_out", "named_in_explanation")}, indent=2))
    return 0


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    require_extra("torch", "train", "training the segmentation network")
    from cxrtriage.train.segmentation import SegTrainConfig, train

    cfg = SegTrainConfig(
        data_dir=str(data_dir_or_exit(args.data_dir)),
        out_dir=args.out,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        limit=args.limit,
    )
    ckpt = train(cfg)
    print(f"checkpoint: {ckpt}")
    return 0


def cmd_export_segmenter(args: argparse.Namespace) -> int:
    require_extra("torch", "train", "exporting the segmentation network")
    from cxrtriage.train.segmentation_export import export_segmenter

    ckpt = Path(args.checkpoint)
    meta = export_segmenter(
        ckpt,
        Path(args.out),
        data_dir=data_dir_or_exit(args.data_dir),
        train_log=ckpt.parent / "train_log.json",
        limit=args.limit,
    )
    print(json.dumps(meta["test_dice"], indent=2))
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from cxrtriage.data import SPLIT_FILE, make_default_split, write_split

    write_split(make_default_split(data_dir_or_exit(args.data_dir)))
    print(f"split written to {SPLIT_FILE}")
    return 0


def _add_train_parser(sub: SubCommands) -> None:
    s = sub.add_parser("train", help="train the bundled CNN on the committed split (needs [train])")
    s.add_argument("--data-dir")
    s.add_argument("--out", default="runs/bundled")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--seed", type=int, default=1129)
    s.add_argument(
        "--pediatric-per-epoch", type=int, default=1000, help="pediatric images sampled per epoch (0: NIH only)"
    )
    s.add_argument(
        "--no-nih",
        action="store_true",
        help="leave the NIH adults out of training (leave-one-source-out; the epoch is chosen on the other sources)",
    )
    s.add_argument("--jsrt-per-epoch", type=int, default=60, help="JSRT normal films sampled per epoch (default 60)")
    s.add_argument(
        "--shenzhen-per-epoch",
        type=int,
        default=300,
        help="Shenzhen films (a third adult site) sampled per epoch from its train part (default 300; 0: validation "
        "only, the leave-one-source-out run)",
    )
    s.add_argument(
        "--select-on",
        choices=["nih", "worst", "worst_band"],
        default="worst",
        help="pick the epoch by the worst validation source's specificity at sensitivity 0.95 (default; sources "
        "trained on only), by the worst source's mean specificity over sensitivities 0.80-1.00 (worst_band), or by "
        "NIH validation AUC (generation 2)",
    )
    s.add_argument(
        "--balance",
        choices=["source", "source_label"],
        default="source",
        help="per epoch: every NIH film and a quota of each other source (default), or each source's quota drawn "
        "half urgent, half non-urgent (source_label)",
    )
    s.add_argument("--nih-per-epoch", type=int, help="NIH films per epoch (default: all of its train part)")
    s.add_argument(
        "--keep-epochs", action="store_true", help="also save every epoch's weights in OUT/epochs/ (about 1 MB each)"
    )
    s.add_argument(
        "--opacity-weight",
        type=float,
        default=0.0,
        help="weight of an RSNA lung-opacity head's loss (default 0: no head)",
    )
    s.add_argument(
        "--window",
        choices=["percentile-1-99"],
        default=None,
        help="percentile window in the preprocessing (default: none)",
    )
    s.add_argument("--no-window", dest="window", action="store_const", const=None, help="no window (the default)")
    s.add_argument(
        "--augment",
        choices=["gen1", "gen2", "gen3"],
        default="gen1",
        help="the augmentation: gen1 (rotation, scale, shift, exposure; the default), gen2 (+ noise, lost resolution), "
        "gen3 (acquisition: + aspect ratio, rotation 15 deg, equalisation, blur/sharpening, JPEG)",
    )
    s.add_argument(
        "--strong-augment", dest="augment", action="store_const", const="gen2", help="the same as --augment gen2"
    )
    s.add_argument(
        "--gen1-augment", dest="augment", action="store_const", const="gen1", help="the same as --augment gen1"
    )
    s.add_argument(
        "--box-weight",
        type=float,
        default=0.3,
        help="activation-map loss inside the RSNA boxes (default 0.3; 0: off)",
    )
    s.add_argument(
        "--lung-weight",
        type=float,
        default=0.3,
        help="activation-map loss outside the lungs (default 0.3; 0: off)",
    )
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_train)


def add_parser(sub: SubCommands) -> None:
    """Register the training commands on the main CLI's subcommands."""
    _add_train_parser(sub)

    s = sub.add_parser("export", help="ONNX export, int8 static quantisation, calibration, metadata (needs [train])")
    s.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help=f"checkpoint to export (default {DEFAULT_CHECKPOINT}); give it several times to ship a seed ensemble "
        "of models with the same architecture and preprocessing as one ONNX graph (mean of their logits)",
    )
    s.add_argument(
        "--train-log", default=None, help="train_log.json of the first checkpoint (default: next to the checkpoint)"
    )
    s.add_argument("--out", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.add_argument("--trace", help="write a human-readable trace of the conversion steps here")
    s.add_argument(
        "--fp32-copy",
        help="where to keep the fp32 ONNX model for benchmarks (default: next to the first checkpoint)",
    )
    s.add_argument(
        "--no-probes",
        action="store_true",
        help="skip the view and finding probes (minutes): a bundle measured by evaluate-generalisation, not shipped",
    )
    s.add_argument(
        "--compare-log",
        action="append",
        default=[],
        help="train_log.json of an alternative run (e.g. NIH only) to record beside the chosen one",
    )
    s.set_defaults(func=cmd_export)

    s = sub.add_parser(
        "recalibrate",
        help="refit calibration, threshold and review band of a bundle on every source's "
        "validation part, without retraining (needs [train])",
    )
    s.add_argument("--model-dir", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_recalibrate)

    s = sub.add_parser(
        "fit-view-probe",
        help="fit the lateral-view probe of a classifier bundle into its model.json (needs [train])",
    )
    s.add_argument("--model-dir", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_fit_view_probe)

    s = sub.add_parser(
        "fit-finding-probe",
        help="fit the lung-opacity output of a classifier bundle on the RSNA "
        "radiologist labels into its model.json (needs [train])",
    )
    s.add_argument("--model-dir", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_fit_finding_probe)

    s = sub.add_parser(
        "train-segmenter", help="train the lung-and-heart segmentation network on JSRT/SCR (needs [train])"
    )
    s.add_argument("--data-dir")
    s.add_argument("--out", default="runs/segment")
    s.add_argument("--epochs", type=int, default=60)
    s.add_argument("--seed", type=int, default=1202)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--limit", type=int, help="at most N images per part (smoke tests only)")
    s.set_defaults(func=cmd_train_segmenter)

    s = sub.add_parser(
        "export-segmenter", help="int8 ONNX export of the segmentation network + Dice on the JSRT test split"
    )
    s.add_argument("--checkpoint", default="runs/segment/checkpoint.pt")
    s.add_argument("--out", default=str(config.BUNDLED_WEIGHTS_DIR))
    s.add_argument("--data-dir")
    s.add_argument("--limit", type=int, help="at most N images per part (smoke tests only)")
    s.set_defaults(func=cmd_export_segmenter)

    s = sub.add_parser("split", help="rewrite the committed patient-level split from the data directory")
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_split)
