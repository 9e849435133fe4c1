"""ASGI entry point: ``uvicorn demo_app.service.app:app`` (settings from ``CXRTRIAGE_*`` variables)."""

from cxrtriage.server import create_app

app = create_app()
