"""The web service: one FastAPI process around one :class:`cxrtriage.pipeline.Triage` engine.

Started by ``cxrtriage serve`` (:mod:`cxrtriage.serve.server`: ``create_app(settings)`` with the settings the CLI
built, in each worker) or as ``demo_app.service.app:app`` (``create_app()``: settings from the environment, read
there). Needs the ``[demo]`` extra; nothing else in the core package imports this module. The one
:class:`cxrtriage.config.Settings` reaches the engine (:meth:`cxrtriage.pipeline.Triage.from_config`), the limits and
the UI (:func:`cxrtriage.serve.ui.app.mount_ui`) from here.

Endpoints:

* ``POST /predict`` multipart: ``file`` (PNG, JPEG or DICOM, detected from its bytes), optional ``prior_report``
  text -> the :class:`~cxrtriage.schema.Prediction` JSON, each crop's ``thumb_path`` rewritten to the URL
  ``/static/crops/<random>.png`` this server serves.
* ``GET /health`` (process alive), ``GET /ready`` (503 until the model is loaded and warmed up),
  ``GET /status`` (model, size, latency, counters), ``GET /metrics`` (Prometheus), ``/docs`` (OpenAPI),
  ``/static/crops/*`` (thumbnails, read-only), ``/ui`` (Gradio UI, when :mod:`cxrtriage.serve.ui.app` is available).

``/predict`` status codes: 200; 400 malformed multipart body; 408 upload stalled for ``body_timeout_s``; 413 body
over ``max_upload_mb`` (from Content-Length before reading, else while streaming); 415 not PNG/JPEG/DICOM by magic bytes (or a format feature that is not supported); 422 empty, corrupt or
truncated image, not a frontal chest radiograph, other input errors, missing ``file``, ``prior_report`` too long;
429 queue full (with ``Retry-After``; decided from the headers, before the body is read); 503 model not ready or model error; 500 unexpected (generic message, traceback
in the log). Errors are ``{"detail": str, "error_type": str, "request_id": str}``.

Privacy: the log holds request id, method, a path with no client-chosen parts, status and latency. Upload file
names, DICOM header values and report text are never logged.

The model loads in the background after start-up, so ``/health`` answers at once and orchestrators can poll
``/ready``; a load failure keeps ``/ready`` at 503 with the reason rather than killing the process.

This module assembles the app: :class:`ServiceRuntime` (what one app owns, at ``app.state.runtime``), middleware,
``/metrics``, the exception handlers of :mod:`cxrtriage.serve.errors`, the routes of :mod:`cxrtriage.serve.routes`
(which also holds the request -> Prediction step, re-exported here), the crops and the UI mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from cxrtriage.config import Settings
from cxrtriage.explain.crop_store import prune_crops
from cxrtriage.errors import InputError
from cxrtriage.schema import DISCLAIMER, Prediction
from cxrtriage.serve.errors import input_error_status, install_error_handlers
from cxrtriage.serve.middleware import (
    BodySizeLimitMiddleware, CropFiles, LoadSheddingMiddleware, RequestLogMiddleware,
)
from cxrtriage.serve.routes import CROPS_URL, api_router, check_upload, predict_upload, with_crop_urls
from cxrtriage.serve.runtime import (
    Engine, EngineState, InferenceLimiter, QueueFullError, ServiceStats, load_in_background, load_engine, warm_up,
)
from cxrtriage.worklist import Worklist

__all__ = [
    "CROPS_URL", "Engine", "EngineState", "InferenceLimiter", "QueueFullError", "ServiceStats",
    "check_upload", "create_app", "load_engine", "predict_upload", "warm_up", "with_crop_urls",
]

log = logging.getLogger("cxrtriage.serve.app")

_PRUNE_INTERVAL_S = 1.0


# ----------------------------------------------------------------------------- the app


class ServiceRuntime:
    """Everything one app instance owns: settings, engine state, stats, limiter and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = EngineState()
        self.stats = ServiceStats(settings.latency_window)
        self.registry = CollectorRegistry(auto_describe=True)  # per app: several apps may live in one process
        self.inference_seconds = Histogram(
            "cxrtriage_inference_seconds", "Wall time of one triage inference (decode to explanation)",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0), registry=self.registry,
        )
        self._limiter: InferenceLimiter | None = None
        self._worklist: Worklist | None = None
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
            deleted = prune_crops(s.crops_dir, s.crops_max_files, s.crops_max_age_s, min_age_s=s.crops_min_age_s,
                                  max_bytes=int(s.crops_max_mb * 1024 * 1024))
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
            **self.stats.snapshot(),
            "in_flight": limiter.active if limiter else 0,
            "waiting": limiter.waiting if limiter else 0,
            "max_concurrent": self.settings.max_concurrent,
            "max_queue": self.settings.max_queue,
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


