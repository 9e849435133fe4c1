"""PACS commands: ``cxrtriage dicom-node`` (a DICOM Storage SCP that triages what it receives and C-STOREs the SR
back), ``cxrtriage orthanc-pull`` (polls an Orthanc PACS over REST and stores the SR back) and ``cxrtriage pacs-demo``
(``make pacs-demo``: a hospital's DICOM flow on loopback in one command, :data:`PACS_DEMO_DESCRIPTION`).

Each builds its :class:`~cxrtriage.config.Settings` once (the environment, ``--backend`` / ``--model`` on top): the
engine (:meth:`cxrtriage.pipeline.Triage.from_config`) and the default worklist come from them. The node and the
poller run until SIGINT/SIGTERM, then finish the instances already received. They log one line per instance with
running counts (and, with ``--status-file``, write the counts as JSON); no line holds a patient identifier. Their
exit codes: 0 stopped cleanly, 1 the queue could not be drained in time, 2 usage or configuration error (a missing
``[interop]`` extra, a bad destination, an unreachable Orthanc at start); ``pacs-demo``'s are in its description.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from cxrtriage.cli.options import (
    SubCommands,
    add_backend_options,
    add_site_option,
    command_settings,
    resolve_data_dir,
)
from cxrtriage.config import Settings

#: ``cxrtriage pacs-demo --help``'s description (``make pacs-demo``, ``make pacs-check``)
PACS_DEMO_DESCRIPTION = (
    "It starts a real Orthanc PACS, cxrtriage's DICOM node and the web service with its UI, sends the shared DICOMs "
    "and DICOMs made from public PNGs (synthetic identifiers) with dcmtk's storescu, waits until every instance is "
    "answered, and checks that each has its SR in Orthanc and that the worklist is in reading order "
    "(:mod:`cxrtriage.pacs.stack`). ``--pull`` runs the same flow in pull mode. Without ``--check`` everything "
    "keeps running until Ctrl-C so you can open Orthanc's explorer and the UI's Worklist tab; with ``--check`` it "
    "exits 0 when every check passed, 1 otherwise, 2 when a step could not run (a tool missing, a server that did "
    "not start)."
)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("pynetdicom", "highdicom"):  # their info lines name UIDs and can dump dataset headers
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_header_validation()


def quiet_header_validation() -> None:
    """pydicom's validation of what it reads warns and logs the offending header value word for word (a name, a
    date, text with a newline that would forge a log line): the node and the poller read headers from the network,
    so it is off in their processes; what they log themselves goes through :func:`cxrtriage.log_text.loggable`."""
    from pydicom import config as pydicom_config

    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def stop_event() -> threading.Event:
    """An event set by SIGINT or SIGTERM: the graceful way out."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _handler(args: argparse.Namespace, send: Any, settings: Settings):
    """Engine, worklist and handler from the shared options and the command's settings (loads the model once)."""
    from cxrtriage.monitoring.store import MonitorStore
    from cxrtriage.pacs.handling import InstanceHandler
    from cxrtriage.pacs.outbox import Outbox
    from cxrtriage.pipeline import Triage
    from cxrtriage.worklist import Worklist

    path = Path(args.worklist) if args.worklist else settings.worklist_path
    try:
        worklist = None if args.no_worklist else Worklist(path, 60.0 * settings.worklist_max_wait_min)
    except (OSError, sqlite3.Error) as exc:
        print(
            f"error: the worklist {path} cannot be opened ({type(exc).__name__}); give a writable --worklist PATH, "
            "or --no-worklist",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    outbox_dir = Path(args.outbox) if args.outbox else _default_beside_worklist(args, settings, "outbox")
    try:
        outbox = Outbox(outbox_dir) if send is not None else None
    except OSError as exc:
        print(
            f"error: the outbox {outbox_dir} cannot be created ({type(exc).__name__}); give a writable --outbox DIR",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    return InstanceHandler(
        Triage.from_config(settings),
        send,
        worklist=worklist,
        fhir_endpoint=args.fhir_endpoint,
        secondary_capture=not args.no_secondary_capture,
        status_path=Path(args.status_file) if args.status_file else None,
        outbox=outbox,
        monitor=MonitorStore.from_settings(settings),  # drift monitoring, beside the service's records
    )


def _check_extra() -> str | None:
    from cxrtriage.optional import MissingDependency, require_all

    try:
        require_all(
            {"pynetdicom": "interop", "highdicom": "interop", "fhir.resources": "interop"}, purpose="the DICOM node"
        )
    except MissingDependency as exc:
        return str(exc)
    return None


def cmd_dicom_node(args: argparse.Namespace) -> int:
    from cxrtriage.pacs.delivery import Destination
    from cxrtriage.pacs.node import DicomNode, NodeConfig, destination_sender

    problem = _check_extra()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        destination = Destination.parse(args.destination) if args.destination else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not 0 < len(args.ae_title) <= 16:
        print("error: --ae-title must be 1-16 characters", file=sys.stderr)
        return 2
    if not args.max_instance_mb > 0:
        print("error: --max-instance-mb must be a positive number of megabytes, e.g. 64", file=sys.stderr)
        return 2
    try:
        server_tls, destination_tls = _tls_contexts(args)
    except ValueError as exc:  # TlsConfigError: names the option and the file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = command_settings(args)
    _configure_logging()
    handler = _handler(args, destination_sender(destination, args.ae_title, destination_tls), settings)
    spool = Path(args.spool) if args.spool else _default_beside_worklist(args, settings, "incoming")
    try:
        spool.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = type(exc).__name__
        print(f"error: the spool {spool} cannot be created ({why}); give a writable --spool DIR", file=sys.stderr)
        return 2
    node = DicomNode(
        NodeConfig(
            ae_title=args.ae_title,
            host=args.host,
            port=args.port,
            allowed_callers=tuple(args.allow_caller or ()),
            queue_size=args.queue_size,
            max_instance_mb=args.max_instance_mb,
            spool_dir=spool,
            tls=server_tls,
        ),
        handler,
    )
    stop = stop_event()
    try:
        node.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})", file=sys.stderr)
        return 2
    if destination is None:
        logging.getLogger("cxrtriage.pacs").warning("no --destination: results are filed on the worklist only")
    stop.wait()
    return 0 if node.stop() else 1


