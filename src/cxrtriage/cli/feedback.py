"""``cxrtriage feedback export``: the readers' assessments as a gold file that ``cxrtriage commission --gold`` reads,
so that a site can measure (and re-commission) the model on its own readers' judgement.

One JSON line per assessed study, its current (latest) assessment (:meth:`~cxrtriage.worklist.feedback.FeedbackStore.
current`), with the keys of :data:`~cxrtriage.worklist.feedback.GOLD_KEYS`: ``path`` (``worklist:KEY``: the service
keeps no image path), ``label`` (the reader's), ``reader``, ``time``, ``agrees``, ``finding``, ``comment``.
``--since`` keeps the studies whose current assessment was recorded from then on. The file holds the readers' comments,
so it is written owner-only (0600). The worklist is ``CXRTRIAGE_WORKLIST_PATH`` (the service's), or ``--worklist``.

Exit codes: 0 written (also when there is nothing to export: an empty file, and a line saying so); 1 no worklist
there, or the file cannot be written; 2 a ``--since`` that is not a date.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

from cxrtriage.cli.options import SubCommands, command_settings


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def cmd_export(args: argparse.Namespace) -> int:
    """Write each assessed study's current assessment since ``--since`` to ``--out`` as gold JSONL."""
    from cxrtriage.security.audit_export import parse_when
    from cxrtriage.worklist import Worklist
    from cxrtriage.worklist.feedback import FeedbackStore, agreement, gold_row

    try:
        since = parse_when(args.since) if args.since else None
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    path = Path(args.worklist).expanduser() if args.worklist else command_settings(args).worklist_path
    if not path.is_file():  # opening a Worklist would create an empty one
        print(f"error: no worklist at {path} (set CXRTRIAGE_WORKLIST_PATH or --worklist)", file=sys.stderr)
        return 1
    out = Path(args.out).expanduser()
    try:
        records = FeedbackStore(Worklist(path)).current(since)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(gold_row(record), ensure_ascii=False) + "\n")
    except (OSError, sqlite3.Error) as exc:
        print(f"error: the export was not written: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    rates = agreement(records)
    print(
        f"{len(records)} assessed studies exported to {out}"
        + (f" (since {since.isoformat()})" if since else "")
        + f"; readers agreed with {_rate(rates['overall'])} of the results (Urgent {_rate(rates['urgent'])}, "
        f"Non-Urgent {_rate(rates['non_urgent'])})",
        file=sys.stderr,
    )
    return 0


def add_parser(sub: SubCommands) -> None:
    """Register ``feedback export`` on the main CLI's subcommands."""
    feedback = sub.add_parser("feedback", help="readers' assessments of the triage: export them as a gold file")
    commands = feedback.add_subparsers(dest="feedback_command", required=True)
    e = commands.add_parser(
        "export", help="write each assessed study's latest assessment as gold JSONL (what commission --gold reads)"
    )
    e.add_argument("--since", help="only studies assessed from this UTC date or time on, e.g. 2026-12-01")
    e.add_argument("--out", required=True, help="the JSONL file to write (owner-only: it holds the readers' comments)")
    e.add_argument("--worklist", help="the worklist file (default: CXRTRIAGE_WORKLIST_PATH, the service's)")
    e.set_defaults(func=cmd_export)
