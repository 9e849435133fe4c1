"""``POST /predict``: one chest X-ray in, the triage result out in any registered output format; and the request ->
Prediction step behind it (:func:`check_upload`, :func:`predict_upload`).

The checks run in a fixed order, cheapest and most specific first, and each answers before any later work: an
unknown or unavailable ``format`` (422/501) before the upload is read; a file that is empty or not PNG/JPEG/DICOM
(422/415), or a PNG/JPEG for a format that must reference a DICOM source (422), before the model is asked for; the
model not ready (503) before the request waits for an inference slot; a full queue (429). ``format=`` goes through
the output-format registry (:mod:`cxrtriage.interop.formats`): this module names no format.

No ``from __future__ import annotations`` here: :func:`predict_router` declares the form with aliases local to it,
and FastAPI evaluates the annotations of an endpoint in its module's globals when they are strings.
"""

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cxrtriage.errors import InputError, InvalidImageError, ModelError, UnsupportedFormatError
from cxrtriage.imaging.sniff import SNIFF_BYTES, describe_unknown, sniff_format
from cxrtriage.imaging.study import study_info
from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.formats import OutputFormat, UnknownFormat, format_names, get_format, output_formats
from cxrtriage.optional import MissingDependency
from cxrtriage.schema import Prediction
from cxrtriage.security.principal import Role
from cxrtriage.serve.auth import AUTH_RESPONSES, require
from cxrtriage.serve.crops import CROPS_URL, with_crop_urls
from cxrtriage.serve.deps import RuntimeDep, ready_engine
from cxrtriage.serve.errors import INTERNAL_ERROR, ApiError, input_error_status
from cxrtriage.serve.middleware import scope_request_id
from cxrtriage.serve.runtime import Engine, QueueFullError, ServiceRuntime
from cxrtriage.worklist import KEY_PATTERN, file_on_worklist

if TYPE_CHECKING:  # pragma: no cover
    from cxrtriage.pipeline import Triaged

__all__ = ["check_upload", "predict", "predict_responses", "predict_router", "predict_upload", "requested_format"]

log = logging.getLogger("cxrtriage.serve.app")

_UPLOAD_HELP = "frontal chest radiograph: PNG, JPEG or DICOM (detected from content); an empty file gets 422"
_ACCESSION_HELP = (
    "the sender's accession-like key for the worklist (letters, digits, . _ -; never a patient identifier); "
    "random when absent"
)
_PRIOR_REPORT_HELP = "optional prior radiology report text (quoted as provenance)"

Upload = Annotated[UploadFile, File(description=_UPLOAD_HELP, json_schema_extra={"minLength": 1})]
Accession = Annotated[str | None, Form(pattern=KEY_PATTERN, description=_ACCESSION_HELP)]
AccessionQuery = Annotated[
    str | None,
    Query(alias="accession", pattern=KEY_PATTERN, description=_ACCESSION_HELP + "; as a form field or here, not both"),
]
#: the response header that names the key the study was filed under on the worklist (``GET /worklist/{key}``)
WORKLIST_KEY_HEADER = "X-Worklist-Key"


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


def _triage_checked(engine: Engine, data: bytes, kind: str, prior_report: str | None) -> "Triaged":
    """Decode the upload once (``kind``: what :func:`check_upload` sniffed) and triage it; the run keeps the decoded
    image (with a DICOM upload's header) and the analysed pixels for the output formats."""
    return engine.run(engine.load(data, kind=kind), _prior(prior_report))


def predict_upload(
    engine: Engine, data: bytes, prior_report: str | None = None, *, url_prefix: str = CROPS_URL
) -> Prediction:
    """Triage uploaded bytes: the whole request -> Prediction step, blocking (run it in a worker thread).

    Raises :class:`cxrtriage.errors.InputError` subclasses for bad uploads, like :func:`cxrtriage.predict`.
    """
    kind = check_upload(data)
    return with_crop_urls(engine.predict(engine.load(data, kind=kind), _prior(prior_report)), url_prefix)


# ----------------------------------------------------------------------------- the route


def requested_format(name: str) -> OutputFormat:
    """The requested output format, or the answer before any work: 422 for an unknown name (listing the registered
    ones), 501 when the library it needs is missing."""
    try:
        fmt = get_format(name)
        fmt.require(f"format={name}")
    except UnknownFormat as exc:
        raise ApiError(422, str(exc), "UnknownFormat") from exc
    except MissingDependency as exc:
        raise ApiError(501, str(exc), "MissingDependency") from exc
    return fmt


def _rejected(rid: str, exc: InputError) -> ApiError:
    """A bad upload's answer (415 for an unsupported format, else 422); the log names its type, never its content."""
    log.info("request %s rejected: %s", rid, type(exc).__name__)
    return ApiError(input_error_status(exc), str(exc), type(exc).__name__)


