"""The service's HTTP routes, one module per resource (as FastAPI's full-stack template keeps ``api/routes/``):
:mod:`~cxrtriage.serve.routes.predict` (``POST /predict``), :mod:`~cxrtriage.serve.routes.worklist`
(``GET /worklist``, ``GET /worklist/{key}``, ``POST /worklist/{key}/state``),
:mod:`~cxrtriage.serve.routes.feedback` (``POST`` and ``GET /worklist/{key}/feedback``: readers' assessments),
:mod:`~cxrtriage.serve.routes.service` (``/health``, ``/ready``, ``/status``, ``/metrics``, ``/``) and
:mod:`~cxrtriage.serve.routes.login` (the web UI's ``/login`` and ``/logout`` pages). Routes declare what they need
from :mod:`cxrtriage.serve.deps`; :func:`api_router` is what ``create_app`` includes."""

from __future__ import annotations

from fastapi import APIRouter

from cxrtriage.config import Settings
from cxrtriage.serve.routes import feedback, login, predict, service, worklist

__all__ = ["api_router"]


def api_router(settings: Settings) -> APIRouter:
    """Every route of one app. ``/predict`` is built from ``settings`` (its form's documented limit); the other
    routers are the modules' own."""
    router = APIRouter()
    router.include_router(predict.predict_router(settings.max_prior_report_chars))
    router.include_router(worklist.router)
    router.include_router(feedback.router)
    router.include_router(service.router)
    router.include_router(login.router)
    return router
