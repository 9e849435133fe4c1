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
* ``GET /worklist`` (a page of triaged studies in reading order), ``GET /worklist/{key}`` (one stored result),
  ``POST /worklist/{key}/state`` (opened, reported, new).
* ``POST /worklist/{key}/feedback`` (a reader's assessment of a stored result), ``GET /worklist/{key}/feedback``
  (its history; :mod:`cxrtriage.serve.routes.feedback`).
* ``GET /login``, ``POST /login``, ``POST /logout``: the web UI's sign-in with a personal access key (an API key's
  name and secret) and its session cookie (:mod:`cxrtriage.serve.routes.login`).
* ``GET /health`` (process alive), ``GET /ready`` (503 until the model is loaded and warmed up), ``GET /status``
  (model, size, latency, counters), ``GET /metrics`` (Prometheus, over every worker), ``/docs`` (OpenAPI),
  ``/static/crops/*`` (thumbnails, read-only), ``/ui`` (Gradio UI, when :mod:`cxrtriage.serve.ui.app` is available).

``/predict`` status codes: 200; 400 malformed multipart body; 408 upload stalled for ``body_timeout_s``; 413 body
over ``max_upload_mb`` (from Content-Length before reading, else while streaming); 415 not PNG/JPEG/DICOM by magic
bytes (or a format feature that is not supported); 422 empty, corrupt or truncated image, not a frontal chest
radiograph, other input errors, missing ``file``, ``prior_report`` too long; 429 queue full (with ``Retry-After``;
decided from the headers, before the body is read); 503 model not ready or model error; 500 unexpected (generic
message, traceback in the log). Errors are ``{"detail": str, "error_type": str, "request_id": str}``.

Who may use what (:mod:`cxrtriage.serve.auth`, the role table): ``/predict`` submitter; ``/worklist*``, the crops
and ``/ui`` reader; ``/status`` and ``/metrics`` admin; ``/health``, ``/ready``, ``/`` and the API docs open. Once
authentication is configured (an API key, or single sign-on) a protected request without an accepted credential gets
401, one with a lower role 403; before that everything is open, with a warning on every start. Only the host names
of ``CXRTRIAGE_ALLOWED_HOSTS`` are answered (400 otherwise).

Privacy: the log holds request id, method, a path with no client-chosen parts, status and latency. Upload file
names, DICOM header values and report text are never logged. Audit: every request that takes or returns
patient-derived data, and every 401/403, gets one record in the hash-chained audit trail
(:mod:`cxrtriage.serve.audit_middleware`, ``Settings.audit_file``).

The model loads in the background after start-up, so ``/health`` answers at once and orchestrators can poll
``/ready``; a load failure keeps ``/ready`` at 503 with the reason rather than killing the process.

This module assembles the app, in this order: the settings; the
:class:`~cxrtriage.serve.runtime.ServiceRuntime` (what one app owns, at ``app.state.runtime``, where
:mod:`cxrtriage.serve.deps` finds it for the routes); middleware and the request metrics; the exception handlers of
:mod:`cxrtriage.serve.errors`; the routers of :mod:`cxrtriage.serve.routes` (one per resource; the request ->
Prediction step of :mod:`cxrtriage.serve.routes.predict` is re-exported here); the crops directory
(:mod:`cxrtriage.serve.crops`); the UI mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from cxrtriage.config import Settings
from cxrtriage.errors import InputError
from cxrtriage.files import private_dir
from cxrtriage.schema import DISCLAIMER, Prediction
from cxrtriage.security.authenticate import HOW_TO_CONFIGURE
from cxrtriage.serve.audit_middleware import install_audit
from cxrtriage.serve.auth import BROWSER_PAGE_URL, PrefixAuthMiddleware, RouteRoles
from cxrtriage.serve.crops import CROPS_URL, with_crop_urls
from cxrtriage.serve.csrf import CrossSiteRequestMiddleware, NoCorsMiddleware
from cxrtriage.serve.docs import mount_offline_docs
from cxrtriage.serve.errors import input_error_status, install_error_handlers
from cxrtriage.serve.middleware import (
    AllowedHostsMiddleware,
    BodySizeLimitMiddleware,
    CropFiles,
    LoadSheddingMiddleware,
    RequestLogMiddleware,
)
from cxrtriage.serve.routes import api_router
from cxrtriage.serve.routes.predict import check_upload, predict_upload
from cxrtriage.serve.runtime import (
    Engine,
    EngineState,
    InferenceLimiter,
    QueueFullError,
    ServiceRuntime,
    ServiceStats,
    load_engine,
    load_in_background,
    warm_up,
)
from cxrtriage.serve.session_cookie import SessionCookieMiddleware
from cxrtriage.serve.worker_metrics import forget_dead_workers, worker_exited

__all__ = [
    "BROWSER_PAGE_URL",
    "CROPS_URL",
    "Engine",
    "EngineState",
    "InferenceLimiter",
    "QueueFullError",
    "ServiceRuntime",
    "ServiceStats",
    "check_upload",
    "create_app",
    "load_engine",
    "predict_upload",
    "warm_up",
    "with_crop_urls",
]

log = logging.getLogger("cxrtriage.serve.app")


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, engine_loader: Callable[[], Engine] | None = None
) -> FastAPI:
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
        private_dir(settings.crops_dir)  # 0700 when it is made here
        if not runtime.guard.authenticator.enforced():  # on every start, whoever starts it (cxrtriage serve, uvicorn)
            log.warning("no authentication is configured: every endpoint is open (%s)", HOW_TO_CONFIGURE)
        runtime.reset_limiter()
        forget_dead_workers()  # --workers N: a killed worker's live gauges leave /metrics (serve/worker_metrics.py)
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
            worker_exited()

    app = FastAPI(
        title="cxrtriage",
        version=_package_version(),
        description=f"Offline chest X-ray triage. **{DISCLAIMER}**",
        lifespan=lifespan,
        docs_url=None,  # served from the package by serve.docs, so it renders offline
        redoc_url=None,
    )
    app.state.runtime = runtime

    # Middleware: the last added is the outermost. Log -> allowed hosts -> audit -> no CORS -> cross-site refusal ->
    # metrics -> load shedding -> body limit -> the session cookie's renewal -> the roles of the mounts that are not
    # FastAPI routes (the UI, the crops) and of the routes with a body, before it is read (serve/auth.py) -> app.
    # The audit sits outside every refusal (401/403, 403 cross-site, 413, 429), so each is recorded.
    app.add_middleware(PrefixAuthMiddleware, guard=runtime.guard, route_roles=RouteRoles(app))
    app.add_middleware(SessionCookieMiddleware, settings=settings, sessions=runtime.guard.sessions)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes, body_timeout_s=settings.body_timeout_s
    )
    app.add_middleware(
        LoadSheddingMiddleware,
        path="/predict",
        busy=runtime.busy_retry_after_s,
        drain_timeout_s=min(2.0, settings.body_timeout_s),
    )
    # the request metrics; GET /metrics is the service's own route (serve/routes/service.py): the instrumentator's
    # would drop the computed gauges with several workers (serve/worker_metrics.py)
    Instrumentator(registry=runtime.registry, excluded_handlers=["/metrics"]).instrument(app)

    def on_done(scope: Scope, status: int, _elapsed: float) -> None:
        if scope.get("method") == "POST" and scope.get("path") == "/predict":
            runtime.stats.count(status)

    app.add_middleware(CrossSiteRequestMiddleware)  # a page on another site changes nothing here (serve/csrf.py)
    app.add_middleware(NoCorsMiddleware)  # nor reads anything (Gradio's CORS headers are dropped)
    # inside the request log (its request id), outside the rest
    install_audit(app, runtime.audit, runtime.audit_failures.inc)
    app.add_middleware(AllowedHostsMiddleware, allowed_hosts=settings.allowed_host_list)
    app.add_middleware(RequestLogMiddleware, on_done=on_done)

    install_error_handlers(app)
    mount_offline_docs(app, "cxrtriage")
    app.include_router(api_router(settings))
    app.mount(CROPS_URL, CropFiles(directory=settings.crops_dir, check_dir=False), name="crops")
    _mount_browser_page(app)

    # UI hook: cxrtriage.serve.ui.app mounts Gradio at /ui (its file routes before the mount); the API works without it
    if settings.ui:
        runtime.ui_mounted = _mount_ui(app, runtime)

    return app


class MeasuredEngine:
    """The engine as the UI sees it: UI predictions count in /status, /metrics and the UI footer exactly like
    API requests, so "inference time on this machine" is measured whichever way the instance is used, and each
    result or refusal is recorded for drift monitoring as the API's are."""

    def __init__(self, engine: Engine, runtime: ServiceRuntime) -> None:
        self._engine = engine
        self._runtime = runtime

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction:
        t0 = time.perf_counter()
        try:
            triaged = self._engine.run(image, prior_report, save_crops=save_crops)
        except InputError as exc:
            self._runtime.stats.count(input_error_status(exc))
            self._runtime.record_refusal("ui")
            raise
        except Exception:
            self._runtime.stats.count(500)
            raise
        self._runtime.observe_inference(time.perf_counter() - t0)
        self._runtime.stats.count(200)
        self._runtime.record_result("ui", triaged)  # drift monitoring, from the pixels it analysed
        return triaged.prediction

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _mount_browser_page(app: FastAPI) -> None:
    """The static browser page (``make browser``) at ``/local`` when it is built. Read-only and open to everyone
    (no role, like the offline API docs): it is code and model weights that the package already ships, holds no
    patient data, and the images a user drops on it are analysed in their browser and never sent here."""
    from starlette.staticfiles import StaticFiles

    from cxrtriage.browser.build import built_page

    folder = built_page()
    if folder is not None:
        app.mount(BROWSER_PAGE_URL, StaticFiles(directory=folder, html=True), name="local")


def _mount_ui(app: FastAPI, runtime: ServiceRuntime) -> bool:
    """Mount the Gradio UI if :mod:`cxrtriage.serve.ui.app` and gradio are importable; never fail the API for it."""
    try:
        from cxrtriage.serve.ui.app import mount_ui
        from cxrtriage.serve.ui.audit import UiAudit
    except ImportError as exc:
        log.warning("UI not mounted (%s); serving the API only. Install with: pip install 'cxrtriage[demo]'", exc)
        return False
    try:
        mount_ui(
            app,
            lambda: MeasuredEngine(runtime.state.get_engine(), runtime),
            runtime.status,
            runtime.settings,
            slot=lambda: runtime.limiter.slot(),  # the UI waits in the API's queue (429 rules alike)
            worklist=lambda: runtime.worklist,  # and files on, and lists, the service's one worklist
            audit=UiAudit(runtime.audit, runtime.audit_failures.inc),  # and writes to its one audit trail
        )
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
