"""``GET /worklist`` and ``GET /worklist/{key}``: the reading worklist that ``POST /predict``, the UI and the DICOM
node file on (:mod:`cxrtriage.worklist`), read-only over HTTP.

Both declare the service's one worklist (:data:`~cxrtriage.serve.deps.WorklistDep`: a 503 ``WorklistUnavailable``
when its database cannot be opened) and read it in a worker thread (SQLite blocks), with the same 503 when the read
fails.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cxrtriage.serve.deps import SettingsDep, WorklistDep, worklist_unavailable
from cxrtriage.serve.errors import ApiError
from cxrtriage.worklist import KEY_PATTERN, READING_ORDER

__all__ = ["router", "worklist", "worklist_item_endpoint"]

#: how ``GET /worklist`` orders its items (the answer says it, so that a client need not know the rule)

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "the worklist database cannot be opened"}}

router = APIRouter(tags=["worklist"])


async def _read(read: Callable[..., Any], *args: Any) -> Any:
    """A worklist read in a worker thread; the 503 when the database fails."""
    try:
        return await run_in_threadpool(read, *args)
    except (OSError, sqlite3.Error) as exc:
        raise worklist_unavailable(exc) from exc


@router.get(
    "/worklist",
    responses=_UNAVAILABLE,
    summary="triaged studies in reading order (Urgent / needs review, then the rest; overdue first within each)",
)
async def worklist(store: WorklistDep, settings: SettingsDep) -> Response:
    """``GET /worklist``: triaged studies in reading order."""  # also its OpenAPI description
    items = await _read(store.items)
    return JSONResponse({"order": READING_ORDER, "max_wait_min": settings.worklist_max_wait_min, "items": items})


# the name makes the operationId ("worklist_item_endpoint_worklist__key__get") and a docstring would become the
# operation's description: both as published before the routes had modules of their own
@router.get(
    "/worklist/{key}",
    summary="the stored result of one study on the worklist",
    responses={
        404: {"description": "no study with this key"},
        422: {"description": "the key is not accession-like (letters, digits, . _ -)"},
        **_UNAVAILABLE,
    },
)
async def worklist_item_endpoint(key: Annotated[str, Path(pattern=KEY_PATTERN)], store: WorklistDep) -> Response:
    result = await _read(store.result, key)
    if result is None:
        raise ApiError(404, "no study with this key on the worklist", "NotFound")
    return JSONResponse(result)
