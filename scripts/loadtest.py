#!/usr/bin/env python
"""Bounded load test of the web service (``make loadtest``): throughput, latency, 429s, /ready, memory, crops.

    python scripts/loadtest.py [--duration 60] [--clients 8,32] [--out prototype/eval/loadtest.json]
                               [--data-dir DIR] [--base-url http://127.0.0.1:PORT [--pid PID] [--api-key KEY]]

Without ``--base-url`` it starts ``cxrtriage serve`` on a free 127.0.0.1 port with a temporary crops directory,
waits for ``GET /ready`` and always stops the server at the end (SIGTERM, then SIGKILL), also on Ctrl-C or error.
That server has authentication on: the script creates an admin API key in the server's scratch state folder
(``cxrtriage keys create``; worklist, keys and audit trail are all in the temporary directory) and sends it with
every request (``X-API-Key``), so the load runs through the authenticated path, key check and audit record included.
With ``--base-url`` it sends ``--api-key`` (default ``$CXRTRIAGE_API_KEY``), or no credential without one.
Each phase runs N clients for ``--duration`` seconds over real images of the data directory (NIH PNGs, pediatric
JPEGs, some DICOMs), half of the requests with a prior report of realistic length (300-1,500 characters: half IU
reports when the data directory has them, half synthetic prose), and polls ``/ready`` meanwhile. Every loop is
bounded in time and in count (``--max-requests`` per phase, a hard timeout per phase, a total wall-time cap).
Traffic goes to 127.0.0.1 only. Throughput is 200 answers per second of phase wall time.

Other ``CXRTRIAGE_*`` variables of the caller reach the server (e.g. ``CXRTRIAGE_MAX_QUEUE``); ``/status`` at the
end records the limits it ran with. Nothing identifying is printed or written: no image file names, no report text
(only counts and lengths); the server log stays in the temporary directory unless ``--server-log`` is given.
Exit 0 on a clean run; 1 when the server failed to start or exited, answered 5xx, a request failed in transport
(timeout, dropped connection) or its log has ERROR lines (results are still written); 2 on a usage error or a
missing data directory; 130 on Ctrl-C or SIGTERM (server stopped, nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "prototype" / "eval" / "loadtest.json"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
KIND_WEIGHTS = {"nih": 0.45, "pediatric": 0.45, "dicom": 0.10}  # share of requests per image source
MIME = {
    "nih": ("image.png", "image/png"),
    "pediatric": ("image.jpg", "image/jpeg"),
    "dicom": ("image.dcm", "application/dicom"),
}  # generic upload names: real file names never leave this script


@dataclass(frozen=True)
class RequestSpec:
    """One prepared /predict request: image bytes of one source kind, and an optional prior report."""

    kind: str
    data: bytes
    prior_report: str | None


@dataclass(frozen=True)
class Record:
    """Outcome of one request: HTTP status (or the exception name), client-side latency, what was sent."""

    status: int | str
    latency_s: float
    kind: str
    with_report: bool


# ----------------------------------------------------------------------------- pure summaries


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50 / p95 / p99 and max of latencies given in seconds, reported in milliseconds."""

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 1)

    return {
        "n": len(latencies_s),
        "p50_ms": ms(percentile(latencies_s, 50)),
        "p95_ms": ms(percentile(latencies_s, 95)),
        "p99_ms": ms(percentile(latencies_s, 99)),
        "max_ms": ms(max(latencies_s) if latencies_s else None),
    }


def status_histogram(statuses: Sequence[int | str]) -> dict[str, int]:
    """Status code (or exception name) -> count, as a JSON-ready dict sorted by key."""
    return {str(k): v for k, v in sorted(Counter(str(s) for s in statuses).items())}


