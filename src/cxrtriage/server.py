"""The web service: one FastAPI process around one :class:`cxrtriage.pipeline.Triage` engine.

Started by ``cxrtriage serve`` (uvicorn factory ``cxrtriage.server:create_app``) or as
``demo_app.service.app:app``. Needs the ``[demo]`` extra; nothing else in the core package imports this module.

Endpoints:

* ``POST /predict`` multipart: ``file`` (PNG, JPEG or DICOM, detected from its bytes), optional ``prior_report``
  text -> the :class:`~cxrtriage.schema.Prediction` JSON, each crop's ``thumb_path`` rewritten to the URL
  ``/static/crops/<random>.png`` this server serves.
* ``GET /health`` (process alive), ``GET /ready`` (503 until the model is loaded and warmed up),
  ``GET /status`` (model, size, latency, counters), ``GET /metrics`` (Prometheus), ``/docs`` (OpenAPI),
  ``/static/crops/*`` (thumbnails, read-only), ``/ui`` (Gradio UI, when :mod:`cxrtriage.webui` is available).

``/predict`` status codes: 200; 413 body over ``max_upload_mb`` (from Content-Length before reading, else while
streaming); 415 not PNG/JPEG/DICOM by magic bytes (or a format feature that is not supported); 422 empty, corrupt or
truncated image, not a frontal chest radiograph, other input errors, missing ``file``, ``prior_report`` too long;
429 queue full (with ``Retry-After``); 503 model not ready or model error; 500 unexpected (generic message, traceback
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
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import anyio
import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CollectorRegistry, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrtriage.crop_store import is_crop_name, prune_crops
from cxrtriage.errors import InputError, InvalidImageError, ModelError, UnsupportedFormatError
from cxrtriage.io import sniff_format
from cxrtriage.schema import DISCLAIMER, Prediction
from cxrtriage.server_settings import ServerSettings

__all__ = [
    "CROPS_URL", "Engine", "EngineState", "InferenceLimiter", "QueueFullError", "ServiceStats",
    "check_upload", "create_app", "load_engine", "predict_upload", "warm_up", "with_crop_urls",
]

log = logging.getLogger("cxrtriage.server")

CROPS_URL = "/static/crops"
REQUEST_ID_KEY = "cxrtriage.request_id"
_SNIFF_BYTES = 132
_NOT_READY_RETRY_S = 5
_LOGGED_PATHS = frozenset({"/", "/predict", "/health", "/ready", "/status", "/metrics", "/docs", "/redoc",
                           "/openapi.json", "/docs/oauth2-redirect"})


class Engine(Protocol):
    """What the service needs of an engine (a :class:`cxrtriage.pipeline.Triage`, or a fake in tests)."""

    backend: Any

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction: ...


# ----------------------------------------------------------------------------- request -> Prediction


def check_upload(data: bytes) -> str:
    """Cheap checks before queueing for the model: not empty, and PNG/JPEG/DICOM by magic bytes.

    Returns the detected format. The file name and the client's content type are ignored on purpose:
    both are client-chosen and often wrong.
    """
    if not data:
        raise InvalidImageError("empty file")
    kind = sniff_format(data[:_SNIFF_BYTES])
    if kind is None:
        from cxrtriage.io import _describe_unknown  # same package; gives the user a name for what they sent

        raise UnsupportedFormatError(
            f"unsupported file type (detected: {_describe_unknown(data[:4096])}); upload a PNG, JPEG or DICOM file"
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


# ----------------------------------------------------------------------------- engine loading


def load_engine(settings: ServerSettings) -> Engine:
    """Load the model once for the process; crops go to the directory the server serves."""
    from cxrtriage.pipeline import Triage

    return Triage(backend_name=settings.backend, model_dir=settings.model_dir, crops_dir=settings.crops_dir)


def warm_up(engine: Engine) -> None:
    """Make the first real request fast: one blank inference (ONNX session, memory arenas) and medspaCy (~4 s).

    A blank array goes straight to the backend: the pipeline's gate would (rightly) reject it.
    """
    from cxrtriage.report import get_nlp

    engine.backend.analyze(np.zeros((256, 256), np.float32))
    get_nlp()


class EngineState:
    """Readiness of the engine, shared between the loader task, request handlers and the UI (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._error: str | None = None

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

    def set_failed(self, message: str) -> None:
        with self._lock:
            self._engine, self._error = None, message

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


async def _load_in_background(state: EngineState, loader: Callable[[], Engine], warmup: bool) -> None:
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
        info = getattr(engine.backend, "info", None)
        log.info("model ready in %.1f s: %s %s", time.perf_counter() - t0,
                 getattr(info, "name", "?"), getattr(info, "version", "?"))


# ----------------------------------------------------------------------------- stats and limits


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


class QueueFullError(Exception):
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

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one inference slot; raises :class:`QueueFullError` without waiting when the queue is full."""
        if self.active + self.waiting >= self.max_concurrent + self.max_queue:
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


# ----------------------------------------------------------------------------- ASGI middleware


class BodyTooLargeError(StarletteHTTPException):
    """Raised from ``receive`` once the streamed body passes the limit.

    An HTTPException on purpose: FastAPI re-raises those from body parsing (other errors become 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the upload is larger than the limit of {_mib(limit)}")


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB"


def _too_large_response(limit: int, scope: Scope) -> JSONResponse:
    return JSONResponse({"detail": f"the upload is larger than the limit of {_mib(limit)}",
                         "error_type": "PayloadTooLarge", "request_id": str(scope.get(REQUEST_ID_KEY, "-"))},
                        status_code=413)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimitMiddleware:
    """413 for bodies over ``max_bytes``: from Content-Length before reading anything, else while streaming.

    Chunked uploads have no Content-Length, so the bytes actually received are counted too; the upload is
    never read (or spooled) past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large_response(self.max_bytes, scope)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:  # not turned into a response further in (e.g. a mounted sub-app)
            if started:
                raise
            await _too_large_response(self.max_bytes, scope)(scope, receive, send)


def _loggable_path(path: str) -> str:
    """Known API paths as they are; anything else cut to its first segment.

    Other paths can carry client-chosen text (Gradio serves uploads under their original file name, which
    may be a patient's name); crop names are random but are not needed in the log either.
    """
    if path in _LOGGED_PATHS:
        return path
    first = path.lstrip("/").split("/", 1)[0]
    return f"/{first}/..." if first else "/"


class RequestLogMiddleware:
    """Gives each request an id (``X-Request-ID`` header, ``scope["cxrtriage.request_id"]``) and logs one line.

    The line holds id, method, a sanitised path, status and latency, and nothing about the content.
    """

    def __init__(self, app: ASGIApp, on_done: Callable[[Scope, int, float], None] | None = None) -> None:
        self.app = app
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope[REQUEST_ID_KEY] = rid
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - t0
            log.info("request %s %s %s -> %d in %.1f ms", rid, scope.get("method", "?"),
                     _loggable_path(scope.get("path", "")), status, elapsed * 1e3)
            if self.on_done is not None:
                try:
                    self.on_done(scope, status, elapsed)
                except Exception:  # pragma: no cover - bookkeeping must never break a response
                    log.exception("request %s: bookkeeping failed", rid)


class CropFiles(StaticFiles):
    """``StaticFiles`` that serves only engine-named thumbnails (16 hex + .png), never other files in the folder."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not is_crop_name(path):
            raise StarletteHTTPException(status_code=404)
        return await super().get_response(path, scope)


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

    @property
    def limiter(self) -> InferenceLimiter:
        if self._limiter is None:
            self._limiter = InferenceLimiter(self.settings.max_concurrent, self.settings.max_queue)
        return self._limiter

    def reset_limiter(self) -> None:
        """A fresh limiter per start-up: asyncio primitives belong to one event loop."""
        self._limiter = None

    def prune(self) -> int:
        """Apply crop retention; logs instead of raising (a full or read-only disk must not fail requests)."""
        s = self.settings
        try:
            deleted = prune_crops(s.crops_dir, s.crops_max_files, s.crops_max_age_s)
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

    def retry_after_s(self) -> int:
        """Rough wait for a free slot: median latency x backlog per slot, at least 1 s."""
        median = self.stats.median_seconds() or 1.0
        limiter = self.limiter
        backlog = (limiter.active + limiter.waiting + 1) / limiter.max_concurrent
        return max(1, min(120, math.ceil(median * backlog)))


def _request_id(request: Request) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, "-"))


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
            asyncio.create_task(_load_in_background(runtime.state, loader, settings.warmup)),
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

    # Middleware: the last added is the outermost. Log -> metrics -> body limit -> app.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    Instrumentator(registry=runtime.registry, excluded_handlers=["/metrics"]).instrument(app).expose(
        app, endpoint="/metrics", include_in_schema=True, tags=["service"])

    def on_done(scope: Scope, status: int, _elapsed: float) -> None:
        if scope.get("method") == "POST" and scope.get("path") == "/predict":
            runtime.stats.count(status)

    app.add_middleware(RequestLogMiddleware, on_done=on_done)

    @app.exception_handler(BodyTooLargeError)
    async def _body_too_large(request: Request, exc: BodyTooLargeError) -> JSONResponse:
        return _error(413, str(exc.detail), "PayloadTooLarge", request)

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
        file: UploadFile = File(..., description="frontal chest radiograph: PNG, JPEG or DICOM (detected from content)"),
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
        return JSONResponse(prediction.model_dump(mode="json"), background=BackgroundTask(runtime.prune))

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

    # ---- UI hook: cxrtriage.webui (owned by the UI work) mounts Gradio at /ui. The API works without it. ----
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
    """Mount the Gradio UI if :mod:`cxrtriage.webui` and gradio are importable; never fail the API because of it."""
    try:
        from cxrtriage.webui import mount_ui
    except ImportError as exc:
        log.warning("UI not mounted (%s); serving the API only. Install with: pip install 'cxrtriage[demo]'", exc)
        return False
    try:
        mount_ui(app, lambda: MeasuredEngine(runtime.state.get_engine(), runtime), runtime.status, runtime.settings)
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
