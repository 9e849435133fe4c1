"""The web service: one FastAPI process around one :class:`cxrtriage.pipeline.Triage` engine.

Started by ``cxrtriage serve`` (uvicorn factory ``cxrtriage.serve.app:create_app``) or as
``demo_app.service.app:app``. Needs the ``[demo]`` extra; nothing else in the core package imports this module.

Endpoints:

* ``POST /predict`` multipart: ``file`` (PNG, JPEG or DICOM, detected from its bytes), optional ``prior_report``
  text -> the :class:`~cxrtriage.schema.Prediction` JSON, each crop's ``thumb_path`` rewritten to the URL
  ``/static/crops/<random>.png`` this server serves.
* ``GET /health`` (process alive), ``GET /ready`` (503 until the model is loaded and warmed up),
  ``GET /status`` (model, size, latency, counters), ``GET /metrics`` (Prometheus), ``/docs`` (OpenAPI),
  ``/static/crops/*`` (thumbnails, read-only), ``/ui`` (Gradio UI, when :mod:`cxrtriage.serve.webui` is available).

``/predict`` status codes: 200; 400 malformed multipart body; 408 upload stalled for ``body_timeout_s``; 413 body
over ``max_upload_mb`` (from Content-Length before reading, else while streaming); 415 not PNG/JPEG/DICOM by magic bytes (or a format feature that is not supported); 422 empty, corrupt or
truncated image, not a frontal chest radiograph, other input errors, missing ``file``, ``prior_report`` too long;
429 queue full (with ``Retry-After``; decided from the headers, before the body is read); 503 model not ready or model error; 500 unexpected (generic message, traceback
in the log). Errors are ``{"detail": str, "error_type": str, "request_id": str}``.

Privacy: the log holds request id, method, a path with no client-chosen parts, status and latency. Upload file
names, DICOM header values and report text are never logged.

The model loads in the background after start-up, so ``/health`` answers at once and orchestrators can poll
``/ready``; a load failure keeps ``/ready`` at 503 with the reason rather than killing the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from http import HTTPStatus
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CollectorRegistry, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from cxrtriage.explain.crop_store import prune_crops
from cxrtriage.errors import InputError, InvalidImageError, ModelError, UnsupportedFormatError
from cxrtriage.imaging.sniff import SNIFF_BYTES, describe_unknown, sniff_format
from cxrtriage.schema import DISCLAIMER, Prediction
from cxrtriage.serve.middleware import (
    BodyError, BodySizeLimitMiddleware, CropFiles, LoadSheddingMiddleware, RequestLogMiddleware, body_error_response,
    scope_request_id,
)
from cxrtriage.serve.runtime import (
    Engine, EngineState, InferenceLimiter, QueueFullError, ServiceStats, load_in_background, load_engine, warm_up,
)
from cxrtriage.serve.settings import ServerSettings

__all__ = [
    "CROPS_URL", "Engine", "EngineState", "InferenceLimiter", "QueueFullError", "ServiceStats",
    "check_upload", "create_app", "load_engine", "predict_upload", "warm_up", "with_crop_urls",
]

log = logging.getLogger("cxrtriage.serve.app")

CROPS_URL = "/static/crops"
_NOT_READY_RETRY_S = 5
_PRUNE_INTERVAL_S = 1.0


# ----------------------------------------------------------------------------- request -> Prediction


def check_upload(data: bytes) -> str:
    """Cheap checks before queueing for the model: not empty, and PNG/JPEG/DICOM by magic bytes.

    Returns the detected format. The file name and the client's content type are ignored on purpose:
    both are client-chosen and often wrong.
    """
    if not data:
        raise InvalidImageError("empty file")
    kind = sniff_format(data[:SNIFF_BYTES])
    if kind is None:
        raise UnsupportedFormatError(
            f"unsupported file type (detected: {describe_unknown(data)}); upload a PNG, JPEG or DICOM file"
        )
    return kind


def with_crop_urls(prediction: Prediction, url_prefix: str = CROPS_URL) -> Prediction:
    """Replace each crop's file-system path by the URL the server serves it at (server paths stay private)."""
    if not prediction.crops:
        return prediction
    prefix = url_prefix.rstrip("/")
    crops = [c.model_copy(update={"thumb_path": f"{prefix}/{Path(c.thumb_path).name}"}) for c in prediction.crops]
    return prediction.model_copy(update={"crops": crops})