def summarize_phase(records: Sequence[Record], elapsed_s: float) -> dict[str, Any]:
    """Requests sent, throughput (200s per second), status histogram and latency of the 200s of one phase."""
    ok = [r for r in records if r.status == 200]
    elapsed = max(elapsed_s, 1e-9)
    return {
        "requests_sent": len(records),
        "elapsed_s": round(elapsed_s, 2),
        "sent_per_s": round(len(records) / elapsed, 2),
        "throughput_ok_per_s": round(len(ok) / elapsed, 2),
        "status_histogram": status_histogram([r.status for r in records]),
        "rate_429": round(sum(r.status == 429 for r in records) / len(records), 3) if records else None,
        "latency_ok": latency_summary_ms([r.latency_s for r in ok]),
        "latency_ok_with_report": latency_summary_ms([r.latency_s for r in ok if r.with_report]),
        "latency_ok_without_report": latency_summary_ms([r.latency_s for r in ok if not r.with_report]),
        "by_kind": {
            k: status_histogram([r.status for r in records if r.kind == k]) for k in sorted({r.kind for r in records})
        },
        "with_report": sum(r.with_report for r in records),
    }


# ----------------------------------------------------------------------------- the request mix


def resolve_data_dir(arg: str | None) -> Path:
    """--data-dir, else CXRTRIAGE_DATA_DIR, else ../shared/data next to the repository (may not exist)."""
    return Path(arg or os.environ.get("CXRTRIAGE_DATA_DIR") or ROOT.parent / "shared" / "data").expanduser()


def find_images(data_dir: Path) -> dict[str, list[Path]]:
    """Image files per source kind: NIH PNGs, pediatric (Kermany) JPEGs, DICOMs; empty kinds left out."""
    found = {
        "nih": sorted((data_dir / "nih" / "images").glob("*.png")),
        "pediatric": sorted(
            p for p in (data_dir / "kermany" / "images").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"}
        ),
        "dicom": sorted((data_dir / "dicom").glob("*.dcm")),
    }
    return {k: v for k, v in found.items() if v}


def iu_reports(data_dir: Path, min_chars: int = 300, max_chars: int = 1500) -> list[str]:
    """IU (OpenI) reports laid out as INDICATION / COMPARISON / FINDINGS / IMPRESSION, of realistic length."""
    import csv

    path = data_dir / "iu_reports" / "iu_reports.csv"
    if not path.is_file():
        return []
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parts = [
                f"{k.upper()}: {(row.get(k) or '').strip()}"
                for k in ("indication", "comparison", "findings", "impression")
                if (row.get(k) or "").strip()
            ]
            text = "\n".join(parts)
            if min_chars <= len(text) <= max_chars:
                out.append(text)
    return out


_FINDINGS = [
    "The cardiomediastinal silhouette is within normal limits for size and contour.",
    "The heart is mildly enlarged.",
    "There is no pneumothorax.",
    "No pleural effusion is identified.",
    "There is a small left pleural effusion with adjacent basilar atelectasis.",
    "Patchy airspace opacity is present in the right lower lobe, concerning for pneumonia.",
    "The lungs are clear without focal consolidation.",
    "Pulmonary vascularity is within normal limits.",
    "There is mild interstitial prominence, which may reflect mild pulmonary edema.",
    "Degenerative changes of the thoracic spine are noted.",
    "No acute osseous abnormality is seen.",
    "A right internal jugular central venous catheter terminates in the distal superior vena cava.",
    "Calcified granuloma in the left upper lobe is unchanged.",
    "The trachea is midline.",
    "Streaky opacities at the lung bases likely represent atelectasis.",
    "There is blunting of the right costophrenic angle.",
    "The aorta is tortuous and calcified.",
]
_IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "Right lower lobe pneumonia. Follow-up radiograph recommended.",
    "Small left pleural effusion.",
    "Cardiomegaly with mild pulmonary vascular congestion.",
    "Stable chest without acute abnormality.",
]


