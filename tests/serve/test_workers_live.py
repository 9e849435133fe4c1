"""``cxrtriage serve --workers 2`` as an operator runs it: a real server on a free loopback port, the bundled model,
the bundled sample films sent from two client threads until both workers have answered. What must hold for all of
them together: ``/metrics`` counts every request whichever worker took it (and whichever took the scrape), the
gauge of ready workers says 2, every study is on the one worklist, and the one audit trail's chain verifies
(``cxrtriage audit verify``). Then a worker is killed (-9): its counts stay in the sums, uvicorn starts another,
and the gauge never counts the dead one beside its replacement. Which worker answered is read from
prometheus_client's per-process files in the server's metrics directory (made under the ``TMPDIR`` it is given),
one process at a time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from cxrtriage.data import bundled_samples
from cxrtriage.security.audit import verify_report
from cxrtriage.worklist import Worklist

pytestmark = pytest.mark.slow  # two workers load the model, one is killed and replaced: about 10 s on two cores

ROOT = Path(__file__).resolve().parents[2]
FILMS = [p for p in bundled_samples() if p.suffix == ".png"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample of a Prometheus text page (0 when it is not there)."""
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _predictions_by_worker(tmp: Path) -> dict[int, float]:
    """``POST /predict`` answers counted by each worker process, from its own counter file only."""
    folders = list(tmp.glob("cxrtriage-metrics-*"))
    assert len(folders) == 1, "the server made one fresh metrics directory"
    counts = {}
    for db in folders[0].glob("counter_*.db"):
        pid = int(db.stem.split("_")[1])
        alone = tmp / f"one-{pid}"
        alone.mkdir(exist_ok=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        counts[pid] = _sample(text, "http_requests_total", '{handler="/predict",method="POST",status="2xx"}')
    return counts


@pytest.fixture
def two_workers(tmp_path: Path):
    state, tmp = tmp_path / "state", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXRTRIAGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {
        "TMPDIR": str(tmp),  # where the server makes its metrics directory: the test reads who answered there
        "CXRTRIAGE_WORKLIST_PATH": str(state / "worklist.sqlite"),
        "CXRTRIAGE_CROPS_DIR": str(tmp_path / "crops"),
        "CXRTRIAGE_DATA_DIR": str(tmp_path / "no-data"),  # the bundled model and samples only
        "CXRTRIAGE_UI": "false",
        "CXRTRIAGE_WARMUP": "false",
    }
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - this interpreter's own CLI, fixed arguments
        [sys.executable, "-m", "cxrtriage.cli.main", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:  # both workers loaded, as the gauge of ready workers says
            try:
                text = httpx.get(f"{base}/metrics", timeout=5).text
                if _sample(text, "cxrtriage_workers_ready") == 2:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start two ready workers: {server.stderr.read()[-2000:]!r}")
            time.sleep(0.5)
        yield base, state, tmp
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert not list(tmp.glob("cxrtriage-metrics-*")), "the metrics directory is removed when the server stops"


def _scrape(base: str) -> str:
    with httpx.Client(timeout=10) as client:  # a new connection: any worker may answer
        return client.get(f"{base}/metrics").text


PREDICT_2XX = ("http_requests_total", '{handler="/predict",method="POST",status="2xx"}')


def test_two_workers_count_file_and_audit_as_one_service(two_workers) -> None:
    base, state, tmp = two_workers
    sent: list[str] = []

    def send(i: int) -> int:
        film = FILMS[i % len(FILMS)]
        with httpx.Client(timeout=60) as client:  # a new connection each: the workers take turns accepting
            answer = client.post(
                f"{base}/predict", files={"file": (film.name, film.read_bytes())}, data={"accession": f"ACC-{i:03d}"}
            )
        assert answer.status_code == 200, answer.text
        return i

    with ThreadPoolExecutor(2) as pool:
        for batch in range(10):  # until both workers have answered (each batch: two at once)
            sent += [f"ACC-{i:03d}" for i in pool.map(send, range(4 * batch, 4 * batch + 4))]
            by_worker = _predictions_by_worker(tmp)
            if len([n for n in by_worker.values() if n > 0]) == 2:
                break
    assert len([n for n in by_worker.values() if n > 0]) == 2, f"one worker took every request: {by_worker}"
    assert sum(by_worker.values()) == len(sent)

    for _ in range(4):  # every scrape, whichever worker answers it, counts every request
        metrics = _scrape(base)
        assert _sample(metrics, *PREDICT_2XX) == len(sent)
        assert _sample(metrics, "cxrtriage_inference_seconds_count") == len(sent)
        assert _sample(metrics, "cxrtriage_workers_ready") == 2
        # computed from the shared files by the worker that answers, once: not summed over the workers
        assert metrics.count('cxrtriage_monitor_results{period="recent"}') == 1

    listed = {item["key"] for item in Worklist(state / "worklist.sqlite").items()}
    assert listed == set(sent)
    report = verify_report(state / "audit.jsonl")
    assert report.problems == [] and report.records >= len(sent)
    done = subprocess.run(  # noqa: S603 - this interpreter's own CLI, fixed arguments
        [sys.executable, "-m", "cxrtriage.cli.main", "audit", "verify", "--path", str(state / "audit.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # a worker dies without a clean exit: its counts stay, its "ready" goes, and its replacement takes its place
    victim = max(by_worker, key=lambda pid: by_worker[pid])
    os.kill(victim, signal.SIGKILL)
    deadline, ready_seen = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        metrics = _scrape(base)
        ready_seen.append(_sample(metrics, "cxrtriage_workers_ready"))
        assert _sample(metrics, *PREDICT_2XX) == len(sent)
        if len(_predictions_by_worker(tmp)) == 3 and ready_seen[-1] == 2:
            break
        time.sleep(0.3)
    assert ready_seen[-1] == 2 and max(ready_seen) == 2, ready_seen
    print("ready gauge after the kill:", ready_seen)
    send(1000)
    assert _sample(_scrape(base), *PREDICT_2XX) == len(sent) + 1
