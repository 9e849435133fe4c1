"""Signed-out sessions, shared by every worker process of one service: a small SQLite table in the state folder.

A session cookie is signed, not stored (:mod:`cxrtriage.security.sessions`), so signing out has to remember the
session's id until its absolute lifetime ends, or a copy of the cookie taken before sign-out would still work. Kept
in one process's memory, that held only for the worker that took the sign-out: with ``CXRTRIAGE_WORKERS`` > 1 the
copy kept working on the others until it idled out. SQLite gives every process of the service the same answer (its
own locking, as for the worklist); the file is created 0600 in the 0700 state folder and holds only random session
ids and times, never a credential or a name.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from cxrtriage.files import private_dir, private_file

__all__ = ["SignedOut"]

#: file name in the state folder
SIGNED_OUT_FILE = "signed_out.sqlite"
#: at most this many signed-out sessions are remembered at once (each until its lifetime ends): a bound on the file
MAX_ENDED = 100_000


class SignedOut:
    """The set of signed-out session ids and until when each must stay refused; at ``path`` (shared by processes),
    or in this process's memory when ``path`` is None (tests, a page without a state folder)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._memory: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ready = False

    @contextlib.contextmanager
    def _db(self, path: Path) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            private_dir(path.parent)
            private_file(path)
        db = sqlite3.connect(path, timeout=10)
        try:
            if not self._ready:
                db.execute("CREATE TABLE IF NOT EXISTS signed_out (sid TEXT PRIMARY KEY, until REAL NOT NULL)")
                self._ready = True
            with db:  # one transaction
                yield db
        finally:
            db.close()

    def add(self, sid: str, until: float, now: float) -> None:
        """Refuse ``sid`` until ``until`` (Unix s); forgets the ones whose time is over."""
        if self.path is None:
            with self._lock:
                self._memory = {s: u for s, u in self._memory.items() if u > now}
                if len(self._memory) < MAX_ENDED:
                    self._memory[sid] = until
            return
        with self._db(self.path) as db:
            db.execute("DELETE FROM signed_out WHERE until <= ?", (now,))
            (count,) = db.execute("SELECT COUNT(*) FROM signed_out").fetchone()
            if count < MAX_ENDED:
                db.execute("INSERT OR REPLACE INTO signed_out (sid, until) VALUES (?, ?)", (sid, until))

    def __contains__(self, sid: object) -> bool:
        if self.path is None:
            with self._lock:
                return sid in self._memory
        if not self.path.exists():  # nobody has signed out yet: no file to make on a read
            return False
        with self._db(self.path) as db:
            return db.execute("SELECT 1 FROM signed_out WHERE sid = ?", (str(sid),)).fetchone() is not None