def _default_beside_worklist(args: argparse.Namespace, settings: Settings, name: str) -> Path:
    """A state file or folder beside the worklist (``--worklist``, else the settings'), so that one setting moves all
    the node's state: its outbox and its spool."""
    return (Path(args.worklist) if args.worklist else settings.worklist_path).parent / name


def _tls_contexts(args: argparse.Namespace) -> tuple[Any, Any]:
    """The node's server context (``--tls-*``) and the destination's client context (``--destination-tls``), each
    None when not asked for; :class:`~cxrtriage.pacs.tls.TlsConfigError` (a ValueError) names a bad option or file."""
    from cxrtriage.pacs.tls import TlsConfigError, TlsFiles

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    server = None
    if args.tls_cert or args.tls_key or args.tls_ca:
        server = TlsFiles(path(args.tls_cert), path(args.tls_key), path(args.tls_ca)).server_context()
    destination_files = TlsFiles(path(args.destination_cert), path(args.destination_key), path(args.destination_ca))
    if destination_files != TlsFiles() and not args.destination_tls:
        raise TlsConfigError("--destination-ca/--destination-cert/--destination-key need --destination-tls")
    if args.destination_tls and not args.destination:
        raise TlsConfigError("--destination-tls needs a --destination")
    return server, destination_files.client_context() if args.destination_tls else None


def cmd_orthanc_pull(args: argparse.Namespace) -> int:
    from cxrtriage.pacs.orthanc import OrthancClient, OrthancError, OrthancPoller

    problem = _check_extra()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    settings = command_settings(args)
    _configure_logging()
    client = OrthancClient(args.url, username=args.username, password=os.environ.get("ORTHANC_PASSWORD"))
    handler = _handler(args, client.store, settings)
    state = Path(args.state_file) if args.state_file else settings.state_dir / "orthanc-pull.json"
    try:
        poller = OrthancPoller(client, handler, state, from_beginning=args.from_beginning)
        if args.once:
            poller.poll_once()
            return 0
    except OrthancError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    poller.run(args.interval, stop_event())
    return 0


