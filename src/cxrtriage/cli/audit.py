"""``cxrtriage audit verify | export``: check the audit trail's hash chain, and hand it to the security team as CSV.

The trail is :attr:`cxrtriage.config.Settings.audit_file` (``audit.jsonl`` beside the worklist, or
``CXRTRIAGE_AUDIT_PATH``), or ``--path``. Exit codes: 0 the chain is intact (``verify``) / the CSV is written
(``export``); 1 the chain is broken, or there is no trail (one sentence naming the record or the file); 2 a bad
option (a date that is not one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

from cxrtriage.cli.options import SubCommands, command_settings


def _trail(args: argparse.Namespace) -> Path:
    return Path(args.path).expanduser() if args.path else command_settings(args).audit_file


def _verified(path: Path) -> tuple[int, str] | None:
    """Verify ``path`` and print what was found; ``(records, the sentence)`` when intact, else None (printed)."""
    from cxrtriage.security.audit import verify_report

    try:
        report = verify_report(path)
    except FileNotFoundError:
        print(f"error: no audit trail at {path} (nothing recorded there yet, or the file was removed)", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"error: cannot read the audit trail {path}: {exc.strerror}", file=sys.stderr)
        return None
    if report.problems:
        first = report.problems[0]
        more = f" ({len(report.problems)} problems in all; `cxrtriage audit verify` lists them)"
        print(
            f"error: the audit trail {path} is broken at {first}{more if len(report.problems) > 1 else ''}",
            file=sys.stderr,
        )
        return None
    return report.records, (
        f"{report.records} records, chain intact (last record seq {report.last_seq}, hash {report.last_hash})"
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """Walk the chain; name every broken record, or print the count and the last hash (keep it elsewhere)."""
    from cxrtriage.security.audit import verify_report

    path = _trail(args)
    found = _verified(path)
    if found is not None:
        print(found[1])
        return 0
    if path.is_file():  # broken: every problem, one a line, on standard output
        with contextlib.suppress(OSError):
            for problem in verify_report(path).problems:
                print(problem)
    return 1


def _open_out(out: str | None) -> contextlib.AbstractContextManager[TextIO]:
    """Standard output, or a new owner-only file (the export holds what the trail holds)."""
    if out is None:
        return contextlib.nullcontext(sys.stdout)
    fd = os.open(Path(out).expanduser(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def cmd_export(args: argparse.Namespace) -> int:
    """CSV of the records in [--since, --until), verified first (refused when broken, unless --force)."""
    from cxrtriage.security.audit_export import export_csv, parse_when

    try:
        since = parse_when(args.since) if args.since else None
        until = parse_when(args.until, until=True) if args.until else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if since is not None and until is not None and since >= until:
        print(f"error: --since {args.since} is not before --until {args.until}", file=sys.stderr)
        return 2
    path = _trail(args)
    if _verified(path) is None:
        if not args.force or not path.is_file():
            if path.is_file():
                print("the CSV was not written; export the broken trail anyway with --force", file=sys.stderr)
            return 1
        print("warning: exporting a broken audit trail (--force)", file=sys.stderr)
    try:
        with _open_out(args.out) as out:
            rows = export_csv(path, out, since=since, until=until)
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{rows} records exported" + (f" to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def add_parser(sub: SubCommands) -> None:
    """Register ``audit verify`` and ``audit export`` on the main CLI's subcommands."""
    audit = sub.add_parser("audit", help="the audit trail: verify its hash chain, export it as CSV")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    where = "the audit trail (default: CXRTRIAGE_AUDIT_PATH, else audit.jsonl beside the worklist)"

    v = commands.add_parser("verify", help="check every record's hash and the chain; exit 1 naming a broken record")
    v.add_argument("--path", help=where)
    v.set_defaults(func=cmd_verify)

    e = commands.add_parser("export", help="write the records of a time range as CSV (verified first)")
    e.add_argument("--since", help="from this UTC date or time, e.g. 2026-12-01 or 2026-12-01T08:00 (default: all)")
    e.add_argument("--until", help="before this UTC time; a date alone includes that whole day (default: now)")
    e.add_argument("--out", help="CSV file to write, owner-only (default: standard output)")
    e.add_argument("--force", action="store_true", help="export even when the chain is broken (a warning is printed)")
    e.add_argument("--path", help=where)
    e.set_defaults(func=cmd_export)
