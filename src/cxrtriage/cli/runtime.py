"""Run-time commands: ``cxrtriage predict | segment | demo | serve``, what a site runs on its images.

They need only the core install (``serve`` the ``[demo]`` extra) and never load torch: each command imports its
machinery when it runs, so building the parser stays light. Each builds its :class:`~cxrtriage.config.Settings`
once (:func:`cxrtriage.cli.options.command_settings`) and passes them to the engine or the server it starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrtriage.cli.options import (
    SubCommands,
    add_backend_options,
    add_site_option,
    command_settings,
    data_dir_or_exit,
    site_problem,
)
from cxrtriage.config import Settings


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
            examples = example_paths(Path(args.examples), data_dir_or_exit(args.data_dir), limit=args.limit)
            paths += [str(p) for p in examples]
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
        outputs = requested_outputs({option: getattr(args, option) for option in SHORTHANDS}, args.format, args.out_dir)
    except (ValueError, MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return predict_paths(
        paths, prior_report_file=args.prior_report_file, out=args.out, settings=settings, outputs=outputs
    )


def cmd_segment(args: argparse.Namespace) -> int:
    from cxrtriage.cli.segment import segment_paths

    return segment_paths(list(args.paths), args.out, command_settings(args, segmenter_dir=args.model_dir))


def cmd_demo(args: argparse.Namespace) -> int:
    from cxrtriage.cli.demo import run_demo

    return run_demo(args.paths, command_settings(args))


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the web service (API + UI) with uvicorn; needs the [demo] extra, imported only here. The settings built
    here (environment + --host/--port/--backend/--model/--ssl-*/--allowed-hosts) reach every worker process as they
    are (:mod:`cxrtriage.serve.server`). Without authentication configured it refuses (exit 2) to listen on a
    non-loopback interface unless --insecure-no-auth is given (:func:`cxrtriage.security.authenticate.exposure`)."""
    from cxrtriage.optional import MissingDependency, require_all

    try:  # fail here with a clear message rather than inside a worker
        require_all({"uvicorn": "demo", "fastapi": "demo", "jwt": "demo"}, purpose="the web service")
    except MissingDependency as exc:
        raise SystemExit(f"error: {exc}") from None
    from uvicorn.config import LOGGING_CONFIG

    from cxrtriage.security.authenticate import exposure
    from cxrtriage.serve.server import run_server

    settings = command_settings(
        args,
        host=args.host,
        port=args.port,
        allowed_hosts=args.allowed_hosts,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    problem = _tls_problem(settings) or site_problem(settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    decision = exposure(settings, insecure_no_auth=args.insecure_no_auth)  # the sentence says how to configure it
    if decision.refusal:
        print(f"error: {decision.refusal}", file=sys.stderr)
        return 2
    for warning in decision.warnings:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    scheme = "https" if settings.ssl_certfile else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
    print(f"cxrtriage UI: {base}/ui  API docs: {base}/docs", flush=True)
    cxrtriage_logger = {"handlers": ["default"], "level": "INFO", "propagate": False}
    log_config = {**LOGGING_CONFIG, "loggers": {**LOGGING_CONFIG["loggers"], "cxrtriage": cxrtriage_logger}}
    return run_server(settings, workers=args.workers, log_config=log_config)


def _tls_problem(settings: Settings) -> str | None:
    """Why the TLS options cannot work (given alone, or a file that is not there), else None."""
    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    if bool(cert) != bool(key):
        return "TLS needs both --ssl-certfile and --ssl-keyfile (CXRTRIAGE_SSL_CERTFILE, CXRTRIAGE_SSL_KEYFILE)"
    for option, path in (("--ssl-certfile", cert), ("--ssl-keyfile", key)):
        if path is not None and not path.is_file():
            return f"{option} {path}: no such file"
    return None


def add_parser(sub: SubCommands) -> None:
    """Register ``predict``, ``segment``, ``demo`` and ``serve`` on the main CLI's subcommands."""
    s = sub.add_parser("predict", help="triage one or more images (PNG, JPEG, DICOM)")
    s.add_argument("paths", nargs="*", help="image files")
    s.add_argument("--prior-report-file", help="text file with the prior radiology report (applies to every input)")
    s.add_argument("--out", help="write JSON lines here instead of stdout")
    s.add_argument("--model-dir", help="model bundle directory (default: the bundled model)")
    s.add_argument(
        "--examples",
        help="also triage the images of a test-examples / gold JSONL ('path' relative to "
        "the data directory), e.g. from `cxrtriage test-set`",
    )
    s.add_argument("--data-dir", help="data directory for --examples (default: CXRTRIAGE_DATA_DIR or ../shared/data)")
    s.add_argument("--limit", type=int, help="only the first N images (of --examples, else of the paths)")
    s.add_argument(
        "--format",
        action="append",
        metavar="NAME",
        help="also write this output format per triaged input to --out-dir DIR/<stem><suffix> (repeat "
        "for several): json, fhir (FHIR DiagnosticReport), sr (DICOM SR), sc (DICOM Secondary "
        "Capture; sr and sc for DICOM inputs only), or any format registered in "
        "cxrtriage.interop.formats",
    )
    s.add_argument("--out-dir", metavar="DIR", help="the folder --format writes to")
    s.add_argument(
        "--fhir",
        metavar="DIR",
        help="also write a FHIR DiagnosticReport per triaged input to DIR/<stem>.fhir.json "
        "(needs the [interop] extra; the same as --format fhir --out-dir DIR)",
    )
    s.add_argument(
        "--sr",
        metavar="DIR",
        help="also write a DICOM Structured Report (TID 1500: category, score, "
        "threshold, model, evidence boxes as regions on the image) per DICOM "
        "input to DIR/<stem>.sr.dcm, and beside it DIR/<stem>.sc.dcm, a "
        "Secondary Capture of the image with the boxes and the result burned "
        "in for viewers that cannot show SR regions (needs the [interop] "
        "extra; the same as --format sr --format sc --out-dir DIR)",
    )
    add_backend_options(s)
    add_site_option(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser(
        "segment", help="lung and heart masks (0/255 PNG, original size) + cardiothoracic ratio per image"
    )
    s.add_argument("paths", nargs="+", help="image files (PNG, JPEG, DICOM)")
    s.add_argument("--out", required=True, help="folder for <stem>_lungs.png and <stem>_heart.png")
    s.add_argument("--model-dir", help="folder with segment.onnx + segment.json (default: the bundled segmenter)")
    s.set_defaults(func=cmd_segment)

    s = sub.add_parser(
        "demo",
        help="triage example images from the data directory (or the given paths) and print readable results",
    )
    s.add_argument("paths", nargs="*")
    add_backend_options(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="run the web service: REST API, UI at /ui, docs at /docs (needs [demo])")
    s.add_argument("--host", help="interface to listen on (default: CXRTRIAGE_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, help="TCP port (default: CXRTRIAGE_PORT or 7860)")
    s.add_argument("--workers", type=int, default=1, help="worker processes; each loads its own model (default 1)")
    s.add_argument("--ssl-certfile", help="TLS certificate (PEM): serve HTTPS (default: CXRTRIAGE_SSL_CERTFILE)")
    s.add_argument("--ssl-keyfile", help="the certificate's private key (PEM) (default: CXRTRIAGE_SSL_KEYFILE)")
    s.add_argument(
        "--allowed-hosts",
        help="host names the service answers to, comma-separated (default: CXRTRIAGE_ALLOWED_HOSTS, else loopback)",
    )
    s.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve on a non-loopback interface WITHOUT authentication (demos on a trusted network only; a warning "
        "is printed on every start)",
    )
    add_backend_options(s)
    add_site_option(s)
    s.set_defaults(func=cmd_serve)
