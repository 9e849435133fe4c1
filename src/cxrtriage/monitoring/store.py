"""Where monitor records are kept: an owner-only JSONL file in the service's state folder
(:attr:`cxrtriage.config.Settings.monitor_file`, ``monitor.jsonl`` beside the worklist).

Several writers share it: the service's worker processes, its UI and the DICOM node. Every append and every rotation
happens under ``fcntl.flock`` on a lock file beside it (``monitor.lock``) and a thread lock, and each record is one
``O_APPEND`` write of one line, so records never interleave. No ``fsync``: unlike the audit trail, a record lost in
a power cut only thins a statistic.

Size: when the live file would pass a quarter of ``max_bytes`` it becomes ``monitor.jsonl.1`` (the older ones move
up; :data:`KEEP` rotated files are kept, the oldest deleted), so the records never take more than ``max_bytes``.
The first results of use must not rotate away, since they are the reference when no site profile is in use: the
first ``reference_n`` records are also written to ``monitor-reference.jsonl``, which is never rotated.

Writing never fails a result: :meth:`MonitorStore.append_safely` logs a failed write (once a minute at most) and
returns False.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtriage.files import private_dir, private_file
from cxrtriage.monitoring.record import parse_record, record_time

__all__ = ["KEEP", "MonitorStore", "Records", "read_jsonl"]

log = logging.getLogger("cxrtriage.monitoring")

#: rotated files kept beside the live one
KEEP = 3
_WARN_EVERY_S = 60.0


@dataclass
class Records:
    """Records read back, oldest first, and how many lines were not records (cut off, another shape)."""

    records: list[dict[str, Any]]
    skipped: int = 0


def read_jsonl(path: Path) -> Records:
    """The monitor records of one JSONL file (a store's file or a site profile's ``reference.jsonl``), in file
    order; a missing file has none."""
    out = Records([])
    try:
        fh = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        return out
    with fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = parse_record(json.loads(line))
            except ValueError:
                record = None
            if record is None:
                out.skipped += 1
            else:
                out.records.append(record)
    return out


class MonitorStore:
    """The monitor records of one state folder: append (any process), read back (oldest first), the reference."""

    def __init__(self, path: str | Path, max_bytes: int = 64 << 20, reference_n: int = 200) -> None:
        self.path = Path(path)
        self.rotate_at = max(4096, int(max_bytes) // (KEEP + 1))
        self.reference_n = int(reference_n)
        self.lock_path = self.path.with_name(self.path.stem + ".lock")
        self.reference_path = self.path.with_name(self.path.stem + "-reference" + self.path.suffix)
        self._lock = threading.Lock()
        self._reference_full = False  # this process has seen the first-use reference complete
        self._last_warning = -float("inf")

    @classmethod
    def from_settings(cls, settings: Any) -> MonitorStore:
        """The store of a :class:`cxrtriage.config.Settings` (path, size cap, reference size)."""
        return cls(settings.monitor_file, int(settings.monitor_max_mb * 1024 * 1024), settings.monitor_reference_n)

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        private_dir(self.path.parent)
        private_file(self.lock_path)
        with self._lock, self.lock_path.open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record (raises OSError when the folder is not writable)."""
        line = (json.dumps(dict(record), separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        with self._locked(exclusive=True):
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size + len(line) > self.rotate_at:
                    self._rotate()
            _append_line(self.path, line)
            if not self._reference_full:
                have = _count_lines(self.reference_path)
                if have < self.reference_n:
                    _append_line(self.reference_path, line)
                self._reference_full = have + 1 >= self.reference_n

    def append_safely(self, record: Mapping[str, Any]) -> bool:
        """:meth:`append`, logging instead of raising: monitoring must never withhold or delay a result's answer."""
        try:
            self.append(record)
        except Exception as exc:  # noqa: BLE001 - a full disk, a read-only folder: the result still goes out
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY_S:
                self._last_warning = now
                log.warning("monitor record not written to %s: %s", self.path, type(exc).__name__)
            return False
        return True

    def _rotate(self) -> None:
        self.rotated(KEEP).unlink(missing_ok=True)
        for n in range(KEEP - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.rotated(n), self.rotated(n + 1))
        os.replace(self.path, self.rotated(1))

    def read(self, since: dt.datetime | None = None) -> Records:
        """Every record kept (rotated files first), oldest first; ``since``: only those at or after it."""
        out = Records([])
        if not self.path.parent.is_dir():
            return out
        with self._locked(exclusive=False):
            for path in [*(self.rotated(n) for n in range(KEEP, 0, -1)), self.path]:
                part = read_jsonl(path)
                out.records += part.records
                out.skipped += part.skipped
        if since is not None:
            out.records = [r for r in out.records if record_time(r) >= since]
        out.records.sort(key=record_time)
        return out

    def first_use(self) -> Records:
        """The first ``reference_n`` records of use (``monitor-reference.jsonl``), the reference without a site."""
        return read_jsonl(self.reference_path)


def _append_line(path: Path, line: bytes) -> None:
    private_file(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0
