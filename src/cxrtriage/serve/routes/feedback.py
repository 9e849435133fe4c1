"""``POST /worklist/{key}/feedback`` (a reader's assessment of a stored result: agrees or not, the label they would
give, an optional finding and comment) and ``GET /worklist/{key}/feedback`` (every assessment of the study, oldest
first, the latest ``current``): the API side of :mod:`cxrtriage.worklist.feedback`, whose store rules (the result
version referred to, reassessments appended, what is refused) apply as they are.

Who: the authenticated principal's name when authentication is on (a ``reader`` in the body must then be that name,
or be left out); while the service runs without authentication nobody is identified, so the body's ``reader`` (the
reader's name) is required. Both routes need the reader role (the POST with the ``Authorization`` / ``X-API-Key``
header, like every state-changing call: :mod:`cxrtriage.serve.auth`); the cross-site check applies to the POST, and
each call leaves an audit record (``feedback.record``, ``feedback.read``) with the study's key, never the comment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cxrtriage.security.principal import Role
from cxrtriage.serve.auth import AUTH_RESPONSES, require
from cxrtriage.serve.deps import FeedbackDep
from cxrtriage.serve.errors import ApiError
from cxrtriage.serve.routes.worklist import use_worklist
from cxrtriage.worklist import KEY_PATTERN, MAX_VERSION
from cxrtriage.worklist.feedback import FINDINGS, MAX_COMMENT_CHARS, MAX_READER_CHARS, TYPED, check_finding

__all__ = ["Assessment", "OnePath", "feedback_history_endpoint", "record_feedback_endpoint", "router", "who_assessed"]


class OnePath(APIRoute):
    """The GET and the POST of ``/worklist/{key}/feedback`` are two routes on one path; a request with another
    method is answered 405 with both in ``Allow`` (each route alone would name only its own method)."""

    ALLOW = "GET, POST"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") not in (self.methods or ()):
            raise ApiError(405, "Method Not Allowed", "MethodNotAllowed", {"Allow": self.ALLOW})
        await super().handle(scope, receive, send)


# both routes need the reader role (serve/auth.py), as the rest of /worklist
router = APIRouter(
    tags=["worklist"], dependencies=[require(Role.READER)], responses=AUTH_RESPONSES, route_class=OnePath
)

Key = Annotated[str, Path(pattern=KEY_PATTERN, description="the study's key (X-Worklist-Key of POST /predict)")]
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "the worklist database cannot be opened"}}
_NOT_FOUND = "no study with this key on the worklist"
_RECORD_EXAMPLE = {
    "id": 7,
    "key": "ACC-0042",
    "version": 1,
    "model_sha256": "3f5c...",
    "model_label": "Urgent",
    "agrees": False,
    "label": "Non-Urgent",
    "finding": "no acute finding",
    "comment": "old apical scarring, unchanged",
    "reader": "dr-smith",
    "via": "api-key",
    "time": "2026-12-07T15:00:00Z",
}


class Assessment(BaseModel):
    """The body of ``POST /worklist/{key}/feedback``."""

    model_config = ConfigDict(extra="forbid")
    agrees: bool = Field(description="whether the reader agrees with the result's label")
    label: Literal["Urgent", "Non-Urgent"] | None = Field(
        default=None,
        description="the label the reader would give; absent: the result's (agrees) or the other one (disagrees); "
        "one that contradicts agrees is refused",
    )
    finding: str | None = Field(default=None, description=f"optional, one of: {', '.join(FINDINGS)}")
    comment: str | None = Field(
        default=None, max_length=MAX_COMMENT_CHARS, description="optional free text; stored, never logged"
    )
    reader: str | None = Field(
        default=None,
        max_length=MAX_READER_CHARS,
        description="the reader's name: required while the service runs without authentication; with it, the "
        "signed-in principal's name is used (a different name here is refused)",
    )
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="the version of the study's result assessed; absent: latest"
    )

    @field_validator("finding")
    @classmethod
    def _known_finding(cls, value: str | None) -> str | None:
        return check_finding(value)


def who_assessed(principal: Any, typed: str | None) -> tuple[str, str]:
    """``(reader, via)`` of an assessment: the authenticated principal's name and how it authenticated; without
    authentication (``via`` ``open``, or no principal), the typed name (``via`` ``typed``). ValueError, with the
    reason, when a typed name is missing without authentication or differs from the principal's with it."""
    name, via = getattr(principal, "name", None), getattr(principal, "via", None)
    typed = (typed or "").strip() or None
    if principal is None or via == "open":
        if typed is None:
            raise ValueError("reader: the reader's name is required while the service runs without authentication")
        return typed, TYPED
    if typed is not None and typed != name:
        raise ValueError(f"reader: the assessment is recorded under the signed-in name ({name}); leave reader out")
    return str(name), str(via)


@router.post(
    "/worklist/{key}/feedback",
    status_code=201,
    summary="record a reader's assessment of a study's result: agrees or not, their label, an optional finding and "
    "comment (a reassessment adds a record; the history is kept)",
    responses={
        201: {"description": "the record as stored", "content": {"application/json": {"example": _RECORD_EXAMPLE}}},
        400: {"description": "the body could not be parsed at all (e.g. bytes that are not UTF-8)"},
        404: {"description": "no study with this key, or no such version of it"},
        422: {
            "description": "a key that is not accession-like, or a body that is not accepted (the detail says why: "
            "an unknown label or finding, a label that contradicts agrees, a comment over "
            f"{MAX_COMMENT_CHARS} characters, no reader name without authentication)"
        },
        **_UNAVAILABLE,
    },
)
async def record_feedback_endpoint(key: Key, body: Assessment, request: Request, store: FeedbackDep) -> Response:
    """``POST /worklist/{key}/feedback``: one assessment, appended to the study's history."""
    try:
        reader, via = who_assessed(getattr(request.state, "principal", None), body.reader)
        record = await use_worklist(
            store.record,
            key,
            agrees=body.agrees,
            label=body.label,
            finding=body.finding,
            comment=body.comment,
            reader=reader,
            via=via,
            version=body.version,
        )
    except ValueError as exc:
        raise ApiError(422, str(exc), "RequestValidationError") from None
    if record is None:
        if body.version is not None and await use_worklist(store.worklist.item, key) is not None:
            raise ApiError(404, f"this study has no version {body.version} (GET /worklist/{key}/versions)", "NotFound")
        raise ApiError(404, _NOT_FOUND, "NotFound")
    return JSONResponse(record, status_code=201)


@router.get(
    "/worklist/{key}/feedback",
    summary="every reader's assessment of one study, oldest first; the latest is current",
    responses={
        200: {
            "description": "key, current (the latest record, or null) and history (every record, oldest first)",
            "content": {
                "application/json": {
                    "example": {
                        "key": "ACC-0042",
                        "current": {**_RECORD_EXAMPLE, "current": True},
                        "history": [{**_RECORD_EXAMPLE, "current": True}],
                    }
                }
            },
        },
        404: {"description": _NOT_FOUND},
        422: {"description": "the key is not accession-like (letters, digits, . _ -)"},
        **_UNAVAILABLE,
    },
)
async def feedback_history_endpoint(key: Key, store: FeedbackDep) -> Response:
    history = await use_worklist(store.history, key)
    if history is None:
        raise ApiError(404, _NOT_FOUND, "NotFound")
    return JSONResponse({"key": key, "current": history[-1] if history else None, "history": history})
