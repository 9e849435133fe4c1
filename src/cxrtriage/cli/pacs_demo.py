"""``cxrtriage pacs-demo`` (``make pacs-demo``): a hospital's DICOM flow on loopback, in one command.

It starts a real Orthanc PACS, cxrtriage's DICOM node and the web service with its UI, sends the shared DICOMs and
DICOMs made from public PNGs (synthetic identifiers) with dcmtk's storescu, waits until every instance is answered,
and checks that each has its SR in Orthanc and that the worklist is in reading order (:mod:`cxrtriage.pacs.stack`).
``--pull`` runs the same flow in pull mode. Without ``--check`` everything keeps running until Ctrl-C so you can open
Orthanc's explorer and the UI's Worklist tab; with ``--check`` it exits 0 when every check passed, 1 otherwise, 2
when a step could not run (a tool missing, a server that did not start).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any


def run(args: Any) -> int:
    from cxrtriage.cli.options import command_settings, resolve_data_dir
    from cxrtriage.cli.pacs import stop_event
    from cxrtriage.pacs.stack import DemoError, Ports, check_results, pacs_stack

    settings = command_settings(args)  # what the node, the poller and the service it starts run with
    try:
        data_dir = resolve_data_dir(args.data_dir, settings)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ports = Ports.free() if args.free_ports else Ports(args.orthanc_http_port, args.orthanc_dicom_port,
                                                        args.node_port, args.port)
    try:
        with pacs_stack(data_dir, ports, pull=args.pull, timeout_s=args.timeout, keep=args.keep,
                        settings=settings) as stack:
            report = check_results(stack)
            if args.out:
                record = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                          "command": "make pacs-check", "cpu_count": os.cpu_count(), "mode": stack.mode,
                          "sent": len(stack.sent), "status": stack.status, "all_passed": report.ok,
                          "checks": report.checks}
                Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
            if not args.check:
                print(f"\nOrthanc explorer: {stack.orthanc_base}/app/explorer.html\n"
                      f"cxrtriage UI:     {stack.ui_base}/ui (Worklist tab)\nPress Ctrl-C to stop everything.", flush=True)
                stop_event().wait()
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pacs-demo: {'all checks passed' if report.ok else 'SOME CHECKS FAILED'}", flush=True)
    return 0 if report.ok else 1


def add_parser(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "pacs-demo", help="Orthanc + DICOM node + UI on loopback; send the shared DICOMs with storescu; check the SRs "
                          "(needs orthanc and dcmtk installed, [interop], the data directory)",
        description=(__doc__ or "").split("\n\n")[1])
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
    s.set_defaults(func=run)
