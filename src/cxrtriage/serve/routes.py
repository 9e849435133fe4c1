"""The service's HTTP routes (``/predict``, ``/health``, ``/ready``, ``/status``, ``/``) and the request ->
Prediction step behind ``/predict``.

The handlers are plain module-level functions: each finds the app's
:class:`~cxrtriage.serve.app.ServiceRuntime` (settings, engine state, limiter, stats, metrics) at
``request.app.state.runtime``, so several apps can live in one process. :func:`api_router` builds the router that
``create_app`` includes; its one parameter is the documented length limit of ``prior_report``, which FastAPI reads
from the route's signature both to validate the form and to write the OpenAPI schema.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as Path_
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cxrtriage.errors import InputError, InvalidImageError, ModelError, UnsupportedFormatError
from cxrtriage.imaging.sniff import SNIFF_BYTES, describe_unknown, sniff_format
from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.formats import OutputFormat, UnknownFormat, format_names, get_format, output_formats
from cxrtriage.schema import Prediction
from cxrtriage.serve.crops import CROPS_URL, with_crop_urls
from cxrtriage.serve.errors import INTERNAL_ERROR, error_response, input_error_status
from cxrtriage.serve.middleware import scope_request_id
from cxrtriage.serve.runtime import Engine, QueueFullError
from cxrtriage.worklist import KEY_PATTERN, file_on_worklist

if TYPE_CHECKING:  # pragma: no cover
    from cxrtriage.pipeline import Triaged

__all__ = ["api_router", "check_upload", "predict_responses", "predict_upload"]

log = logging.getLogger("cxrtriage.serve.app")

NOT_READY_RETRY_S = 5


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


def _prior(prior_report: str | None) -> str | None:
    return prior_report if prior_report and prior_report.strip() else None


def _triage_checked(engine: Engine, data: bytes, kind: str, prior_report: str | None) -> Triaged:
    """Decode the upload once (``kind``: what :func:`check_upload` sniffed) and triage it; the run keeps the decoded
    image (with a DICOM upload's header) and the analysed pixels for the output formats."""
    return engine.run(engine.load(data, kind=kind), _prior(prior_report))


def predict_upload(engine: Engine, data: bytes, prior_report: str | None = None, *,
                   url_prefix: str = CROPS_URL) -> Prediction:
    """Triage uploaded bytes: the whole request -> Prediction step, blocking (run it in a worker thread).

    Raises :class:`cxrtriage.errors.InputError` subclasses for bad uploads, like :func:`cxrtriage.predict`.
    """
    kind = check_upload(data)
    return with_crop_urls(engine.predict(engine.load(data, kind=kind), _prior(prior_report)), url_prefix)


# ----------------------------------------------------------------------------- handlers


def predict_responses() -> dict[int | str, dict[str, Any]]:
    """``POST /predict``'s documented answers; the 200's media types are the registered output formats'."""
    formats = output_formats()
    content: dict[str, Any] = {}
    for f in formats:
        if f.media_type != "application/json":  # the Prediction's own is response_model's
            content.setdefault(f.media_type, {"schema": f.schema} if f.schema else {})
    described = "; ".join(f"format={f.name}: {f.title} ({f.media_type})" for f in formats)
    return {
        400: {"description": "malformed multipart body (no boundary, broken parts, a form part over 1 MiB)"},
        408: {"description": "the upload stalled: no body data for body_timeout_s"},
        413: {"description": "upload larger than max_upload_mb"},
        415: {"description": "not a PNG, JPEG or DICOM file (detected from its bytes)"},
        422: {"description": "empty/corrupt image, not a frontal chest radiograph, missing file, prior_report too "
                             "long, an unknown format, or a format that needs a DICOM upload given a PNG/JPEG"},
        429: {"description": "too many requests waiting; see Retry-After"},
        501: {"description": "the format's optional library (e.g. the [interop] extra) is not installed"},
        503: {"description": "model not ready or model error"},
        200: {"description": f"the result in the requested format: {described}", "content": content},
    }


def _requested_format(request: Request, name: str) -> OutputFormat | Response:
    """The requested output format, or the answer before any work: 422 for an unknown name (listing the registered
    ones), 501 when the library it needs is missing."""
    from cxrtriage.optional import MissingDependency

    try:
        fmt = get_format(name)
        fmt.require(f"format={name}")
    except UnknownFormat as exc:
        return error_response(422, str(exc), "UnknownFormat", request)
    except MissingDependency as exc:
        return error_response(501, str(exc), "MissingDependency", request)
    return fmt


def _to_worklist(runtime: Any, prediction: Prediction, accession: str | None) -> Prediction:
    """File the result on the worklist; if that fails the result still goes back, saying it is not on the list."""
    return file_on_worklist(lambda: runtime.worklist, prediction, accession)[0]


async def _read_worklist(request: Request, method: str, *args: Any) -> tuple[Any, Response | None]:
    """Run a Worklist read in a worker thread: (its result, None), or (None, the 503) when the database fails."""
    import sqlite3

    try:
        return await run_in_threadpool(lambda: getattr(request.app.state.runtime.worklist, method)(*args)), None
    except (OSError, sqlite3.Error) as exc:
        return None, error_response(503, f"the worklist is unavailable ({type(exc).__name__})", "WorklistUnavailable",
                                    request)


async def worklist(request: Request) -> Response:
    """``GET /worklist``: triaged studies in reading order."""
    runtime = request.app.state.runtime
    items, failed = await _read_worklist(request, "items")
    if failed is not None:
        return failed
    return JSONResponse({"order": "overdue (waiting longer than the maximum), then Urgent or needs review, then the "
                                  "rest; oldest first within each", "max_wait_min": runtime.settings.worklist_max_wait_min,
                         "items": items})


async def worklist_item(request: Request, key: str) -> Response:
    """``GET /worklist/{key}``: the stored result of one study."""
    result, failed = await _read_worklist(request, "result", key)
    if failed is not None:
        return failed
    if result is None:
        return error_response(404, "no study with this key on the worklist", "NotFound", request)
    return JSONResponse(result)


async def predict(request: Request, file: UploadFile, prior_report: str | None, format_name: str = "json",
                  accession: str | None = None) -> Response:
    """``POST /predict`` once FastAPI has parsed and validated the form."""
    fmt = _requested_format(request, format_name)
    if isinstance(fmt, Response):
        return fmt
    runtime = request.app.state.runtime
    settings = runtime.settings
    rid = scope_request_id(request.scope)
    try:
        data = await file.read()
    finally:
        await file.close()
    try:
        kind = check_upload(data)  # the one format check of the service, before the request waits for a slot
    except InputError as exc:
        log.info("request %s rejected: %s", rid, type(exc).__name__)
        return error_response(input_error_status(exc), str(exc), type(exc).__name__, request)
    if fmt.needs_dicom_source and kind != "dicom":
        return error_response(422, f"format={fmt.name} needs a DICOM upload: {fmt.title} must reference its source "
                                   "DICOM instance", "NoDicomSource", request)
    try:
        engine = runtime.state.get_engine()
    except ModelError as exc:
        return error_response(503, str(exc), "NotReady", request, {"Retry-After": str(NOT_READY_RETRY_S)})
    url_prefix = request.scope.get("root_path", "").rstrip("/") + CROPS_URL
    try:
        async with runtime.limiter.slot():
            t0 = time.perf_counter()
            triaged = await run_in_threadpool(_triage_checked, engine, data, kind, prior_report)
            elapsed = time.perf_counter() - t0
    except QueueFullError:
        retry = runtime.retry_after_s()
        return error_response(429, f"the server is busy ({settings.max_concurrent} running, {settings.max_queue} "
                                   f"waiting); retry in {retry} s", "QueueFull", request, {"Retry-After": str(retry)})
    except InputError as exc:
        log.info("request %s rejected: %s", rid, type(exc).__name__)
        return error_response(input_error_status(exc), str(exc), type(exc).__name__, request)
    except ModelError as exc:
        log.error("request %s: model error: %s", rid, exc)
        return error_response(503, str(exc), "ModelError", request)
    except Exception as exc:
        log.error("request %s: unexpected %s during prediction", rid, type(exc).__name__,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return error_response(500, INTERNAL_ERROR, "InternalError", request)
    runtime.observe_inference(elapsed)
    prediction = await run_in_threadpool(_to_worklist, runtime, with_crop_urls(triaged.prediction, url_prefix),
                                         accession)
    payload = await run_in_threadpool(_rendered, fmt, OutputContext.of(triaged, prediction))
    if isinstance(payload, bytes):
        return Response(payload, media_type=fmt.media_type, background=BackgroundTask(runtime.prune_soon),
                        headers={"Content-Disposition": f'attachment; filename="result{fmt.suffix}"'})
    return JSONResponse(payload, media_type=fmt.media_type, background=BackgroundTask(runtime.prune_soon))


def _rendered(fmt: OutputFormat, context: OutputContext) -> Any:
    """The answer's body in ``fmt``: a JSON-ready dict, or a DICOM format's file bytes (worker thread: a Secondary
    Capture is megabytes)."""
    payload = fmt.render(context)
    return fmt.encode(payload) if fmt.encoding == "dicom" else payload


async def health() -> dict[str, str]:
    return {"status": "ok"}


async def ready(request: Request) -> JSONResponse:
    state = request.app.state.runtime.state
    engine = state.engine
    if engine is None:
        error = state.error
        body = {"ready": False, "detail": f"model failed to load: {error}" if error else "model loading",
                "error": error}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(NOT_READY_RETRY_S)})
    return JSONResponse({"ready": True, "model": engine.info.name})


