"""What one service app owns at run time (:class:`ServiceRuntime`, at ``app.state.runtime``; routes get it and its
parts through :mod:`cxrtriage.serve.deps`) and its pieces: the engine protocol and its background loading, request
statistics, the bounded inference queue (429 when full), crop retention and the ``/status`` answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cxrtriage.config import Settings
from cxrtriage.errors import ModelError, ServiceBusyError
from cxrtriage.explain.crop_store import prune_crops
from cxrtriage.monitoring.drift import Report
from cxrtriage.monitoring.monitor import parse_window, run_monitor, site_dir_of
from cxrtriage.monitoring.record import refusal_record, run_record, site_name, utc_now
from cxrtriage.monitoring.store import MonitorStore
from cxrtriage.schema import DISCLAIMER, ModelInfo, Prediction
from cxrtriage.security.audit import AuditLog
from cxrtriage.serve.guard import Guard
from cxrtriage.serve.monitor_metrics import MonitorCollector
from cxrtriage.serve.reader_agreement import AgreementCollector, current_agreement
from cxrtriage.serve.worker_metrics import scrape_registry
from cxrtriage.site import site_info
from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import FeedbackStore, agreement_since

if TYPE_CHECKING:  # pragma: no cover
    from cxrtriage.imaging.load import LoadedImage
    from cxrtriage.pipeline import Triaged

log = logging.getLogger("cxrtriage.serve.app")

_PRUNE_INTERVAL_S = 1.0


class Engine(Protocol):
    """What the service needs of an engine (a :class:`cxrtriage.pipeline.Triage`, or a fake in tests)."""

    backend: Any  # the classifier (warm-up runs it once)
    info: ModelInfo  # what the results name: the classifier, under the configuration's backend name

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction: ...

    def load(self, image: Any, *, kind: str | None = None) -> LoadedImage:
        """Decode an upload once, with the engine's own limits (``kind``: the format already sniffed)."""

    def run(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Triaged:
        """``predict`` plus the decoded image and the analysed pixels (what ``POST /predict``'s formats build on)."""

    def footprint_mb(self) -> float: ...


def load_engine(settings: Settings) -> Engine:
    """Load the model once for the process, from the service's settings (crops go to the directory it serves)."""
    from cxrtriage.pipeline import Triage

    return Triage.from_config(settings)


def warm_up(engine: Engine) -> None:
    """Make the first real request fast: one blank inference (ONNX session, memory arenas) and medspaCy (~4 s).

    A blank array goes straight to the backend: the pipeline's gate would (rightly) reject it.
    """
    from cxrtriage.explain.report import get_nlp

    engine.backend.analyze(np.zeros((256, 256), np.float32))
    get_nlp()


class EngineState:
    """Readiness of the engine, shared between the loader task, request handlers and the UI (thread-safe)."""

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._error: str | None = None
        self._on_change = on_change  # told whether the engine is ready after each change (a gauge of /metrics)

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._engine is not None

    @property
    def engine(self) -> Engine | None:
        with self._lock:
            return self._engine

    @property
    def error(self) -> str | None:
        with self._lock:
            return self._error

    def set_ready(self, engine: Engine) -> None:
        with self._lock:
            self._engine, self._error = engine, None
        if self._on_change is not None:
            self._on_change(True)

    def set_failed(self, message: str) -> None:
        with self._lock:
            self._engine, self._error = None, message
        if self._on_change is not None:
            self._on_change(False)

    def get_engine(self) -> Engine:
        """The loaded engine; :class:`ModelError` while loading or after a failed load."""
        with self._lock:
            if self._engine is not None:
                return self._engine
            error = self._error
        if error:
            raise ModelError(f"the model could not be loaded: {error}")
        raise ModelError("the model is still loading; retry in a few seconds")


async def _to_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work in a thread; on shutdown, stop waiting for it instead of hanging."""
    try:
        return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)
    except TypeError:  # anyio < 4.1
        return await anyio.to_thread.run_sync(func, *args, cancellable=True)


async def load_in_background(state: EngineState, loader: Callable[[], Engine], warmup: bool) -> None:
    t0 = time.perf_counter()
    try:
        engine = await _to_thread(loader)
        if warmup:
            await _to_thread(warm_up, engine)
    except ModelError as exc:
        log.error("model could not be loaded: %s", exc)
        state.set_failed(str(exc))
    except Exception:
        log.exception("model loading or warm-up failed")
        state.set_failed("unexpected error during loading or warm-up (see the server log)")
    else:
        state.set_ready(engine)
        info = engine.info
        log.info(
            "model ready in %.1f s: %s %s",
            time.perf_counter() - t0,
            getattr(info, "name", "?"),
            getattr(info, "version", "?"),
        )


class ServiceStats:
    """Request counters and a window of recent inference latencies (thread-safe: the UI reads it too)."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=window)
        self.started = time.monotonic()
        self.served = 0
        self.rejected = 0
        self.failed = 0

    def add_latency(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)

    def count(self, status: int) -> None:
        """Count one finished /predict request by HTTP status: 2xx served, 4xx rejected, 5xx failed."""
        with self._lock:
            if status < 400:
                self.served += 1
            elif status < 500:
                self.rejected += 1
            else:
                self.failed += 1

    def median_seconds(self) -> float | None:
        with self._lock:
            return float(np.median(self._latencies)) if self._latencies else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lat = np.asarray(self._latencies, dtype=float)
            served, rejected, failed = self.served, self.rejected, self.failed
        return {
            "median_latency_ms": round(float(np.median(lat)) * 1e3, 2) if lat.size else None,
            "p95_latency_ms": round(float(np.percentile(lat, 95)) * 1e3, 2) if lat.size else None,
            "latency_window": int(lat.size),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "requests_served": served,
            "requests_rejected": rejected,
            "requests_failed": failed,
        }


class QueueFullError(ServiceBusyError):
    """More requests are running or waiting than the service accepts (HTTP 429)."""


class InferenceLimiter:
    """At most ``max_concurrent`` inferences run and at most ``max_queue`` wait; the rest are refused at once.

    Refusing beats queueing without bound: a client waiting minutes behind a backlog is worse off than one
    told to retry. Uses asyncio primitives only, so it must be used from the event loop it was first used on
    (one limiter per app start-up).
    """

    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        if max_concurrent < 1 or max_queue < 0:
            raise ValueError("max_concurrent must be >= 1 and max_queue >= 0")
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self.active = 0
        self.waiting = 0

    @property
    def full(self) -> bool:
        """Every slot and every queue place is taken: a new request would be refused."""
        return self.active + self.waiting >= self.max_concurrent + self.max_queue

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one inference slot; raises :class:`QueueFullError` without waiting when the queue is full."""
        if self.full:
            raise QueueFullError
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._semaphore.release()


class ServiceRuntime:
    """Everything one app instance owns: settings, engine state, stats, limiter, metrics and the authentication
    guard (:class:`~cxrtriage.serve.guard.Guard`: keys, single sign-on, the failed-attempt limit) and the audit
    trail."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.guard = Guard(settings)  # a half-configured single sign-on is refused here, before anything starts
        self.stats = ServiceStats(settings.latency_window)
        self.registry = CollectorRegistry(auto_describe=True)  # per app: several apps may live in one process
        # livesum: with several workers, /metrics shows how many live ones have their model (serve/worker_metrics.py)
        self.workers_ready = Gauge(
            "cxrtriage_workers_ready",
            "Worker processes whose model is loaded and warmed up (live workers only)",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.state = EngineState(on_change=lambda ready: self.workers_ready.set(int(ready)))
        self.inference_seconds = Histogram(
            "cxrtriage_inference_seconds",
            "Wall time of one triage inference (decode to explanation)",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        # the one audit trail of this app: the middleware's records and the UI's own (serve/audit_middleware.py,
        # serve/ui/audit.py), and one counter of the records either could not write, for an alert
        self.audit = AuditLog(settings.audit_file)
        self.audit_failures = Counter(
            "cxrtriage_audit_write_failures_total",
            "audit records that could not be written (by the API: its responses carried X-Audit: failed; or the UI)",
            registry=self.registry,
        )
        # drift monitoring: one record per result and refusal of the API and the UI (cxrtriage.monitoring), and the
        # figures as gauges in /metrics, computed from the shared file at scrape time (so every worker agrees)
        self.monitor = MonitorStore.from_settings(settings)
        #: reader agreement for the monitor (reader feedback's ``agreement``: overall, urgent, non_urgent, n), or None
        self.agreement: Callable[[], Mapping[str, Any] | None] = self.window_agreement
        self._limiter: InferenceLimiter | None = None
        self._worklist: Worklist | None = None
        self._feedback: FeedbackStore | None = None
        # the drift gauges and the readers' agreement, computed at each scrape from shared files: reported once however
        # many workers there are (the other metrics are each worker's, summed over all of them with --workers N)
        computed = (MonitorCollector(self.monitor_report), AgreementCollector(lambda: self.feedback))
        for collector in computed:
            self.registry.register(collector)
        #: what GET /metrics generates from (serve/worker_metrics.py: this registry, or every worker's files)
        self.metrics_registry = scrape_registry(self.registry, computed)
        self.ui_mounted = False
        self._prune_lock = threading.Lock()
        self._last_prune = -math.inf

    @property
    def limiter(self) -> InferenceLimiter:
        if self._limiter is None:
            self._limiter = InferenceLimiter(self.settings.max_concurrent, self.settings.max_queue)
        return self._limiter

    @property
    def worklist(self) -> Worklist:
        """Opened on first use (OSError or sqlite3.Error when its folder is not writable)."""
        if self._worklist is None:
            self._worklist = Worklist(self.settings.worklist_path, 60.0 * self.settings.worklist_max_wait_min)
        return self._worklist

    @property
    def feedback(self) -> FeedbackStore:
        """The readers' assessments, in the worklist's file (opened on first use, failing as :attr:`worklist`)."""
        if self._feedback is None:
            self._feedback = FeedbackStore(self.worklist)
        return self._feedback

    def observe_inference(self, seconds: float) -> None:
        """One inference's wall time, in ``/status`` (latency window) and ``/metrics`` (histogram): the same for an
        API request and a UI prediction."""
        self.stats.add_latency(seconds)
        self.inference_seconds.observe(seconds)

    def record_result(self, source: str, triaged: Triaged) -> None:
        """One monitor record of a triaged result (``source``: ``api`` or ``ui``); a failed write is logged only."""
        try:
            record = run_record(triaged, source, site_name(self.state.engine))
        except Exception:  # noqa: BLE001 - monitoring never withholds a result
            log.warning("monitor record not built for a %s result", source, exc_info=True)
            return
        self.monitor.append_safely(record)

    def monitor_report(self) -> Report:
        """The drift report of the configured window (``CXRTRIAGE_MONITOR_WINDOW``) against the site profile's
        commissioning sample, else the first results of use: what ``/metrics`` exposes."""
        span = parse_window(self.settings.monitor_window)
        report, _ = run_monitor(
            self.monitor, span=span, site_dir=site_dir_of(self.settings), agreement=self.agreement()
        )
        return report

    def window_agreement(self) -> dict[str, Any] | None:
        """The readers' agreement over the monitor's window (``CXRTRIAGE_MONITOR_WINDOW``): the reader-feedback
        figure of the drift report (each study assessed in the window, its current assessment)."""
        since = utc_now() - parse_window(self.settings.monitor_window)
        return agreement_since(self.settings.worklist_path, since)

    def record_refusal(self, source: str) -> None:
        """One monitor record of an input the engine refused (not a frontal chest film, unreadable)."""
        engine = self.state.engine
        sha = engine.info.sha256 if engine is not None else ""
        self.monitor.append_safely(refusal_record(source, site_name(engine), sha))

    def reset_limiter(self) -> None:
        """A fresh limiter per start-up: asyncio primitives belong to one event loop."""
        self._limiter = None

    def prune_soon(self) -> int:
        """Retention after a prediction, at most once per second: listing a crops directory of thousands of files
        after every request cost as much CPU as the inference under load (make loadtest)."""
        now = time.monotonic()
        with self._prune_lock:
            if now - self._last_prune < _PRUNE_INTERVAL_S:
                return 0
            self._last_prune = now
        return self.prune()

    def prune(self) -> int:
        """Apply crop retention; logs instead of raising (a full or read-only disk must not fail requests)."""
        s = self.settings
        try:
            deleted = prune_crops(
                s.crops_dir,
                s.crops_max_files,
                s.crops_max_age_s,
                min_age_s=s.crops_min_age_s,
                max_bytes=int(s.crops_max_mb * 1024 * 1024),
            )
        except OSError as exc:
            log.warning("crop retention failed: %s", exc.strerror or type(exc).__name__)
            return 0
        if deleted:
            log.info("crop retention: deleted %d thumbnail(s)", deleted)
        return deleted

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` returns (and the UI shows)."""
        engine = self.state.engine
        info = engine.info if engine is not None else None
        size = None
        if engine is not None:
            with contextlib.suppress(Exception):
                size = round(float(engine.footprint_mb()), 2)
        limiter = self._limiter
        return {
            "ready": engine is not None,
            "model_name": getattr(info, "name", None),
            "model_version": getattr(info, "version", None),
            "model_sha256": getattr(info, "sha256", None),
            "backend": getattr(info, "backend", None) or self.settings.backend,
            "model_size_mb": size,
            # the site profile in use (cxrtriage commission), or the bundled operating point; fakes may have none
            "site": site_info(getattr(engine, "site", None)).model_dump(),
            **self.stats.snapshot(),
            "in_flight": limiter.active if limiter else 0,
            "waiting": limiter.waiting if limiter else 0,
            "max_concurrent": self.settings.max_concurrent,
            "max_queue": self.settings.max_queue,
            "reader_agreement": current_agreement(lambda: self.feedback),
            "disclaimer": DISCLAIMER,
        }

    def busy_retry_after_s(self) -> int | None:
        """None while a /predict may queue; else Retry-After seconds (checked before its body is read)."""
        if self._limiter is None or not self._limiter.full:
            return None
        return self.retry_after_s()

    def retry_after_s(self) -> int:
        """Rough wait for a free slot: median latency x backlog per slot, at least 1 s."""
        median = self.stats.median_seconds() or 1.0
        limiter = self.limiter
        backlog = (limiter.active + limiter.waiting + 1) / limiter.max_concurrent
        return max(1, min(120, math.ceil(median * backlog)))
