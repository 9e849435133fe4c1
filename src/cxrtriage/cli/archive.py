"""``cxrtriage batch SOURCE... --out RESULTS``: a whole archive (folders, manifests, object-storage URIs) triaged on
Ray Data into Parquet, resumable (:mod:`cxrtriage.archive`). Needs the ``[batch]`` extra; Ray is imported only when
the command runs, so ``cxrtriage --help`` and every other command never load it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrtriage.cli.options import SubCommands, add_backend_options, add_site_option, command_settings, require_extra


def cmd_batch(args: argparse.Namespace) -> int:
    require_extra("ray", "batch", "cxrtriage batch")
    from cxrtriage.archive.run import BatchOptions, print_summary, run_batch
    from cxrtriage.archive.sources import SourceError
    from cxrtriage.interop.outputs import SHORTHANDS, requested_outputs
    from cxrtriage.optional import MissingDependency

    if args.workers is not None and args.workers < 1 or args.batch_size < 1:
        print("error: --workers and --batch-size must be at least 1", file=sys.stderr)
        return 2
    prior = None
    try:
        outputs = requested_outputs({option: getattr(args, option) for option in SHORTHANDS}, args.format, args.out_dir)
        if args.prior_report_file:  # read as `predict` reads it: a stray byte is replaced, not an error
            prior = Path(args.prior_report_file).read_text(encoding="utf-8", errors="replace")
    except (ValueError, MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read prior report file {args.prior_report_file}: {exc.strerror}", file=sys.stderr)
        return 2
    settings = command_settings(args, crops_dir=args.crops)
    options = BatchOptions(
        sources=list(args.sources),
        out=args.out,
        settings=settings,
        workers=args.workers,
        address=args.address,
        num_cpus=args.num_cpus,
        resume=args.resume,
        batch_size=args.batch_size,
        jsonl=args.jsonl,
        save_crops=bool(args.crops),
        outputs=[(fmt, folder.resolve()) for fmt, folder in outputs],
        prior_report=prior,
        progress=not args.no_progress,
    )
    try:
        result = run_batch(options)
    except (SourceError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the parts written so far are complete: say how to finish
        print(f"\ninterrupted: the same command with --resume finishes {args.out}", file=sys.stderr)
        return 130
    print_summary(result)
    failed = result["run"]["failed"]
    if failed:
        print(f"{failed} input(s) could not be triaged: see the error_type and error columns", file=sys.stderr)
    return 1 if failed else 0


def add_parser(sub: SubCommands) -> None:
    """Register ``batch`` on the main CLI's subcommands."""
    s = sub.add_parser(
        "batch",
        help="triage a whole archive on Ray Data (local by default, or a cluster) into Parquet; resumable "
        "(needs the [batch] extra)",
    )
    s.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="image files, folders (recursive: PNG, JPEG, DICOM with or without .dcm), manifests (.csv, .jsonl, "
        ".parquet with a 'path' column, optional 'prior_report' and 'accession'), or URIs (file://, s3://, gs://...)",
    )
    s.add_argument("--out", required=True, help="results folder of Parquet part files, e.g. results.parquet")
    s.add_argument("--resume", action="store_true", help="skip inputs already in --out (same path and content hash)")
    s.add_argument("--workers", type=int, help="actors, each with its own model (default: one per CPU of the cluster)")
    s.add_argument("--address", help="join this Ray cluster (e.g. ray://head:10001 or auto); default: a local one")
    s.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: all of this machine's)")
    s.add_argument("--batch-size", type=int, default=64, help="inputs per actor call and per part file (default 64)")
    s.add_argument("--jsonl", metavar="FILE", help="also write every row as `cxrtriage predict` prints it")
    s.add_argument("--crops", metavar="DIR", help="save the evidence crop thumbnails into DIR (default: none)")
    s.add_argument("--prior-report-file", help="text file with a prior report for every input without its own")
    s.add_argument(
        "--format",
        action="append",
        metavar="NAME",
        help="also write this output format per input to --out-dir (as predict)",
    )
    s.add_argument("--out-dir", metavar="DIR", help="the folder --format writes to")
    s.add_argument("--fhir", metavar="DIR", help="also write a FHIR DiagnosticReport per input to DIR (as predict)")
    s.add_argument("--sr", metavar="DIR", help="also write a DICOM SR and Secondary Capture per DICOM input to DIR")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    add_backend_options(s)
    add_site_option(s)
    s.set_defaults(func=cmd_batch)