async def _infer(
    runtime: ServiceRuntime, engine: Engine, data: bytes, kind: str, prior_report: str | None, rid: str
) -> "Triaged":
    """The inference, in an inference slot and a worker thread; counted in ``/status`` and ``/metrics``, and recorded
    for drift monitoring (a result or a refusal)."""
    try:
        async with runtime.limiter.slot():
            t0 = time.perf_counter()
            triaged = await run_in_threadpool(_triage_checked, engine, data, kind, prior_report)
            elapsed = time.perf_counter() - t0
    except QueueFullError:
        retry = runtime.retry_after_s()
        s = runtime.settings
        raise ApiError(
            429,
            f"the server is busy ({s.max_concurrent} running, {s.max_queue} waiting); retry in {retry} s",
            "QueueFull",
            {"Retry-After": str(retry)},
        ) from None
    except InputError as exc:
        await run_in_threadpool(runtime.record_refusal, "api")
        raise _rejected(rid, exc) from exc
    except ModelError as exc:
        log.error("request %s: model error: %s", rid, exc)
        raise ApiError(503, str(exc), "ModelError") from exc
    except Exception as exc:
        log.error(
            "request %s: unexpected %s during prediction",
            rid,
            type(exc).__name__,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        raise ApiError(500, INTERNAL_ERROR, "InternalError") from exc
    runtime.observe_inference(elapsed)
    await run_in_threadpool(runtime.record_result, "api", triaged)
    return triaged


def _rendered(fmt: OutputFormat, context: OutputContext) -> Any:
    """The answer's body in ``fmt``: a JSON-ready dict, or a DICOM format's file bytes (worker thread: a Secondary
    Capture is megabytes)."""
    payload = fmt.render(context)
    return fmt.encode(payload) if fmt.encoding == "dicom" else payload


async def predict(
    request: Request,
    runtime: ServiceRuntime,
    file: UploadFile,
    prior_report: str | None,
    format_name: str = "json",
    accession: str | None = None,
) -> Response:
    """``POST /predict`` once FastAPI has parsed and validated the form: the checks in the module docstring's
    order, the inference, the result filed on the worklist, the answer in the requested format."""
    fmt = requested_format(format_name)
    rid = scope_request_id(request.scope)
    try:
        data = await file.read()
    finally:
        await file.close()
    try:
        kind = check_upload(data)  # the one format check of the service, before the request waits for a slot
    except InputError as exc:
        raise _rejected(rid, exc) from exc
    if fmt.needs_dicom_source and kind != "dicom":
        raise ApiError(
            422,
            f"format={fmt.name} needs a DICOM upload: {fmt.title} must reference its source DICOM instance",
            "NoDicomSource",
        )
    engine = ready_engine(runtime.state)
    triaged = await _infer(runtime, engine, data, kind, prior_report, rid)
    url_prefix = request.scope.get("root_path", "").rstrip("/") + CROPS_URL
    with_urls = with_crop_urls(triaged.prediction, url_prefix)
    # filed on the worklist (the sender's accession over the header's); a database that fails comes back as a
    # warning on the result, never as an error
    study = study_info(triaged.image)
    study = dataclasses.replace(study, accession=accession) if accession else study
    prediction, key = await run_in_threadpool(
        lambda: file_on_worklist(lambda: runtime.worklist, with_urls, accession, study=study)
    )
    payload = await run_in_threadpool(_rendered, fmt, OutputContext.of(triaged, prediction))
    prune = BackgroundTask(runtime.prune_soon)
    filed = {WORKLIST_KEY_HEADER: key} if key else {}  # absent when the worklist could not be written (see warnings)
    if isinstance(payload, bytes):
        return Response(
            payload,
            media_type=fmt.media_type,
            background=prune,
            headers={"Content-Disposition": f'attachment; filename="result{fmt.suffix}"', **filed},
        )
    return JSONResponse(payload, media_type=fmt.media_type, background=prune, headers=filed)


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
        422: {
            "description": "empty/corrupt image, not a frontal chest radiograph, missing file, prior_report too "
            "long, an unknown format, or a format that needs a DICOM upload given a PNG/JPEG"
        },
        429: {"description": "too many requests waiting; see Retry-After"},
        501: {"description": "the format's optional library (e.g. the [interop] extra) is not installed"},
        503: {"description": "model not ready or model error"},
        200: {
            "description": f"the result in the requested format: {described}",
            "content": content,
            "headers": {
                WORKLIST_KEY_HEADER: {
                    "description": "the key the study was filed under (GET /worklist/{key}); absent when the "
                    "worklist could not be written (the result then carries a warning)",
                    "schema": {"type": "string"},
                }
            },
        },
    }


def _format_help() -> str:
    """``format``'s description: each registered format's name, what it is and its media type."""
    return "the output format: " + "; ".join(
        f"{f.name}: {f.title} ({f.media_type}" + (", DICOM uploads only)" if f.needs_dicom_source else ")")
        for f in output_formats()
    )


def predict_router(max_prior_report_chars: int) -> APIRouter:
    """``POST /predict`` for one app: the one route built per app rather than at import.

    Two parts of its request come from the app when it is built, and FastAPI reads both from the endpoint's
    signature, to validate the request and to write the OpenAPI schema: the length limit of ``prior_report`` (a
    setting; the schema's ``maxLength``, a 422 RequestValidationError past it) and the ``format`` names (the
    output-format registry, which :func:`cxrtriage.interop.formats.register` may extend). A dependency could check
    the length at request time, but the schema would no longer state it. The endpoint only declares the request;
    :func:`predict` does the work with what :mod:`cxrtriage.serve.deps` provides.
    """
    prior_report_form = Form(max_length=max_prior_report_chars, description=_PRIOR_REPORT_HELP)
    format_query = Query(description=_format_help(), json_schema_extra={"enum": list(format_names())})

    router = APIRouter(
        tags=["triage"], dependencies=[require(Role.SUBMITTER)], responses=AUTH_RESPONSES
    )  # its role: serve/auth.py

    @router.post(
        "/predict",
        response_model=Prediction,
        responses=predict_responses(),
        summary="Triage one chest X-ray (decision support only)",
    )
    async def predict_endpoint(
        request: Request,
        file: Upload,
        runtime: RuntimeDep,
        prior_report: Annotated[str | None, prior_report_form] = None,
        format: Annotated[str, format_query] = "json",
        accession: Accession = None,
        accession_query: AccessionQuery = None,
    ) -> Response:
        if accession and accession_query and accession != accession_query:
            raise ApiError(
                422, "accession given twice with different values (form field and query parameter)", "InvalidInput"
            )
        return await predict(request, runtime, file, prior_report, format, accession or accession_query)

    return router
