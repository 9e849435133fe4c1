"""The dependencies that the service's routes declare, as FastAPI's full-stack template keeps them in ``api/deps.py``.

A route names what it needs in its signature (``runtime: RuntimeDep``, ``store: WorklistDep``) and FastAPI hands
it over; no route reads ``request.app.state``. Each app owns one :class:`~cxrtriage.serve.runtime.ServiceRuntime`
(several apps can live in one process: tests, notebooks), set by ``create_app`` and found by :func:`get_runtime`,
the one place that knows where it is kept.

What is deliberately not a dependency, because FastAPI resolves dependencies before the handler runs:

* the loaded engine: ``POST /predict`` answers 415/422 for a bad upload even while the model loads, so it asks
  :func:`ready_engine` for the engine after its upload checks;
* an inference slot: ``POST /predict`` holds it around the inference only (``runtime.limiter.slot()``), not while
  it files the result and builds a Secondary Capture, which a dependency's lifetime would include.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated

from fastapi import Depends, Request

from cxrtriage.config import Settings
from cxrtriage.errors import ModelError
from cxrtriage.serve.errors import ApiError
from cxrtriage.serve.guard import Guard
from cxrtriage.serve.runtime import Engine, EngineState, ServiceRuntime
from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import FeedbackStore

__all__ = [
    "NOT_READY_RETRY_S",
    "EngineStateDep",
    "FeedbackDep",
    "GuardDep",
    "RuntimeDep",
    "SettingsDep",
    "WorklistDep",
    "get_engine_state",
    "get_feedback",
    "get_guard",
    "get_runtime",
    "get_settings",
    "get_worklist",
    "ready_engine",
    "worklist_unavailable",
]

#: Retry-After (seconds) while the model loads or after it failed to load
NOT_READY_RETRY_S = 5


async def get_runtime(request: Request) -> ServiceRuntime:
    """The app's runtime (settings, engine state, limiter, stats, metrics, worklist).

    ``async``, like the other attribute reads here: a plain ``def`` dependency costs a worker-thread hop per request.
    """
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    """The one :class:`~cxrtriage.config.Settings` the app was built with."""
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_engine_state(runtime: RuntimeDep) -> EngineState:
    """Whether the model is loaded, still loading, or failed to load (``GET /ready``)."""
    return runtime.state


EngineStateDep = Annotated[EngineState, Depends(get_engine_state)]


async def get_guard(runtime: RuntimeDep) -> Guard:
    """The app's authentication guard (what :func:`cxrtriage.serve.auth.require` checks a request with)."""
    return runtime.guard


GuardDep = Annotated[Guard, Depends(get_guard)]


def ready_engine(state: EngineState) -> Engine:
    """The loaded engine, or a 503 ``NotReady`` with Retry-After while it loads or after a failed load (the
    message says which). Called by a route at the point it needs the model, not declared with ``Depends``: see
    the module docstring."""
    try:
        return state.get_engine()
    except ModelError as exc:
        raise ApiError(503, str(exc), "NotReady", {"Retry-After": str(NOT_READY_RETRY_S)}) from exc


def worklist_unavailable(exc: Exception) -> ApiError:
    """The 503 for a worklist database that cannot be opened or read (the answer names the error's type only)."""
    return ApiError(503, f"the worklist is unavailable ({type(exc).__name__})", "WorklistUnavailable")


def get_worklist(runtime: RuntimeDep) -> Worklist:
    """The service's one worklist, opened on first use; a 503 when its database cannot be opened.

    A plain ``def``: opening creates the folder and the table, so FastAPI runs it in a worker thread.
    """
    try:
        return runtime.worklist
    except (OSError, sqlite3.Error) as exc:
        raise worklist_unavailable(exc) from exc


WorklistDep = Annotated[Worklist, Depends(get_worklist)]


def get_feedback(runtime: RuntimeDep) -> FeedbackStore:
    """The readers' assessments, in the worklist's file; the same 503 as :func:`get_worklist` when it cannot be
    opened. A plain ``def``, for the same reason."""
    try:
        return runtime.feedback
    except (OSError, sqlite3.Error) as exc:
        raise worklist_unavailable(exc) from exc


FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]