def cmd_pacs_demo(args: argparse.Namespace) -> int:
    """``make pacs-demo`` / ``make pacs-check``: see :data:`PACS_DEMO_DESCRIPTION`."""
    from cxrtriage.pacs.stack import Ports, pacs_stack
    from cxrtriage.pacs.stack_checks import check_results
    from cxrtriage.pacs.stack_tools import DemoError

    settings = command_settings(args)  # what the node, the poller and the service it starts run with
    try:
        data_dir = resolve_data_dir(args.data_dir, settings)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ports = (
        Ports.free()
        if args.free_ports
        else Ports(args.orthanc_http_port, args.orthanc_dicom_port, args.node_port, args.port)
    )
    try:
        with pacs_stack(
            data_dir, ports, pull=args.pull, timeout_s=args.timeout, keep=args.keep, settings=settings
        ) as stack:
            report = check_results(stack)
            if args.out:
                record = {
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": "make pacs-check",
                    "cpu_count": os.cpu_count(),
                    "mode": stack.mode,
                    "sent": len(stack.sent),
                    "status": stack.status,
                    "all_passed": report.ok,
                    "checks": report.checks,
                }
                Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
            if not args.check:
                print(
                    f"\nOrthanc explorer: {stack.orthanc_base}/app/explorer.html\n"
                    f"cxrtriage UI:     {stack.ui_base}/ui (Worklist tab)\n"
                    f"cxrtriage API key (admin, X-API-Key): in {stack.key_file}\nPress Ctrl-C to stop everything.",
                    flush=True,
                )
                stop_event().wait()
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pacs-demo: {'all checks passed' if report.ok else 'SOME CHECKS FAILED'}", flush=True)
    return 0 if report.ok else 1


