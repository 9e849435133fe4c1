"""``/metrics`` over several workers (:mod:`cxrtriage.serve.worker_metrics`) without a server: the directory the
parent makes (fresh, private, gone afterwards, the environment as it was), one worker unchanged, and two spawned
"workers" (each a :class:`~cxrtriage.serve.runtime.ServiceRuntime`, as each uvicorn worker builds) whose scrapes sum
the counts of both, report the drift gauges once and drop the ready gauge of a worker that exited.
``tests/serve/test_workers_live.py`` runs the same with a real ``cxrtriage serve --workers 2``."""

from __future__ import annotations

import multiprocessing
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from cxrtriage.config import Settings
from cxrtriage.serve.runtime import ServiceRuntime
from cxrtriage.serve.worker_metrics import MULTIPROC_ENV, multiprocess_dir, scrape_registry, shared_metrics_dir


def _settings(tmp_path: Path) -> Settings:
    return Settings(crops_dir=tmp_path / "crops", worklist_path=tmp_path / "state" / "worklist.sqlite", ui=False)


def _sample(text: str, name: str, labels: str = "") -> float | None:
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_the_directory_is_fresh_private_and_removed_and_the_environment_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"another run's values")
    monkeypatch.setenv(MULTIPROC_ENV, str(stale))  # inherited from somewhere: never reused
    with shared_metrics_dir() as folder:
        assert os.environ[MULTIPROC_ENV] == str(folder) != str(stale)
        assert list(folder.iterdir()) == [] and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not folder.exists() and os.environ[MULTIPROC_ENV] == str(stale)
    assert (stale / "counter_1.db").is_file()  # not ours to remove
    monkeypatch.delenv(MULTIPROC_ENV)
    with shared_metrics_dir():
        pass
    assert MULTIPROC_ENV not in os.environ


def test_one_worker_scrapes_its_own_registry_even_with_the_variable_set_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process chose in-memory values when it imported prometheus_client: a variable set afterwards must not
    make /metrics read (empty) files and lose its counts."""
    runtime = ServiceRuntime(_settings(tmp_path))
    assert runtime.metrics_registry is runtime.registry
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert multiprocess_dir() is None
    assert scrape_registry(runtime.registry, []) is runtime.registry


def _worker(settings: Settings, n: int, barrier: Any, scrapes: Any) -> None:
    """One spawned 'worker': ready, ``n`` inferences, a scrape; worker 1 exits cleanly while worker 2 waits, then
    worker 2 scrapes again."""
    from cxrtriage.serve.worker_metrics import worker_exited

    runtime = ServiceRuntime(settings)
    runtime.state.set_ready(object())  # type: ignore[arg-type] - only readiness is looked at
    for _ in range(n):
        runtime.observe_inference(0.01)
    barrier.wait()
    scrapes.put((n, "both", generate_latest(runtime.metrics_registry).decode()))
    barrier.wait()
    if n == 1:
        worker_exited()
    barrier.wait()
    if n == 2:
        scrapes.put((n, "one left", generate_latest(runtime.metrics_registry).decode()))


def test_two_workers_scrape_the_sum_and_the_computed_gauges_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    barrier, scrapes = ctx.Barrier(2), ctx.Queue()
    with shared_metrics_dir():  # as run_server does: the spawned workers inherit it
        procs = [ctx.Process(target=_worker, args=(settings, n, barrier, scrapes)) for n in (1, 2)]
        for p in procs:
            p.start()
        got = {(n, when): text for n, when, text in (scrapes.get(timeout=120) for _ in range(3))}
        for p in procs:
            p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    for n in (1, 2):  # whichever worker answers: the sum of both
        text = got[(n, "both")]
        assert _sample(text, "cxrtriage_inference_seconds_count") == 3
        assert _sample(text, "cxrtriage_workers_ready") == 2
        assert len(re.findall(r"^cxrtriage_monitor_results\{", text, re.MULTILINE)) == 2  # recent, reference: once
        assert _sample(text, "cxrtriage_monitor_results", '{period="recent"}') == 0
    after = got[(2, "one left")]
    assert _sample(after, "cxrtriage_workers_ready") == 1  # the exited worker is not ready
    assert _sample(after, "cxrtriage_inference_seconds_count") == 3  # but its inferences still count