def synthetic_report(rng: random.Random, min_chars: int = 300, max_chars: int = 1500) -> str:
    """Radiology-report prose of a random length in [min_chars, max_chars] (used when no IU reports exist)."""
    target = rng.randint(min_chars, max_chars)
    head = (
        f"INDICATION: {rng.choice(['Cough and fever.', 'Shortness of breath.', 'Chest pain.', 'Preoperative.'])}"
        f"\nCOMPARISON: {rng.choice(['None.', 'Prior radiograph from last year.'])}\nFINDINGS:"
    )
    tail = f"\nIMPRESSION: {rng.choice(_IMPRESSIONS)}"
    text = head
    for _ in range(200):  # bounded; stops at the target length, never beyond max_chars
        sentence = " " + rng.choice(_FINDINGS)
        if len(text) + len(tail) >= target or len(text) + len(sentence) + len(tail) > max_chars:
            break
        text += sentence
    return text + tail


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` across kinds by weight (largest remainder), each kind at least one when total allows."""
    s = sum(weights.values())
    raw = {k: total * w / s for k, w in weights.items()}
    counts = {k: max(1, int(v)) if total >= len(weights) else int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - int(raw[k]), reverse=True):
        if sum(counts.values()) >= total:
            break
        counts[k] += 1
    while sum(counts.values()) > total:  # the at-least-one rule can overshoot: take from the largest
        counts[max(counts, key=counts.get)] -= 1
    return counts


def build_request_mix(
    data_dir: Path,
    size: int = 200,
    seed: int = 0,
    report_fraction: float = 0.5,
    weights: dict[str, float] | None = None,
) -> tuple[list[RequestSpec], dict[str, Any]]:
    """``size`` prepared requests in a seeded random order, plus a description (counts and lengths only).

    Image kinds follow ``weights`` over the kinds present; ``report_fraction`` of the requests carry a prior
    report (half an IU report of 300-1,500 characters where the data directory has them, half synthetic
    prose of a uniform 300-1,500 characters). Raises FileNotFoundError when the data directory holds no usable image.
    """
    rng = random.Random(seed)  # noqa: S311 - seeded for a repeatable load, not a secret
    images = find_images(data_dir)
    if not images:
        raise FileNotFoundError(f"no NIH, pediatric or DICOM images under {data_dir}")
    w = {k: v for k, v in (weights or KIND_WEIGHTS).items() if k in images}
    counts = allocate(size, w)
    reports = iu_reports(data_dir)  # mostly 300-600 characters: synthetic prose covers the long end up to 1,500
    report_source = "half iu_reports, half synthetic" if reports else "synthetic"
    kinds = [k for k, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    n_reports = round(size * report_fraction)
    with_report = set(rng.sample(range(size), n_reports))
    cache: dict[Path, bytes] = {}
    mix = []
    for i, kind in enumerate(kinds):
        path = rng.choice(images[kind])
        data = cache.setdefault(path, path.read_bytes())
        report = None
        if i in with_report:
            report = rng.choice(reports) if reports and rng.random() < 0.5 else synthetic_report(rng)
        mix.append(RequestSpec(kind, data, report))
    lengths = [len(m.prior_report) for m in mix if m.prior_report]
    info = {
        "size": size,
        "kinds": dict(Counter(kinds)),
        "distinct_images": len(cache),
        "with_report": len(lengths),
        "report_source": report_source,
        "report_chars": {"min": min(lengths), "median": percentile(lengths, 50), "max": max(lengths)}
        if lengths
        else None,
    }
    return mix, info


# ----------------------------------------------------------------------------- measuring the server


class RssSampler(threading.Thread):
    """Samples the resident memory (MB) of a process and its children every ``interval_s`` seconds."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval_s
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.samples: list[tuple[float, float]] = []

    def measure(self) -> float | None:
        """Current RSS of the process tree in MB; None once the process is gone."""
        import psutil

        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return round(total / 2**20, 1)

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            mb = self.measure()
            if mb is not None:
                with self._lock:
                    self.samples.append((time.monotonic(), mb))

    def stop(self) -> None:
        self._stop_event.set()

    def peak(self, since: float, until: float) -> float | None:
        """Highest sample taken in [since, until]."""
        with self._lock:
            window = [mb for t, mb in self.samples if since <= t <= until]
        return max(window) if window else None


def dir_usage(path: Path) -> dict[str, float | int]:
    """Number of files and total size in MB under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    size = 0
    for p in files:
        try:
            size += p.stat().st_size
        except OSError:  # deleted by the server's retention meanwhile
            pass
    return {"files": len(files), "mb": round(size / 2**20, 2)}


def git_commit() -> dict[str, Any]:
    """HEAD commit and whether tracked files differ from it (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(  # noqa: S603 - git with this script's own arguments, no shell
                ["git", *args],  # noqa: S607 - the developer's git from PATH: only records the commit
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def machine_facts() -> dict[str, Any]:
    """CPU count, memory, Python, platform, date and git commit of this run."""
    import psutil

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        **git_commit(),
    }


# ----------------------------------------------------------------------------- the load itself


class Budget:
    """Hands out request indices until ``limit`` is reached (the hard per-phase cap); event-loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> int | None:
        if self.used >= self.limit:
            return None
        self.used += 1
        return self.used - 1


async def client_loop(
    client: Any, mix: Sequence[RequestSpec], budget: Budget, stop_at: float, records: list[Record], backoff_s: float
) -> None:
    """One client: POST /predict back to back until the phase ends or the budget is spent."""
    import httpx

    while time.monotonic() < stop_at and (i := budget.take()) is not None:
        spec = mix[i % len(mix)]
        name, mime = MIME[spec.kind]
        data = {"prior_report": spec.prior_report} if spec.prior_report else None
        t0 = time.perf_counter()
        try:
            resp = await client.post("/predict", files={"file": (name, spec.data, mime)}, data=data)
            await resp.aread()
            status: int | str = resp.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        records.append(Record(status, time.perf_counter() - t0, spec.kind, spec.prior_report is not None))
        if status != 200:
            await asyncio.sleep(backoff_s)  # 429 (or an error): count it, pause a moment, carry on


async def ready_loop(client: Any, stop_at: float, interval_s: float, polls: list[tuple[int | str, float]]) -> None:
    """Poll GET /ready every ``interval_s`` until the phase ends; records (status, latency)."""
    import httpx

    while time.monotonic() < stop_at and len(polls) < 100_000:
        t0 = time.perf_counter()
        try:
            status: int | str = (await client.get("/ready")).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        polls.append((status, time.perf_counter() - t0))
        await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - t0)))


async def run_phase(
    base_url: str,
    mix: Sequence[RequestSpec],
    clients: int,
    duration_s: float,
    max_requests: int,
    request_timeout_s: float,
    backoff_s: float,
    ready_every_s: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """N clients for ``duration_s`` (no new request after it; in-flight ones get ``request_timeout_s``), each
    request with ``headers`` (the credential)."""
    import httpx

    records: list[Record] = []
    polls: list[tuple[int | str, float]] = []
    budget = Budget(max_requests)
    t0 = time.monotonic()
    stop_at = t0 + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=request_timeout_s, limits=limits, headers=headers) as load,
        httpx.AsyncClient(base_url=base_url, timeout=5.0) as probe,  # /ready is open to orchestrators
    ):
        tasks = [
            asyncio.create_task(client_loop(load, mix, budget, stop_at, records, backoff_s)) for _ in range(clients)
        ]
        tasks.append(asyncio.create_task(ready_loop(probe, stop_at, ready_every_s, polls)))
        try:  # the hard timeout of the phase; on Ctrl-C (cancellation) every task is cancelled and awaited too
            done, pending = await asyncio.wait(tasks, timeout=duration_s + request_timeout_s + 10)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        aborted = bool(pending)
        for task in done:
            task.result()  # a bug in a loop surfaces here instead of vanishing
    elapsed = time.monotonic() - t0
    ready_statuses = [s for s, _ in polls]
    return {
        "clients": clients,
        "duration_s": duration_s,
        **summarize_phase(records, elapsed),
        "hit_request_cap": budget.used >= max_requests,
        "aborted_at_hard_timeout": aborted,
        "ready": {
            "polls": len(polls),
            "not_200": sum(s != 200 for s in ready_statuses),
            "status_histogram": status_histogram(ready_statuses),
            "latency": latency_summary_ms([t for _, t in polls]),
        },
    }


# ----------------------------------------------------------------------------- server life cycle


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("cxrtriage")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "cxrtriage.cli.main"]


def _server_env(crops_dir: Path, data_dir: Path) -> dict[str, str]:
    """The scratch server's settings: worklist, API keys and audit trail in the temporary directory beside
    ``crops_dir`` (the load's thousands of results and records must not land on the user's own)."""
    return {
        **os.environ,
        "CXRTRIAGE_CROPS_DIR": str(crops_dir),
        "CXRTRIAGE_DATA_DIR": str(data_dir),
        "CXRTRIAGE_WORKLIST_PATH": str(crops_dir.parent / "worklist.sqlite"),
        "CXRTRIAGE_AUDIT_PATH": str(crops_dir.parent / "audit.jsonl"),
        "CXRTRIAGE_UI": os.environ.get("CXRTRIAGE_UI", "true"),
    }


def create_key(crops_dir: Path, data_dir: Path) -> str:
    """An admin API key in the scratch server's state folder (``cxrtriage keys create``: the key is the last line
    of its standard output); RuntimeError when it cannot be made. The key is kept in memory only."""
    done = subprocess.run(  # noqa: S603 - this checkout's own CLI with fixed arguments
        [*_cli(), "keys", "create", "--role", "admin", "--name", "loadtest"],
        cwd=ROOT,
        env=_server_env(crops_dir, data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cxrtriage keys create failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return lines[-1]


def start_server(port: int, crops_dir: Path, data_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``cxrtriage serve`` on 127.0.0.1:port with :func:`_server_env`, its log in ``log_path``."""
    env = _server_env(crops_dir, data_dir)
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - this checkout's own CLI with fixed arguments
            [*_cli(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_ready(base_url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> float:
    """Seconds until GET /ready answered 200; RuntimeError when the server exits or the timeout passes."""
    import httpx

    t0 = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() - t0 < timeout_s:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
            try:
                if client.get("/ready").status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"GET /ready did not answer 200 within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int | None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL the server and any children left; returns its exit status."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    return proc.returncode


def log_summary(log_path: Path) -> dict[str, int]:
    """Line counts of the server log by severity (the log itself stays private: it is not copied)."""
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    lines = text.splitlines()
    return {
        "lines": len(lines),
        "error_lines": sum(ln.startswith("ERROR") for ln in lines),
        "warning_lines": sum(ln.startswith("WARNING") for ln in lines),
        "tracebacks": text.count("Traceback"),
    }


def server_status(base_url: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The non-sensitive part of GET /status (an admin's): model, limits, counters, the server's own latency view;
    None when it cannot be read (unreachable, or the credential is not an admin's)."""
    import httpx

    keys = (
        "model_name",
        "backend",
        "model_size_mb",
        "max_concurrent",
        "max_queue",
        "requests_served",
        "requests_rejected",
        "requests_failed",
        "median_latency_ms",
        "p95_latency_ms",
    )
    try:
        resp = httpx.get(base_url + "/status", timeout=10.0, headers=headers)
        body = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    return {k: body.get(k) for k in keys}


# ----------------------------------------------------------------------------- report and entry point


def print_phase(phase: dict[str, Any]) -> None:
    """Human-readable summary of one phase (numbers only)."""
    lat, rdy, rss, crops = phase["latency_ok"], phase["ready"], phase.get("rss_mb"), phase.get("crops")
    print(
        f"phase clients={phase['clients']}: {phase['requests_sent']} requests in {phase['elapsed_s']} s, "
        f"{phase['throughput_ok_per_s']} ok/s ({phase['sent_per_s']} sent/s), statuses {phase['status_histogram']}"
    )
    print(
        f"  latency of 200s: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms, "
        f"max {lat['max_ms']} ms (n={lat['n']}; with report p50 {phase['latency_ok_with_report']['p50_ms']} ms, "
        f"without {phase['latency_ok_without_report']['p50_ms']} ms)"
    )
    print(
        f"  /ready: {rdy['polls']} polls, {rdy['not_200']} not 200 {rdy['status_histogram']}, "
        f"p50 {rdy['latency']['p50_ms']} ms, p95 {rdy['latency']['p95_ms']} ms, max {rdy['latency']['max_ms']} ms"
    )
    if rss:
        print(f"  server RSS: before {rss['before']} MB, after {rss['after']} MB, peak {rss['peak']} MB")
    if crops:
        print(f"  crops directory after the phase: {crops['files']} files, {crops['mb']} MB")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds per phase (default 60)")
    p.add_argument("--clients", default="8,32", help="comma list of concurrent clients, one phase each (default 8,32)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file (default prototype/eval/loadtest.json)")
    p.add_argument("--data-dir", help="data directory (default CXRTRIAGE_DATA_DIR or ../shared/data)")
    p.add_argument("--base-url", help="use this already running server (127.0.0.1 only) instead of starting one")
    p.add_argument("--pid", type=int, help="with --base-url: the server's process id, to measure its memory")
    p.add_argument(
        "--api-key",
        help="with --base-url: the API key to send as X-API-Key (default $CXRTRIAGE_API_KEY; an admin's reads /status "
        "at the end); a server this script starts gets a key of its own",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the request mix (default 0)")
    p.add_argument("--max-requests", type=int, default=20_000, help="hard cap on requests per phase (default 20000)")
    p.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--backoff", type=float, default=0.1, help="client pause after a non-200 (default 0.1 s)")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for /ready (default 300)")
    p.add_argument("--server-log", help="keep the server's log here (default: a temporary file, deleted)")
    args = p.parse_args(argv)
    try:
        args.client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        p.error("--clients takes a comma list of integers, e.g. 8,32")
    if not args.client_counts or min(args.client_counts) < 1 or max(args.client_counts) > 256:
        p.error("--clients: each count must be between 1 and 256")
    if not 0 < args.duration <= 3600:
        p.error("--duration must be in (0, 3600] seconds")
    if args.base_url and urlparse(args.base_url).hostname not in LOCAL_HOSTS:
        p.error("--base-url must point at 127.0.0.1 / localhost: this harness never sends load elsewhere")
    if args.pid and not args.base_url:
        p.error("--pid only goes with --base-url (a server this script starts is measured anyway)")
    if args.api_key and not args.base_url:
        p.error("--api-key only goes with --base-url (a server this script starts gets an API key of its own)")
    return args


def _sigterm_as_ctrl_c(_signum: int, frame: Any) -> None:
    """SIGTERM does what Ctrl-C does (asyncio.run's own SIGINT handler cancels a running phase cleanly)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIGINT ignored (a background job of a non-interactive shell)
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


def run(args: argparse.Namespace, data_dir: Path, tmp: Path) -> int:
    """Start (or attach to) the server, run each phase, write and print the results; returns the exit status."""
    mix, mix_info = build_request_mix(data_dir, seed=args.seed)
    facts = machine_facts()
    proc = None
    log_path = Path(args.server_log) if args.server_log else tmp / "server.log"
    crops_dir = tmp / "crops"
    # every phase stops itself after duration + request timeout + 10 s; this cap bounds the whole run as well
    wall_cap = args.startup_timeout + len(args.client_counts) * (args.duration + args.request_timeout + 20) + 60
    started = time.monotonic()
    sampler = None
    try:
        if args.base_url:
            base_url, pid = args.base_url.rstrip("/"), args.pid
            key = args.api_key or os.environ.get("CXRTRIAGE_API_KEY") or None
        else:
            crops_dir.mkdir()
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            key = create_key(crops_dir, data_dir)
            proc = start_server(port, crops_dir, data_dir, log_path)
            pid = proc.pid
        headers = {"X-API-Key": key} if key else None
        print(f"waiting for {base_url}/ready ...", flush=True)
        try:
            ready_after = wait_ready(base_url, proc, args.startup_timeout)
        except RuntimeError:
            if proc and log_path.is_file():  # the service log holds no file names or report text by design
                print(
                    "last lines of the server log:\n"
                    + "\n".join(log_path.read_text(errors="replace").splitlines()[-20:]),
                    file=sys.stderr,
                )
            raise
        print(
            f"ready after {ready_after:.1f} s; request mix: {mix_info['kinds']}, {mix_info['with_report']} of "
            f"{mix_info['size']} with a prior report ({mix_info['report_source']})",
            flush=True,
        )
        if pid:
            sampler = RssSampler(pid)
            sampler.start()
        phases = []
        for clients in args.client_counts:
            if time.monotonic() - started > wall_cap:
                print(f"stopping: the total wall-time cap of {wall_cap:.0f} s is spent", file=sys.stderr)
                break
            t0 = time.monotonic()
            rss_before = sampler.measure() if sampler else None
            phase = asyncio.run(
                run_phase(
                    base_url,
                    mix,
                    clients,
                    args.duration,
                    args.max_requests,
                    args.request_timeout,
                    args.backoff,
                    ready_every_s=0.5,
                    headers=headers,
                )
            )
            if sampler:
                phase["rss_mb"] = {
                    "before": rss_before,
                    "after": sampler.measure(),
                    "peak": sampler.peak(t0, time.monotonic()),
                }
            phase["crops"] = dir_usage(crops_dir) if proc else None
            print_phase(phase)
            phases.append(phase)
        status = server_status(base_url, headers)
        server_alive = proc is None or proc.poll() is None
    finally:
        if sampler:
            sampler.stop()
        exit_status = stop_server(proc) if proc else None
    log = log_summary(log_path) if proc else None
    facts["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    result = {
        "what": "scripts/loadtest.py (make loadtest): bounded load on POST /predict with /ready polled meanwhile",
        "machine": facts,
        "config": {
            "duration_s": args.duration,
            "clients": args.client_counts,
            "seed": args.seed,
            "max_requests_per_phase": args.max_requests,
            "request_timeout_s": args.request_timeout,
            "backoff_after_non_200_s": args.backoff,
            "ready_poll_interval_s": 0.5,
            "wall_cap_s": round(wall_cap),
            "wall_s": round(time.monotonic() - started, 1),
            "server_started_by_script": proc is not None,
            "authenticated": headers is not None,  # an API key on every request (never the key itself)
            "ui": os.environ.get("CXRTRIAGE_UI", "true") if proc else None,
            "request_mix": mix_info,
        },
        "server": {
            "ready_after_s": round(ready_after, 2),
            "status_at_end": status,
            "alive_until_end": server_alive,
            "exit_status": exit_status,
            "log": log,
        },
        "phases": phases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    failures = sum(n for p in phases for k, n in p["status_histogram"].items() if not k.isdigit() or int(k) >= 500)
    problems = []
    if failures:
        problems.append("5xx answers or transport errors such as timeouts (see status_histogram)")
    if not server_alive:
        problems.append("the server exited during the run")
    if log and (log["error_lines"] or log["tracebacks"]):
        problems.append(f"{log['error_lines']} ERROR line(s) and {log['tracebacks']} traceback(s) in the server log")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    if not data_dir.is_dir() or not find_images(data_dir):
        print(
            f"error: no chest X-ray data directory with images at {data_dir}: set CXRTRIAGE_DATA_DIR or pass "
            f"--data-dir (see ../shared/data/README.md).",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)  # `kill` of the harness still stops the server (finally)
    tmp = Path(tempfile.mkdtemp(prefix="cxrtriage-loadtest-"))
    try:
        return run(args, data_dir, tmp)
    except KeyboardInterrupt:
        print("interrupted: server stopped, nothing written", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # crops are thumbnails of real images: never kept


if __name__ == "__main__":
    sys.exit(main())
