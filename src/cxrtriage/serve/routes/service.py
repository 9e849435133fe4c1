"""The service's own routes (OpenAPI tag ``service``): ``GET /health`` (the process answers), ``GET /ready`` (the
model is loaded and warmed up; what an orchestrator polls), ``GET /status`` (model identity, size, latency,
counters of the worker that answers; admin), ``GET /metrics`` (Prometheus text: the instrumentator's request
metrics and the service's own, summed over every worker with ``--workers N``: :mod:`cxrtriage.serve.worker_metrics`;
admin) and ``GET /`` (to the UI, or to the API docs when the UI is not mounted); the others are open. The handlers
have no docstrings: FastAPI would publish them as the operations' descriptions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cxrtriage.security.principal import Role
from cxrtriage.serve.auth import AUTH_RESPONSES, require
from cxrtriage.serve.deps import NOT_READY_RETRY_S, EngineStateDep, RuntimeDep
from cxrtriage.serve.worker_metrics import forget_dead_workers

__all__ = ["health", "metrics", "ready", "root", "router", "status"]

router = APIRouter(tags=["service"])


@router.get("/health", summary="liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="readiness: model loaded and warmed up (503 until then)")
async def ready(state: EngineStateDep) -> JSONResponse:
    # 200 with the model's name; 503 with Retry-After while it loads, or after a failed load with the reason
    engine = state.engine
    if engine is None:
        error = state.error
        body = {
            "ready": False,
            "detail": f"model failed to load: {error}" if error else "model loading",
            "error": error,
        }
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(NOT_READY_RETRY_S)})
    return JSONResponse({"ready": True, "model": engine.info.name})


# admin: its counters tell how many studies this site triages (as /metrics does)
@router.get(
    "/status",
    summary="model identity and size, latency, counters, disclaimer (admin)",
    dependencies=[require(Role.ADMIN)],
    responses=AUTH_RESPONSES,
)
async def status(runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.status()


# admin, as /status; a plain def: the computed gauges read the state files, in a worker thread
@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    dependencies=[require(Role.ADMIN)],
    response_class=PlainTextResponse,
    responses={**AUTH_RESPONSES, 200: {"description": "Prometheus text exposition format (text/plain; version=0.0.4)"}},
)
def metrics(runtime: RuntimeDep) -> Response:
    forget_dead_workers()  # a worker killed a moment ago no longer counts as ready
    return Response(generate_latest(runtime.metrics_registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def root(runtime: RuntimeDep) -> RedirectResponse:
    return RedirectResponse("/ui" if runtime.ui_mounted else "/docs")
