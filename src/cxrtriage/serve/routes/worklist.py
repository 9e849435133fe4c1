"""``GET /worklist``, ``GET /worklist/{key}`` (``?version=N``: an earlier version), ``GET /worklist/{key}/versions``
and ``POST /worklist/{key}/state``: the reading worklist that ``POST /predict``, the UI and the DICOM node file on
(:mod:`cxrtriage.worklist`). A study sent again keeps every version; the list and ``GET /worklist/{key}`` show the
latest.

The list comes a page at a time in reading order, with the whole list's totals; the two GETs change nothing (a
study is marked ``opened`` or ``reported`` only by the POST, or by the UI when a reader opens it). Every route
declares the service's one worklist (:data:`~cxrtriage.serve.deps.WorklistDep`: a 503 ``WorklistUnavailable`` when
its database cannot be opened) and uses it in a worker thread (SQLite blocks), with the same 503 when that fails.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cxrtriage.security.principal import Role
from cxrtriage.serve.auth import AUTH_RESPONSES, require
from cxrtriage.serve.deps import SettingsDep, WorklistDep, worklist_unavailable
from cxrtriage.serve.errors import ApiError
from cxrtriage.worklist import KEY_PATTERN, MAX_PER_PAGE, MAX_VERSION, READING_ORDER

__all__ = [
    "StateChange",
    "router",
    "set_state_endpoint",
    "use_worklist",
    "versions_endpoint",
    "worklist",
    "worklist_item_endpoint",
]

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "the worklist database cannot be opened"}}
_BAD_KEY: dict[int | str, dict[str, Any]] = {
    422: {"description": "the key is not accession-like (letters, digits, . _ -)"}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no study with this key"}}

# every route here needs the reader role (serve/auth.py)
router = APIRouter(tags=["worklist"], dependencies=[require(Role.READER)], responses=AUTH_RESPONSES)

Status = Annotated[
    Literal["active", "reported", "all"],
    Query(description="which studies: active (new and opened, the default), reported, or all"),
]
Page = Annotated[int, Query(ge=1, description="the page, from 1; a page past the end has no items")]
PerPage = Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description=f"studies per page, 1 to {MAX_PER_PAGE}")]
Key = Annotated[str, Path(pattern=KEY_PATTERN, description="the study's key (X-Worklist-Key of POST /predict)")]
Version = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_VERSION,
        description="an earlier version of the study (1: its first filing; GET /worklist/{key}/versions); absent: "
        "the latest",
    ),
]


class StateChange(BaseModel):
    """The body of ``POST /worklist/{key}/state``."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["new", "opened", "reported"] = Field(
        description="new (back on the list unread), opened (a reader has it open), reported (off the active list)"
    )