def _document_metrics_as_prometheus_text(app: FastAPI) -> None:
    """The instrumentator's /metrics route answers Prometheus text; say so in the OpenAPI schema (it would
    otherwise claim application/json)."""
    from fastapi.responses import PlainTextResponse
    from fastapi.routing import APIRoute

    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == "/metrics":
            route.response_class = PlainTextResponse
            route.responses = {200: {"description": "Prometheus text exposition format (text/plain; version=0.0.4)"}}
            route.summary = "Prometheus metrics (text exposition format)"


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               engine_loader: Callable[[], Engine] | None = None) -> FastAPI:
    """Build the service from ``settings`` (None: read from the environment here, for ``uvicorn
    demo_app.service.app:app``). ``engine`` / ``engine_loader`` replace the model load (tests, notebooks).

    Nothing heavy happens here: the model loads in the lifespan, in the background.
    """
    settings = settings if settings is not None else Settings()
    runtime = ServiceRuntime(settings)
    if engine is not None:
        loader: Callable[[], Engine] = lambda: engine  # noqa: E731
    else:
        loader = engine_loader or functools.partial(load_engine, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.crops_dir.mkdir(parents=True, exist_ok=True)
        runtime.reset_limiter()
        await run_in_threadpool(runtime.prune)
        tasks = [
            asyncio.create_task(load_in_background(runtime.state, loader, settings.warmup)),
            asyncio.create_task(_prune_periodically(runtime)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="cxrtriage",
        version=_package_version(),
        description=f"Offline chest X-ray triage. **{DISCLAIMER}**",
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    # Middleware: the last added is the outermost. Log -> metrics -> load shedding -> body limit -> app.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes,
                       body_timeout_s=settings.body_timeout_s)
    app.add_middleware(LoadSheddingMiddleware, path="/predict", busy=runtime.busy_retry_after_s,
                       drain_timeout_s=min(2.0, settings.body_timeout_s))
    Instrumentator(registry=runtime.registry, excluded_handlers=["/metrics"]).instrument(app).expose(
        app, endpoint="/metrics", include_in_schema=True, tags=["service"])
    _document_metrics_as_prometheus_text(app)

    def on_done(scope: Scope, status: int, _elapsed: float) -> None:
        if scope.get("method") == "POST" and scope.get("path") == "/predict":
            runtime.stats.count(status)

    app.add_middleware(RequestLogMiddleware, on_done=on_done)

    install_error_handlers(app)
    app.include_router(api_router(settings.max_prior_report_chars))
    app.mount(CROPS_URL, CropFiles(directory=settings.crops_dir, check_dir=False), name="crops")

    # UI hook: cxrtriage.serve.ui.app mounts Gradio at /ui (its file routes before the mount); the API works without it
    if settings.ui:
        runtime.ui_mounted = _mount_ui(app, runtime)

    return app


class MeasuredEngine:
    """The engine as the UI sees it: UI predictions count in /status, /metrics and the UI footer exactly like
    API requests, so "inference time on this machine" is measured whichever way the instance is used."""

    def __init__(self, engine: Engine, runtime: "ServiceRuntime") -> None:
        self._engine = engine
        self._runtime = runtime

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction:
        t0 = time.perf_counter()
        try:
            result = self._engine.predict(image, prior_report, save_crops=save_crops)
        except InputError as exc:
            self._runtime.stats.count(input_error_status(exc))
            raise
        except Exception:
            self._runtime.stats.count(500)
            raise
        elapsed = time.perf_counter() - t0
        self._runtime.stats.add_latency(elapsed)
        self._runtime.inference_seconds.observe(elapsed)
        self._runtime.stats.count(200)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _mount_ui(app: FastAPI, runtime: ServiceRuntime) -> bool:
    """Mount the Gradio UI if :mod:`cxrtriage.serve.ui.app` and gradio are importable; never fail the API because of it."""
    try:
        from cxrtriage.serve.ui.app import mount_ui
    except ImportError as exc:
        log.warning("UI not mounted (%s); serving the API only. Install with: pip install 'cxrtriage[demo]'", exc)
        return False
    try:
        mount_ui(app, lambda: MeasuredEngine(runtime.state.get_engine(), runtime), runtime.status, runtime.settings,
                 slot=lambda: runtime.limiter.slot(),  # the UI waits in the API's queue (429 rules alike)
                 worklist=lambda: runtime.worklist)  # and files on, and lists, the service's one worklist
    except ImportError as exc:
        log.warning("UI not mounted (%s); serving the API only. Install with: pip install 'cxrtriage[demo]'", exc)
        return False
    except Exception:
        log.exception("UI could not be mounted; serving the API only")
        return False
    return True


async def _prune_periodically(runtime: ServiceRuntime) -> None:
    """Retention also when no /predict arrives (the UI writes crops too, and crops age)."""
    interval = max(1.0, min(60.0, runtime.settings.crops_max_age_s / 4))
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(runtime.prune)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("cxrtriage")
    except Exception:  # pragma: no cover - running from a bare source tree
        return "0"