async def status(request: Request) -> dict[str, Any]:
    return request.app.state.runtime.status()


async def root(request: Request) -> RedirectResponse:
    return RedirectResponse("/ui" if request.app.state.runtime.ui_mounted else "/docs")


def api_router(max_prior_report_chars: int) -> APIRouter:
    """The routes of one app; ``max_prior_report_chars`` is validated by FastAPI and documented in the schema."""

    async def predict_endpoint(
        request: Request,
        file: UploadFile = File(..., description="frontal chest radiograph: PNG, JPEG or DICOM (detected from content); "
                                "an empty file gets 422", json_schema_extra={"minLength": 1}),
        prior_report: str | None = Form(None, max_length=max_prior_report_chars,
                                        description="optional prior radiology report text (quoted as provenance)"),
        format: str = Query("json", description="the output format: " + "; ".join(
            f"{f.name}: {f.title} ({f.media_type}" + (", DICOM uploads only)" if f.needs_dicom_source else ")")
            for f in output_formats()), json_schema_extra={"enum": list(format_names())}),
        accession: str | None = Form(None, pattern=KEY_PATTERN, description="the sender's accession-like key for the "
                                     "worklist (letters, digits, . _ -; never a patient identifier); random when absent"),
    ) -> Response:
        return await predict(request, file, prior_report, format, accession)

    async def worklist_item_endpoint(request: Request, key: str = Path_(..., pattern=KEY_PATTERN)) -> Response:
        return await worklist_item(request, key)

    router = APIRouter()
    router.add_api_route("/predict", predict_endpoint, methods=["POST"], tags=["triage"], response_model=Prediction,
                         responses=predict_responses(), summary="Triage one chest X-ray (decision support only)")
    router.add_api_route("/worklist", worklist, methods=["GET"], tags=["worklist"],
                         responses={503: {"description": "the worklist database cannot be opened"}},
                         summary="triaged studies in reading order (overdue, then Urgent / needs review, then the rest)")
    router.add_api_route("/worklist/{key}", worklist_item_endpoint, methods=["GET"], tags=["worklist"],
                         responses={404: {"description": "no study with this key"},
                                    422: {"description": "the key is not accession-like (letters, digits, . _ -)"},
                                    503: {"description": "the worklist database cannot be opened"}},
                         summary="the stored result of one study on the worklist")
    router.add_api_route("/health", health, methods=["GET"], tags=["service"],
                         summary="liveness: the process answers")
    router.add_api_route("/ready", ready, methods=["GET"], tags=["service"],
                         summary="readiness: model loaded and warmed up (503 until then)")
    router.add_api_route("/status", status, methods=["GET"], tags=["service"],
                         summary="model identity and size, latency, counters, disclaimer")
    router.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    return router
