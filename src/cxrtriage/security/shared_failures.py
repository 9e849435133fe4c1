"""Failed authentications counted across the service's worker processes (``cxrtriage serve --workers N``).

:class:`~cxrtriage.security.authenticate.FailureLimiter` counts in one process's memory, so with N workers a client
could fail N times the configured limit per minute, each worker counting only its share. :class:`SharedFailureLimiter`
keeps the same sliding window in one SQLite file in the service's state folder, written in ``BEGIN IMMEDIATE``
transactions (the worklist's discipline), with wall-clock times since a monotonic clock is not shared between
processes. Rows older than the window are deleted as failures arrive, so the file stays small. Only the client
address (as the server sees it) and the time are stored: never a credential.

Should the file become unusable (a full or read-only disk), the limiter goes on counting in this process's memory
and logs once why: the check is a brake on guessing, and losing it would be worse than counting per worker.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cxrtriage.security.authenticate import FailureLimiter

__all__ = ["SharedFailureLimiter"]

log = logging.getLogger("cxrtriage.security")

_SCHEMA = "CREATE TABLE IF NOT EXISTS failures (client TEXT NOT NULL, at REAL NOT NULL)"
_INDEX = "CREATE INDEX IF NOT EXISTS failures_client_at ON failures (client, at)"


class SharedFailureLimiter:
    """The :class:`FailureLimiter` interface (``retry_after``, ``record``) over a SQLite file every worker shares."""

    def __init__(
        self, path: Path, limit: int, window_s: float = 60.0, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._fallback: FailureLimiter | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.execute(_SCHEMA)
                db.execute(_INDEX)
        except (OSError, sqlite3.Error) as exc:
            self._fall_back(exc)

    @contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection; with ``write``, inside one ``BEGIN IMMEDIATE`` transaction. The check every protected request
        makes is one SELECT, read without the write lock, so that checks never queue behind each other."""
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if write:
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _fall_back(self, exc: Exception) -> None:
        if self._fallback is None:
            log.warning(
                "failed authentications are counted per worker process: the shared file cannot be used (%s)",
                type(exc).__name__,
            )
            self._fallback = FailureLimiter(self.limit, self.window_s)

    def retry_after(self, client: str) -> int | None:
        """None while ``client`` may try; else the seconds until its oldest counted failure leaves the window."""
        if self._fallback is not None:
            return self._fallback.retry_after(client)
        now = self._clock()
        try:
            with self._db(write=False) as db:
                rows = db.execute(
                    "SELECT at FROM failures WHERE client = ? AND at > ? ORDER BY at DESC LIMIT ?",
                    (client, now - self.window_s, self.limit),
                ).fetchall()
        except sqlite3.Error as exc:
            self._fall_back(exc)
            return self.retry_after(client)
        if len(rows) < self.limit:
            return None
        oldest_counted = rows[-1][0]  # the limit-th most recent failure: when it leaves the window, one more try
        return max(1, int(oldest_counted + self.window_s - now + 0.999))

    def record(self, client: str) -> None:
        if self._fallback is not None:
            self._fallback.record(client)
            return
        now = self._clock()
        try:
            with self._db() as db:
                db.execute("DELETE FROM failures WHERE at <= ?", (now - self.window_s,))
                db.execute("INSERT INTO failures (client, at) VALUES (?, ?)", (client, now))
        except sqlite3.Error as exc:
            self._fall_back(exc)
            self.record(client)
