"""``/metrics`` over several worker processes: prometheus_client's multiprocess mode, set up for ``cxrtriage serve
--workers N`` (N > 1) and a no-op with one worker.

Why it is needed: each uvicorn worker is its own process with its own counters, so without this ``/metrics`` answers
for whichever worker the kernel handed the scrape to, and the request counts jump between scrapes.

How it is set up (:func:`shared_metrics_dir`, called by :func:`cxrtriage.serve.server.run_server` around uvicorn's
supervisor): the parent makes a fresh, private (0700) directory, sets ``PROMETHEUS_MULTIPROC_DIR`` to it in its own
environment, spawns the workers, and on exit removes the directory and restores the variable. The variable is not a
cxrtriage setting (the CLI passes its settings to the workers in uvicorn's pickled config, never through the
environment): it is prometheus_client's own switch, read once, when a process first imports ``prometheus_client``,
to choose where metric values live (memory-mapped files in that directory instead of process memory). A spawned
worker imports it while unpickling the app factory, before any of our code runs in it, so the only place that can
set it is the parent's environment, which every spawned worker (and every worker uvicorn restarts) inherits. A
fresh directory per start means files left by an earlier run (killed with -9, say) are never summed into this one.
Started another way (``uvicorn demo_app.service.app:app --workers N``), the service honours a
``PROMETHEUS_MULTIPROC_DIR`` the operator sets; emptying it between runs is then theirs to do, as prometheus_client's
documentation says.

What ``/metrics`` answers in a worker (:func:`scrape_registry`): the files of every worker, live or exited, merged by
:class:`prometheus_client.multiprocess.MultiProcessCollector` (counters and histograms summed: a worker that was
restarted keeps its counts), plus the collectors that compute their figures from the shared state files at scrape
time (the drift monitor's gauges, the readers' agreement: :mod:`cxrtriage.serve.monitor_metrics`,
:mod:`cxrtriage.serve.reader_agreement`), run once by the worker that answers: every worker would compute the same
value, so summing them would multiply it by N.

Gauges kept by the workers themselves say how they merge (``multiprocess_mode``); the service has one,
``cxrtriage_workers_ready`` (``livesum``: the number of live workers whose model is loaded; an exited worker's 1 must
not count, which is what the ``live`` modes drop). A worker that stops cleanly removes its live-gauge files
(:func:`worker_exited`); one that was killed leaves them, so those of dead processes are removed when a worker starts
and before each scrape (:func:`forget_dead_workers`: a look at a few file names), which covers uvicorn replacing a
crashed worker.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

__all__ = [
    "MULTIPROC_ENV",
    "forget_dead_workers",
    "multiprocess_dir",
    "scrape_registry",
    "shared_metrics_dir",
    "worker_exited",
]

log = logging.getLogger("cxrtriage.serve.app")

#: the environment variable prometheus_client reads at import (its own name; not a cxrtriage setting)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """A fresh private directory named in ``PROMETHEUS_MULTIPROC_DIR`` while the block runs (the workers are
    spawned inside it); afterwards the directory is removed and the variable is as it was. An inherited value is
    replaced for the block, not reused: its files may be another run's."""
    before = os.environ.get(MULTIPROC_ENV)
    if before is not None:
        log.warning("%s was set; this run uses its own fresh directory instead", MULTIPROC_ENV)
    folder = Path(tempfile.mkdtemp(prefix="cxrtriage-metrics-"))  # 0700
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def multiprocess_dir() -> Path | None:
    """The shared metrics directory when this process keeps its values there, else None (one worker). Both must hold:
    the variable names a directory, and prometheus_client chose file-backed values when it was imported (a process
    that set the variable after the import still counts in memory, and reading the files alone would drop them)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder or values.ValueClass is values.MutexValue or not os.path.isdir(folder):
        return None
    return Path(folder)


def scrape_registry(registry: CollectorRegistry, computed: Iterable[Collector]) -> CollectorRegistry:
    """What ``/metrics`` generates from: ``registry`` itself with one worker (it holds ``computed`` already), else
    a registry of every worker's files plus ``computed`` (the collectors that read the shared state, once)."""
    folder = multiprocess_dir()
    if folder is None:
        return registry
    merged = CollectorRegistry(auto_describe=False)  # describe() of the computed ones is empty by design
    MultiProcessCollector(merged, path=str(folder))
    for collector in computed:
        merged.register(collector)
    return merged


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. A killed worker stays a zombie until uvicorn's supervisor reaps it (seconds later, after
    its health check times out), and signal 0 still reaches a zombie, so on Linux its state is read too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the number: not ours, but not known dead either
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # the state follows the command name's ")"
    except (OSError, IndexError):  # not Linux, or gone meanwhile: signal 0 reached it
        return True


def forget_dead_workers() -> int:
    """Remove the live-gauge files of processes that no longer run (a worker killed without a clean exit); returns
    how many processes were forgotten. Nothing to do with one worker."""
    folder = multiprocess_dir()
    if folder is None:
        return 0
    dead = set()
    for name in glob.glob(os.path.join(folder, "gauge_live*.db")):
        found = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(name))
        if found and not _alive(int(found.group(1))):
            dead.add(int(found.group(1)))
    for pid in dead:
        mark_process_dead(pid, str(folder))
    return len(dead)


def worker_exited() -> None:
    """This worker stops: its live gauges leave ``/metrics`` (its counters and histograms stay in the sums)."""
    folder = multiprocess_dir()
    if folder is not None:
        mark_process_dead(os.getpid(), str(folder))