def _http_url(text: str) -> str:
    """An argparse type for a REST or FHIR base URL: http(s) with a host (urllib would also open ``file:`` URLs).
    The message names the scheme only: a URL may carry a password."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL with a host (scheme {parts.scheme!r})")
    return text


def _add_result_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--fhir-endpoint",
        metavar="URL",
        type=_http_url,
        help="also POST a FHIR DiagnosticReport per triaged instance to URL/DiagnosticReport (an EHR's FHIR base URL)",
    )
    s.add_argument(
        "--worklist",
        metavar="PATH",
        help="the reading worklist (SQLite) to file results on (default: "
        "CXRTRIAGE_WORKLIST_PATH, the same as cxrtriage serve's)",
    )
    s.add_argument("--no-worklist", action="store_true", help="do not file results on the worklist")
    s.add_argument(
        "--no-secondary-capture",
        action="store_true",
        help="send only the SR, not the Secondary Capture with the evidence boxes burned in",
    )
    s.add_argument("--status-file", metavar="PATH", help="keep the running counts here as JSON")
    s.add_argument(
        "--outbox",
        metavar="DIR",
        help="results the PACS did not take wait here (mode 0700: they hold "
        "patient attributes) and are re-sent (default: beside the worklist)",
    )
    add_backend_options(s)
    add_site_option(s)


def _add_tls_options(s: argparse.ArgumentParser) -> None:
    tls = s.add_argument_group("DICOM over TLS (TLS 1.2 or newer)")
    tls.add_argument("--tls-cert", metavar="PEM", help="the node's certificate: accept DICOM over TLS only")
    tls.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    tls.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="require client certificates signed by this CA (without it, none are asked for)",
    )
    tls.add_argument("--destination-tls", action="store_true", help="send results to --destination over TLS")
    tls.add_argument(
        "--destination-ca", metavar="PEM", help="CA that signed the destination's certificate (default: system's)"
    )
    tls.add_argument("--destination-cert", metavar="PEM", help="client certificate for a destination that asks")
    tls.add_argument("--destination-key", metavar="PEM", help="the private key of --destination-cert")


def add_parser(subparsers: SubCommands) -> None:
    """Register ``dicom-node``, ``orthanc-pull`` and ``pacs-demo`` on the main CLI's subcommands."""
    s = subparsers.add_parser(
        "dicom-node",
        help="DICOM Storage SCP: triage each CR/DX received, C-STORE an SR back (needs [interop])",
        description="Receive chest radiographs over DICOM (C-STORE), triage each, and send a DICOM SR (TID 1500) and "
        "a Secondary Capture with the evidence boxes to --destination. Anything that cannot be triaged "
        "is answered with an SR that says why; an instance without its UIDs is answered 0xC210, one over "
        "--max-instance-mb or one arriving while the queue is full 0xA700. With --tls-cert/--tls-key it speaks "
        "DICOM over TLS only. Stops on Ctrl-C/SIGTERM after finishing its queue.",
    )
    s.add_argument("--ae-title", default="CXRTRIAGE", help="this node's AE title (default CXRTRIAGE)")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112)")
    s.add_argument(
        "--allow-caller",
        action="append",
        metavar="AE",
        help="accept associations only from this calling AE title (repeat for several; default: any)",
    )
    s.add_argument(
        "--destination",
        metavar="AE@HOST:PORT",
        help="where results are C-STOREd, e.g. ORTHANC@127.0.0.1:4242 (default: nowhere, worklist only)",
    )
    s.add_argument(
        "--queue-size",
        type=int,
        default=32,
        help="instances waiting to be triaged before senders are asked to retry (0xA700; default 32)",
    )
    s.add_argument(
        "--max-instance-mb",
        type=float,
        default=64.0,
        metavar="MB",
        help="instances larger than this are refused with 0xA700 (out of resources) before anything is read "
        "(default 64; a CR/DX is 5-35 MB uncompressed)",
    )
    s.add_argument(
        "--spool",
        metavar="DIR",
        help="received instances wait here for triage (mode 0700; default: 'incoming' beside the worklist)",
    )
    _add_tls_options(s)
    _add_result_options(s)
    s.set_defaults(func=cmd_dicom_node)

    s = subparsers.add_parser(
        "orthanc-pull",
        help="poll an Orthanc PACS over REST, triage new instances, store the SR back (needs [interop])",
        description="Pull mode: follow Orthanc's change log, triage each new instance, POST the SR (and Secondary "
        "Capture) back to Orthanc. The password, if any, is read from ORTHANC_PASSWORD.",
    )
    s.add_argument(
        "--url",
        type=_http_url,
        default="http://127.0.0.1:8042",
        help="Orthanc's REST base URL (default http://127.0.0.1:8042)",
    )
    s.add_argument("--username", help="HTTP basic-auth user (password from ORTHANC_PASSWORD)")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
    s.add_argument(
        "--state-file", help="where the position in Orthanc's change log is kept (default: beside the worklist)"
    )
    s.add_argument(
        "--from-beginning",
        action="store_true",
        help="on first start, triage every instance already in Orthanc (default: only new ones)",
    )
    s.add_argument("--once", action="store_true", help="poll once, handle what is new, and exit")
    _add_result_options(s)
    s.set_defaults(func=cmd_orthanc_pull)

    s = subparsers.add_parser(
        "pacs-demo",
        help="Orthanc + DICOM node + UI on loopback; send the shared DICOMs with storescu; check the SRs "
        "(needs orthanc and dcmtk installed, [interop], the data directory)",
        description=PACS_DEMO_DESCRIPTION,
    )
    s.add_argument("--check", action="store_true", help="exit after the checks (0 all passed, 1 some failed)")
    s.add_argument("--pull", action="store_true", help="pull mode: orthanc-pull instead of the DICOM node")
    s.add_argument("--free-ports", action="store_true", help="pick free loopback ports instead of the defaults")
    s.add_argument("--port", type=int, default=7860, help="UI / REST port (default 7860)")
    s.add_argument("--node-port", type=int, default=11112, help="DICOM node port (default 11112)")
    s.add_argument("--orthanc-http-port", type=int, default=8042, help="Orthanc REST/explorer port (default 8042)")
    s.add_argument("--orthanc-dicom-port", type=int, default=4242, help="Orthanc DICOM port (default 4242)")
    s.add_argument("--timeout", type=float, default=300, help="seconds to wait for every answer (default 300)")
    s.add_argument("--data-dir", help="data directory (default: CXRTRIAGE_DATA_DIR or ../shared/data)")
    s.add_argument("--out", help="also write the counts and checks as JSON here")
    s.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, Orthanc storage) at the end")
    s.set_defaults(func=cmd_pacs_demo)