def predict_upload(engine: Engine, data: bytes, prior_report: str | None = None, *,
                   url_prefix: str = CROPS_URL) -> Prediction:
    """Triage uploaded bytes: the whole request -> Prediction step, blocking (run it in a worker thread).

    Raises :class:`cxrtriage.errors.InputError` subclasses for bad uploads, like :func:`cxrtriage.predict`.
    """
    check_upload(data)
    report = prior_report if prior_report and prior_report.strip() else None
    return with_crop_urls(engine.predict(data, report), url_prefix)


# ----------------------------------------------------------------------------- the app


class ServiceRuntime:
    """Everything one app instance owns: settings, engine state, stats, limiter and metrics."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.state = EngineState()
        self.stats = ServiceStats(settings.latency_window)
        self.registry = CollectorRegistry(auto_describe=True)  # per app: several apps may live in one process
        self.inference_seconds = Histogram(
            "cxrtriage_inference_seconds", "Wall time of one triage inference (decode to explanation)",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0), registry=self.registry,
        )
        self._limiter: InferenceLimiter | None = None
        self.ui_mounted = False
        self._prune_lock = threading.Lock()
        self._last_prune = -math.inf

    @property
    def limiter(self) -> InferenceLimiter:
        if self._limiter is None:
            self._limiter = InferenceLimiter(self.settings.max_concurrent, self.settings.max_queue)
        return self._limiter

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
        info = getattr(engine.backend, "info", None) if engine is not None else None
        size = None
        if engine is not None:
            with contextlib.suppress(Exception):
                size = round(float(engine.backend.footprint_mb()), 2)
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
        limiter = self._limiter
        if limiter is None or limiter.active + limiter.waiting < limiter.max_concurrent + limiter.max_queue:
            return None
        return self.retry_after_s()

    def retry_after_s(self) -> int:
        """Rough wait for a free slot: median latency x backlog per slot, at least 1 s."""
        median = self.stats.median_seconds() or 1.0
        limiter = self.limiter
        backlog = (limiter.active + limiter.waiting + 1) / limiter.max_concurrent
        return max(1, min(120, math.ceil(median * backlog)))


def _request_id(request: Request) -> str:
    return scope_request_id(request.scope)


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


def _error(status: int, detail: str, error_type: str, request: Request,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error_type": error_type, "request_id": _request_id(request)},
                        status_code=status, headers=headers)


def _input_error_status(exc: InputError) -> int:
    return 415 if isinstance(exc, UnsupportedFormatError) else 422


def _validation_message(errors: list[dict[str, Any]], max_report: int) -> str:
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        field = ".".join(loc) or "request"
        if err.get("type") == "missing" and field == "file":
            parts.append("missing form field 'file': send the image as multipart/form-data field 'file'")
        elif field == "prior_report" and err.get("type") == "string_too_long":
            parts.append(f"prior_report is longer than {max_report} characters")
        elif err.get("type") == "missing":
            parts.append(f"missing form field '{field}'")
        else:
            parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed multipart body (no boundary, broken parts, a form part over 1 MiB)"},
    408: {"description": "the upload stalled: no body data for body_timeout_s"},
    413: {"description": "upload larger than max_upload_mb"},
    415: {"description": "not a PNG, JPEG or DICOM file (detected from its bytes)"},
    422: {"description": "empty/corrupt image, not a frontal chest radiograph, missing file, prior_report too long"},
    429: {"description": "too many requests waiting; see Retry-After"},
    503: {"description": "model not ready or model error"},
}


def create_app(settings: ServerSettings | None = None, *, engine: Engine | None = None,
               engine_loader: Callable[[], Engine] | None = None) -> FastAPI:
    """Build the service. ``engine`` / ``engine_loader`` replace the model load (tests, notebooks).

    Nothing heavy happens here: the model loads in the lifespan, in the background.
    """
    settings = settings if settings is not None else ServerSettings()
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

    @app.exception_handler(BodyError)
    async def _body_error(request: Request, exc: BodyError) -> JSONResponse:  # 413, 408
        return body_error_response(exc, _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Every other HTTP error (404, 405, the multipart parser's 400 for an oversized form field, ...) in the
        service's one error shape."""
        try:
            error_type = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
        except ValueError:
            error_type = "HTTPError"
        return _error(exc.status_code, str(exc.detail), error_type, request, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        body = {"detail": _validation_message(errors, settings.max_prior_report_chars),
                "error_type": "RequestValidationError", "request_id": _request_id(request), "errors": errors}
        return JSONResponse(body, status_code=422)  # without the inputs: no echo of report text

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s: unexpected %s", _request_id(request), type(exc).__name__,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return _error(500, "internal server error; it has been logged with this request id", "InternalError",
                      request)

    @app.post("/predict", tags=["triage"], response_model=Prediction, responses=_PREDICT_RESPONSES,
              summary="Triage one chest X-ray (decision support only)")
    async def predict_endpoint(
        request: Request,
        file: UploadFile = File(..., description="frontal chest radiograph: PNG, JPEG or DICOM (detected from content); "
                                "an empty file gets 422", json_schema_extra={"minLength": 1}),
        prior_report: str | None = Form(None, max_length=settings.max_prior_report_chars,
                                        description="optional prior radiology report text (quoted as provenance)"),
    ) -> Response:
        rid = _request_id(request)
        try:
            data = await file.read()
        finally:
            await file.close()
        try:
            check_upload(data)
        except InputError as exc:
            log.info("request %s rejected: %s", rid, type(exc).__name__)
            return _error(_input_error_status(exc), str(exc), type(exc).__name__, request)
        try:
            engine_ = runtime.state.get_engine()
        except ModelError as exc:
            return _error(503, str(exc), "NotReady", request, {"Retry-After": str(_NOT_READY_RETRY_S)})
        url_prefix = request.scope.get("root_path", "").rstrip("/") + CROPS_URL
        try:
            async with runtime.limiter.slot():
                t0 = time.perf_counter()
                prediction = await run_in_threadpool(predict_upload, engine_, data, prior_report,
                                                     url_prefix=url_prefix)
                elapsed = time.perf_counter() - t0
        except QueueFullError:
            retry = runtime.retry_after_s()
            return _error(429, f"the server is busy ({settings.max_concurrent} running, {settings.max_queue} "
                               f"waiting); retry in {retry} s", "QueueFull", request, {"Retry-After": str(retry)})
        except InputError as exc:
            log.info("request %s rejected: %s", rid, type(exc).__name__)
            return _error(_input_error_status(exc), str(exc), type(exc).__name__, request)
        except ModelError as exc:
            log.error("request %s: model error: %s", rid, exc)
            return _error(503, str(exc), "ModelError", request)
        except Exception as exc:
            log.error("request %s: unexpected %s during prediction", rid, type(exc).__name__,
                      exc_info=(type(exc), exc, exc.__traceback__))
            return _error(500, "internal server error; it has been logged with this request id", "InternalError",
                          request)
        runtime.stats.add_latency(elapsed)
        runtime.inference_seconds.observe(elapsed)
        return JSONResponse(prediction.model_dump(mode="json"), background=BackgroundTask(runtime.prune_soon))

    @app.get("/health", tags=["service"], summary="liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], summary="readiness: model loaded and warmed up (503 until then)")
    async def ready() -> JSONResponse:
        engine_ = runtime.state.engine
        if engine_ is None:
            error = runtime.state.error
            body = {"ready": False, "detail": f"model failed to load: {error}" if error else "model loading",
                    "error": error}
            return JSONResponse(body, status_code=503, headers={"Retry-After": str(_NOT_READY_RETRY_S)})
        return JSONResponse({"ready": True, "model": getattr(getattr(engine_.backend, "info", None), "name", None)})

    @app.get("/status", tags=["service"], summary="model identity and size, latency, counters, disclaimer")
    async def status() -> dict[str, Any]:
        return runtime.status()

    app.mount(CROPS_URL, CropFiles(directory=settings.crops_dir, check_dir=False), name="crops")

    # ---- UI hook: cxrtriage.serve.webui (owned by the UI work) mounts Gradio at /ui. The API works without it. ----
    if settings.ui:
        runtime.ui_mounted = _mount_ui(app, runtime)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui" if runtime.ui_mounted else "/docs")

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
            self._runtime.stats.count(_input_error_status(exc))
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
    """Mount the Gradio UI if :mod:`cxrtriage.serve.webui` and gradio are importable; never fail the API because of it."""
    try:
        from cxrtriage.serve.webui import mount_ui
    except ImportError as exc:
        log.warning("UI not mounted (%s); serving the API only. Install with: pip install 'cxrtriage[demo]'", exc)
        return False
    try:
        mount_ui(app, lambda: MeasuredEngine(runtime.state.get_engine(), runtime), runtime.status, runtime.settings,
                 slot=lambda: runtime.limiter.slot())  # the UI waits in the API's queue (429 rules alike)
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
