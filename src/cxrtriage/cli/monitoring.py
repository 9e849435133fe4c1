"""``cxrtriage monitor``: the drift report of :mod:`cxrtriage.monitoring` in the terminal, as JSON and as HTML.

Reads the monitor records the service and the DICOM node wrote (``monitor.jsonl`` in the state folder: ``--state``,
else beside the worklist, ``CXRTRIAGE_MONITOR_PATH``), compares the last ``--window`` with the reference (``--reference
FILE``, else the site profile's commissioning sample (``--site``, ``CXRTRIAGE_SITE``), else the first results of use)
and prints the reference it used, the alerts and every figure. Exit codes: 0 the report was made (1 with
``--fail-on-alert`` when a figure is past its limit, for a scheduled check); 2 a bad option or a missing file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from cxrtriage.cli.options import SubCommands, command_settings


def cmd_monitor(args: argparse.Namespace) -> int:
    from cxrtriage.monitoring.monitor import parse_window, run_monitor, site_dir_of
    from cxrtriage.monitoring.record import utc_now
    from cxrtriage.monitoring.report import report_page, report_text
    from cxrtriage.monitoring.store import MonitorStore
    from cxrtriage.worklist.feedback import agreement_since

    settings = command_settings(args)
    try:
        span = parse_window(args.window or settings.monitor_window)
        until = _until(args.until)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = Path(args.state).expanduser() / "monitor.jsonl" if args.state else settings.monitor_file
    store = MonitorStore(path, int(settings.monitor_max_mb * 1024 * 1024), settings.monitor_reference_n)
    if not path.is_file() and not store.rotated(1).is_file():
        print(f"error: no monitor records at {path} (the service and the DICOM node write them there)", file=sys.stderr)
        return 2
    site_dir = Path(args.site).expanduser() if args.site else site_dir_of(settings)
    # the readers' agreement over the window (reader feedback, in the worklist's file); a report --until a past time
    # has none: the feedback store keeps when each study was assessed, not what its current assessment was back then
    agreement = agreement_since(settings.worklist_path, utc_now() - span) if until is None else None
    reference = Path(args.reference).expanduser() if args.reference else None
    try:
        report, buckets = run_monitor(
            store, span=span, reference_file=reference, site_dir=site_dir, now=until, agreement=agreement
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report_text(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}", file=sys.stderr)
    if args.html:
        Path(args.html).write_text(report_page(report, buckets), encoding="utf-8")
        print(f"HTML written to {args.html}", file=sys.stderr)
    return 1 if args.fail_on_alert and report.alerts else 0


def _until(text: str | None) -> dt.datetime | None:
    """``--until``: a UTC date or time (ISO 8601); None for now."""
    if not text:
        return None
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def add_parser(sub: SubCommands) -> None:
    """Register ``monitor`` on the main CLI's subcommands."""
    m = sub.add_parser(
        "monitor",
        help="drift monitoring: compare recent results with the commissioning sample (or the first weeks of use)",
    )
    m.add_argument("--state", help="the service's state folder holding monitor.jsonl (default: beside the worklist)")
    m.add_argument("--reference", help="a reference JSONL of monitor records (e.g. a site profile's reference.jsonl)")
    m.add_argument("--site", help="a site profile folder: its commissioning sample is the reference (CXRTRIAGE_SITE)")
    m.add_argument("--window", help="the recent window: 7d, 24h, 2w ... (default: CXRTRIAGE_MONITOR_WINDOW, 7d)")
    m.add_argument("--until", help="the window's end, a UTC date or time (default: now)")
    m.add_argument("--json", metavar="OUT", help="also write the figures and alerts as JSON")
    m.add_argument("--html", metavar="OUT", help="also write an HTML report with plots over time")
    m.add_argument("--fail-on-alert", action="store_true", help="exit 1 when any figure is past its limit")
    m.set_defaults(func=cmd_monitor)
