"""The service's one error shape, ``{"detail": str, "error_type": str, "request_id": str}``, and the exception
handlers that give every HTTP error that shape (:func:`install_error_handlers`, called by ``create_app``).

A route or a dependency (:mod:`cxrtriage.serve.deps`) that refuses a request raises :class:`ApiError`, FastAPI's
idiom (``raise HTTPException``) with the service's ``error_type``; the handler here writes the answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxrtriage.errors import InputError, UnsupportedFormatError
from cxrtriage.serve.middleware import BodyError, body_error_response, scope_request_id

__all__ = ["INTERNAL_ERROR", "ApiError", "error_response", "input_error_status", "install_error_handlers"]

log = logging.getLogger("cxrtriage.serve.app")

INTERNAL_ERROR = "internal server error; it has been logged with this request id"


class ApiError(StarletteHTTPException):
    """A refusal in the service's error shape: ``status``, ``detail`` and the ``error_type`` clients branch on
    (``NotReady``, ``QueueFull``, ``WorklistUnavailable``, ...), with optional headers (``Retry-After``)."""

    def __init__(self, status: int, detail: str, error_type: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.error_type = error_type


def error_response(
    status: int, detail: str, error_type: str, request: Request, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "error_type": error_type, "request_id": scope_request_id(request.scope)},
        status_code=status,
        headers=headers,
    )


def input_error_status(exc: InputError) -> int:
    return 415 if isinstance(exc, UnsupportedFormatError) else 422


def _validation_message(errors: Sequence[Any]) -> str:
    """One sentence per error of FastAPI's validation (its ``loc``, ``type``, ``msg``; the ``ctx`` of a too-long
    ``prior_report`` holds the limit that was enforced, the app's ``max_prior_report_chars``)."""
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        field = ".".join(loc) or "request"
        if err.get("type") == "missing" and field == "file":
            parts.append("missing form field 'file': send the image as multipart/form-data field 'file'")
        elif field == "prior_report" and err.get("type") == "string_too_long":
            parts.append(f"prior_report is longer than {(err.get('ctx') or {}).get('max_length')} characters")
        elif err.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
        elif err.get("type") == "model_attributes_type":
            parts.append("the body must be a JSON object")
        elif err.get("type") == "missing":
            parts.append(f"missing field '{field}'")  # a form field, a JSON field or a query parameter
        else:
            parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _body_error(request: Request, exc: BodyError) -> JSONResponse:  # 413, 408
    return body_error_response(exc, scope_request_id(request.scope))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every other HTTP error (404, 405, the multipart parser's 400 for an oversized form field, ...) in the
    service's one error shape."""
    try:
        error_type = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        error_type = "HTTPError"
    return error_response(exc.status_code, str(exc.detail), error_type, request, headers=getattr(exc, "headers", None))


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), exc.error_type, request, headers=exc.headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
    body = {
        "detail": _validation_message(exc.errors()),
        "error_type": "RequestValidationError",
        "request_id": scope_request_id(request.scope),
        "errors": errors,
    }
    return JSONResponse(body, status_code=422)  # without the inputs: no echo of report text


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "request %s: unexpected %s",
        scope_request_id(request.scope),
        type(exc).__name__,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return error_response(500, INTERNAL_ERROR, "InternalError", request)


def install_error_handlers(app: FastAPI) -> None:
    """413/408 from the body limit, the routes' :class:`ApiError`, every other HTTP and validation error, and a
    generic 500 (traceback in the log)."""
    app.add_exception_handler(BodyError, _body_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)
