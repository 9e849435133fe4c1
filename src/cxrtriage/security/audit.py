"""The audit trail: an append-only, tamper-evident record of who did what with which study (IHE ATNA's question).

One JSON object per line (JSONL) in the service's state folder (:attr:`cxrtriage.config.Settings.audit_file`:
``audit.jsonl`` beside the worklist, or ``CXRTRIAGE_AUDIT_PATH``). Each record holds :data:`FIELDS`: ``seq`` (1, 2,
...), ``time`` (UTC, ISO 8601), ``principal`` (an API key's name or a user, ``anonymous`` without authentication),
``role`` (``none`` without one), ``via`` (how the principal authenticated), ``action`` (``triage``, ``result.read``,
``crop.read``, ``worklist.list``, ``worklist.state``, ``feedback.record``, ``feedback.read``, ``ui.*``, ``login``,
``logout``, ``key.create``, ``key.revoke``, ``auth.failed``), ``study`` (the worklist key, when there is one),
``outcome`` (the HTTP status, or ``ok`` / ``refused``, and for the web UI's own records ``not_found`` / ``failed``),
``request_id``, ``client`` (the peer address), ``reason`` (why an authentication failed), ``target`` (what a refused
request asked for), ``prev`` and ``hash``.

Tamper evidence: ``hash`` is the SHA-256 of the record's canonical JSON (sorted keys, no spaces, ASCII) without its
``hash``, and ``prev`` is the previous record's ``hash`` (the first record's is :data:`GENESIS`). :func:`verify`
names the first record of each break: an edited record (its hash no longer matches), a removed one (a gap in
``seq``, or a ``prev`` that does not match), reordered or copied ones (``seq`` going back) and a cut-off last line.
What a hash chain cannot show by itself: the last records removed, or the whole file rewritten with fresh hashes
by someone who can write it. ``cxrtriage audit verify`` prints the last hash for that reason: kept elsewhere (or an
export sent to the security team), it pins the history up to then.

Privacy: the record is built from :class:`AuditEvent`, whose every field is a fixed word, a number, or a value
checked against a narrow pattern (a study key is accession-like, a request id hexadecimal); free text (a patient
name, an ID, a prior report, a credential) has no field to go into, and an event's ``reason`` that contains the
credential the request presented is replaced (see :func:`without_secrets`).

Appends are safe across threads (a lock) and processes (``fcntl.flock`` on the file; the service may run several
workers): under the lock, the writer reads the last record, chains the new one to it, writes it with one
``O_APPEND`` write and ``fsync``s. The file is created ``0600``, and its folder ``0700`` when this creates it. A
line left cut off by a crash is ended before the next record, which chains from the last whole record; ``verify``
still names the cut line.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ANONYMOUS",
    "FIELDS",
    "GENESIS",
    "NO_ROLE",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "Problem",
    "Verification",
    "read_records",
    "record_hash",
    "verify",
    "verify_report",
    "without_secrets",
]

log = logging.getLogger("cxrtriage.security.audit")

#: the ``prev`` of the first record
GENESIS = "0" * 64
#: a record's keys, in the order they are written
FIELDS = (
    "seq",
    "time",
    "principal",
    "role",
    "via",
    "action",
    "study",
    "outcome",
    "request_id",
    "client",
    "reason",
    "target",
    "prev",
    "hash",
)
ANONYMOUS = "anonymous"
NO_ROLE = "none"

_ACTION = re.compile(r"[a-z][a-z0-9_.]{0,39}")
_STUDY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the worklist's KEY_PATTERN: accession-like keys only
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_CLIENT = re.compile(r"[A-Za-z0-9.:_\[\]-]{1,64}")  # an IP address (v4, v6) or a test client's host name
_OUTCOME_WORD = re.compile(r"[a-z_]{1,20}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME_MAX = 128
_REASON_MAX = 120
_TAIL_BLOCK = 64 * 1024
#: the shortest presented credential that is looked for in a reason (shorter strings would match ordinary words)
_SECRET_MIN = 8


class AuditError(RuntimeError):
    """The audit trail cannot be written or read (the message names the file and what to do)."""


def _printable(value: str | None, limit: int) -> str | None:
    """One line of printable text, at most ``limit`` characters (control characters become ``?``)."""
    if value is None:
        return None
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text[:limit]


def _matching(pattern: re.Pattern[str], value: object) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def without_secrets(text: str | None, secrets: list[str]) -> str | None:
    """``text``, or ``"(withheld: it contained the presented credential)"`` when any of ``secrets`` (the credentials
    the request carried, at least 8 characters) occurs in it: a reason must never carry the key or token."""
    if text is None:
        return None
    if any(len(s) >= _SECRET_MIN and s in text for s in secrets):
        return "(withheld: it contained the presented credential)"
    return text


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is numbered and chained. Values that do not fit their field's pattern are dropped
    (``study``, ``request_id``, ``client``) or cut to one printable line (``principal``, ``role``, ``via``,
    ``reason``), so no free text reaches the file; ``action`` and ``target`` that do not fit raise ValueError
    (they are the program's own words)."""

    action: str
    outcome: int | str
    principal: str = ANONYMOUS
    role: str = NO_ROLE
    via: str | None = None
    study: str | None = None
    request_id: str | None = None
    client: str | None = None
    reason: str | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        for name in ("action", "target"):
            value = getattr(self, name)
            if value is not None and not _ACTION.fullmatch(value):
                raise ValueError(f"audit {name} {value!r} is not a dotted lower-case word")
        ok_outcome = (isinstance(self.outcome, int) and 100 <= self.outcome <= 599) or (
            isinstance(self.outcome, str) and _OUTCOME_WORD.fullmatch(self.outcome)
        )
        if not ok_outcome:
            raise ValueError(f"audit outcome {self.outcome!r} is neither an HTTP status nor a word like 'ok'")

    def fields(self) -> dict[str, Any]:
        """The event's fields as they are recorded (checked and cut, see the class docstring)."""
        return {
            "principal": _printable(self.principal, _NAME_MAX) or ANONYMOUS,
            "role": _printable(self.role, 32) or NO_ROLE,
            "via": _printable(self.via, 32),
            "action": self.action,
            "study": _matching(_STUDY, self.study),
            "outcome": self.outcome,
            "request_id": _matching(_REQUEST_ID, self.request_id),
            "client": _matching(_CLIENT, self.client),
            "reason": _printable(self.reason, _REASON_MAX),
            "target": self.target,
        }


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hash(record: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of ``record``'s canonical JSON without its ``hash`` field."""
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _line(record: Mapping[str, Any]) -> bytes:
    """A record as its line in the file: the keys in :data:`FIELDS` order (for people), ASCII, newline-ended."""
    return json.dumps({k: record[k] for k in FIELDS}, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A line as a record, or None when it is not one (not JSON, or without an integer seq and the two hashes)."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    seq, prev, digest = record.get("seq"), record.get("prev"), record.get("hash")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1):
        return None
    if not (isinstance(prev, str) and isinstance(digest, str) and _HEX64.fullmatch(digest)):
        return None
    return record


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


class AuditLog:
    """The audit trail at ``path``; :meth:`append` is the only way a record is added. Cheap to build (nothing is
    opened until the first append); one instance may be shared by threads, and several processes may append to
    the same file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, event: AuditEvent) -> dict[str, Any]:
        """Number, chain and write ``event``; returns the record as written. Raises :class:`AuditError` (or OSError)
        when it cannot be written; the caller decides what that means for its request."""
        fields = event.fields()
        with self._lock:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
                last, torn = _last_record(fd)
                record: dict[str, Any] = {
                    "seq": last["seq"] + 1 if last else 1,
                    "time": _now(),
                    **fields,
                    "prev": last["hash"] if last else GENESIS,
                }
                record["hash"] = record_hash(record)
                data = (b"\n" if torn else b"") + _line(record)
                written = os.write(fd, data)
                if written != len(data):
                    raise AuditError(f"{self.path}: only {written} of {len(data)} bytes written (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
        if torn:
            log.error("audit trail %s: its last line was cut off; ended it before record %d", self.path, record["seq"])
        return record

    def _open(self) -> int:
        parent = self.path.parent
        if not parent.is_dir():
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(parent, 0o700)  # mkdir's mode is reduced by the umask
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit trail {self.path}: {exc.strerror}") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AuditError(f"the audit trail {self.path} is not a regular file")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
            log.warning("audit trail %s was readable by others; made it owner-only (0600)", self.path)
        return fd


def _last_record(fd: int) -> tuple[dict[str, Any] | None, bool]:
    """The last whole record of the open file, and whether the file ends in a cut-off line. Reads backwards from
    the end in growing blocks, past lines that are not records, so a damaged line does not stop the trail."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, False
    torn = os.pread(fd, 1, size - 1) != b"\n"
    block = _TAIL_BLOCK
    while True:
        start = max(0, size - block)
        chunk = os.pread(fd, size - start, start)
        lines = chunk.split(b"\n")
        after = lines.pop()  # after the last newline: empty, or the cut-off line
        whole = _parse(after) if torn else None  # a record that only lost its newline is still the last record
        if whole is not None:
            return whole, torn
        if start > 0:
            lines = lines[1:]  # may begin mid-line
        for raw in reversed(lines):
            record = _parse(raw)
            if record is not None:
                return record, torn
        if start == 0:
            return None, torn
        block *= 4


# ----------------------------------------------------------------------------- reading and verifying


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, bool]]:
    """``(line number, record or None, whether the line is newline-ended)`` for every line of the file, streamed
    (the trail may be large)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            yield number, _parse(raw), raw.endswith(b"\n")


@dataclass(frozen=True)
class Problem:
    """One break in the chain: where (line, and the record's seq when the line is a record) and what."""

    line: int
    seq: int | None
    kind: str  # edited | removed | reordered | truncated | unreadable
    detail: str

    def __str__(self) -> str:
        where = f"record seq {self.seq} (line {self.line})" if self.seq is not None else f"line {self.line}"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    """What :func:`verify_report` found: how many records, the last one's seq and hash, and the problems."""

    records: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_report(path: str | Path) -> Verification:
    """Walk the whole trail and check every record's hash, its ``seq`` and its ``prev``; one :class:`Problem` per
    record that breaks the chain (the first of each break is named; the walk then carries on from it, so a later
    break is found too). Raises FileNotFoundError when there is no file."""
    problems: list[Problem] = []
    expected, top_hash, count, last_seq = 1, GENESIS, 0, 0
    for number, record, complete in read_records(path):
        if record is None:
            if complete:
                problems.append(
                    Problem(
                        number, None, "unreadable", "not an audit record (edited, or cut off by an interrupted write)"
                    )
                )
            else:
                problems.append(Problem(number, None, "truncated", "the last line is cut off (a write interrupted)"))
            continue
        count += 1
        seq = record["seq"]
        if record["hash"] != record_hash(record):
            problems.append(Problem(number, seq, "edited", "its content no longer matches its hash"))
        elif seq > expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            problems.append(
                Problem(number, seq, "removed", f"the record(s) before it ({missing}) are missing or moved")
            )
        elif seq < expected:
            problems.append(Problem(number, seq, "reordered", f"out of order: seq {expected} or later was expected"))
        elif record["prev"] != top_hash:
            problems.append(
                Problem(
                    number,
                    seq,
                    "removed",
                    f"it does not chain from the record before it (seq {seq - 1}): that one was replaced or rewritten",
                )
            )
        if seq >= expected:
            expected, top_hash, last_seq = seq + 1, record["hash"], seq
    return Verification(records=count, last_seq=last_seq, last_hash=top_hash, problems=problems)


def verify(path: str | Path) -> list[Problem]:
    """The problems of the trail at ``path`` (empty: the chain is intact); see :func:`verify_report`."""
    return verify_report(path).problems