async def use_worklist(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A worklist call in a worker thread; the 503 when the database fails (the feedback routes use it too)."""
    try:
        return await run_in_threadpool(call, *args, **kwargs)
    except (OSError, sqlite3.Error) as exc:
        raise worklist_unavailable(exc) from exc


_LIST_EXAMPLE = {
    "status": "active",
    "total": 206,
    "urgent_total": 1,
    "page": 1,
    "per_page": 50,
    "pages": 5,
    "order": READING_ORDER,
    "max_wait_min": 60.0,
    "items": [
        {
            "key": "ACC-0042",
            "accession": "ACC-0042",
            "label": "Urgent",
            "score": 0.91,
            "needs_review": False,
            "received": "2026-12-02T12:00:00.000000+00:00",
            "waiting_s": 65.0,
            "priority": "urgent",
            "state": "new",
            "state_changed": "2026-12-02T12:00:00.000000+00:00",
            "study_date": "2026-12-02",
            "study_time": "11:58",
            "view": "PA",
            "modality": "DX",
            "versions": 1,
            "label_changed": None,
            "ever_urgent": True,
        }
    ],
}


@router.get(
    "/worklist",
    summary="one page of the worklist in reading order (every urgent study before every routine one)",
    responses={
        200: {
            "description": "a page of the list (items) with the whole list's total, urgent_total and pages; each "
            "item: key (for the links), accession (the sender's, else the first 8 characters of a random key), "
            "label, score, needs_review, received, waiting_s, priority (overdue / urgent / routine), state (new / "
            "opened / reported) and state_changed, study_date and study_time (from the DICOM header, else null), "
            "view (ViewPosition), modality (DICOM Modality, else the file type), versions (how many times the study "
            "was filed), label_changed (e.g. 'Urgent → Non-Urgent' when the reading changed between versions, else "
            "null) and ever_urgent (a version was Urgent or needed review: the study stays with the urgent ones)",
            "content": {"application/json": {"example": _LIST_EXAMPLE}},
        },
        422: {"description": "an unknown status, a page below 1, or per_page outside 1..200"},
        **_UNAVAILABLE,
    },
)
async def worklist(
    store: WorklistDep, settings: SettingsDep, status: Status = "active", page: Page = 1, per_page: PerPage = 50
) -> Response:
    """``GET /worklist``: one page of a list in reading order; reading it changes no study's state."""
    listing = await use_worklist(store.page, status, page, per_page)
    return JSONResponse({**listing, "order": READING_ORDER, "max_wait_min": settings.worklist_max_wait_min})


# the name makes the operationId ("worklist_item_endpoint_worklist__key__get") and a docstring would become the
# operation's description: both as published before the routes had modules of their own
@router.get(
    "/worklist/{key}",
    summary="the stored result of one study on the worklist, its latest version unless ?version=N (its state does "
    "not change)",
    responses={
        404: {"description": "no study with this key, or no such version of it"},
        422: {
            "description": "the key is not accession-like (letters, digits, . _ -), or a version outside "
            f"1..{MAX_VERSION}"
        },
        **_UNAVAILABLE,
    },
)
async def worklist_item_endpoint(key: Key, store: WorklistDep, version: Version = None) -> Response:
    result = await use_worklist(store.result, key, version)
    if result is None:
        if version is not None and await use_worklist(store.item, key) is not None:
            raise ApiError(404, f"this study has no version {version} (GET /worklist/{key}/versions)", "NotFound")
        raise ApiError(404, "no study with this key on the worklist", "NotFound")
    return JSONResponse(result)


@router.get(
    "/worklist/{key}/versions",
    summary="every version of one study, oldest first: each time it was filed and what it read (Urgent / Non-Urgent, "
    "score, needs_review)",
    responses={
        200: {
            "description": "key, label_changed (as in the list) and versions: [{version, filed, label, score, "
            "needs_review}]; the results: GET /worklist/{key}?version=N",
            "content": {
                "application/json": {
                    "example": {
                        "key": "ACC-0042",
                        "label_changed": "Urgent → Non-Urgent",
                        "versions": [
                            {
                                "version": 1,
                                "filed": "2026-12-02T12:00:00.000000+00:00",
                                "label": "Urgent",
                                "score": 0.88,
                                "needs_review": False,
                            },
                            {
                                "version": 2,
                                "filed": "2026-12-02T12:20:00.000000+00:00",
                                "label": "Non-Urgent",
                                "score": 0.01,
                                "needs_review": False,
                            },
                        ],
                    }
                }
            },
        },
        **_NOT_FOUND,
        **_BAD_KEY,
        **_UNAVAILABLE,
    },
)
async def versions_endpoint(key: Key, store: WorklistDep) -> Response:
    """``GET /worklist/{key}/versions``: the history of a study sent more than once; reading it changes nothing."""
    versions = await use_worklist(store.versions, key)
    if versions is None:
        raise ApiError(404, "no study with this key on the worklist", "NotFound")
    item = await use_worklist(store.item, key)
    return JSONResponse({"key": key, "label_changed": item["label_changed"] if item else None, "versions": versions})


@router.post(
    "/worklist/{key}/state",
    summary="set a study's state: opened, reported (it leaves the active list) or new (back on it)",
    responses={
        200: {"description": "the study's updated row, as GET /worklist lists it"},
        400: {"description": "the body could not be parsed at all (e.g. bytes that are not UTF-8)"},
        **_NOT_FOUND,
        422: {"description": "a key that is not accession-like, or a state other than new, opened, reported"},
        **_UNAVAILABLE,
    },
)
async def set_state_endpoint(key: Key, change: StateChange, store: WorklistDep) -> Response:
    """``POST /worklist/{key}/state``: a reader opened, reported or returned a study."""
    row = await use_worklist(store.set_state, key, change.state)
    if row is None:
        raise ApiError(404, "no study with this key on the worklist", "NotFound")
    return JSONResponse(row)
