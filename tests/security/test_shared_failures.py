"""Failed authentications counted across worker processes: the limit holds for the service, not per worker."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from cxrtriage.security.shared_failures import SharedFailureLimiter


def _fail_times(path: str, client: str, n: int) -> None:
    limiter = SharedFailureLimiter(Path(path), limit=5)
    for _ in range(n):
        limiter.record(client)


def test_two_processes_share_one_count(tmp_path: Path) -> None:
    """Two workers each see 3 failures from one address: 6 >= 5, so both make it wait (each alone would not)."""
    path = tmp_path / "auth_failures.sqlite"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_fail_times, args=(str(path), "10.0.0.7", 3)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    limiter = SharedFailureLimiter(path, limit=5)
    wait = limiter.retry_after("10.0.0.7")
    assert wait is not None and 1 <= wait <= 60
    assert limiter.retry_after("10.0.0.8") is None  # another address is not held back


def test_window_slides_and_old_rows_go(tmp_path: Path) -> None:
    now = [1000.0]
    limiter = SharedFailureLimiter(tmp_path / "f.sqlite", limit=2, window_s=60, clock=lambda: now[0])
    limiter.record("a")
    now[0] += 30
    limiter.record("a")
    assert limiter.retry_after("a") == 30  # the older of the two leaves the window in 30 s
    now[0] += 31
    assert limiter.retry_after("a") is None
    limiter.record("b")  # pruning happens as failures arrive
    rows = sqlite3.connect(tmp_path / "f.sqlite").execute("SELECT client FROM failures ORDER BY at").fetchall()
    assert rows == [("a",), ("b",)]


def test_unusable_file_still_limits_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    limiter = SharedFailureLimiter(blocker / "f.sqlite", limit=2)
    limiter.record("a")
    assert limiter.retry_after("a") is None
    limiter.record("a")
    assert limiter.retry_after("a") is not None


def test_service_with_several_workers_uses_the_shared_count(tmp_path: Path, monkeypatch) -> None:
    from cxrtriage.config import Settings
    from cxrtriage.security.authenticate import FailureLimiter
    from cxrtriage.serve import guard

    settings = Settings(worklist_path=tmp_path / "state" / "worklist.sqlite")
    assert isinstance(guard.failure_limiter(settings), FailureLimiter)  # one worker: its own memory
    monkeypatch.setattr(guard, "multiprocess_dir", lambda: tmp_path / "metrics")
    shared = guard.failure_limiter(settings)
    assert isinstance(shared, SharedFailureLimiter)
    assert shared.path == settings.state_dir / "auth_failures.sqlite"
