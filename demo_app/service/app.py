"""ASGI entry point: ``uvicorn demo_app.service.app:app`` (settings from ``CXRTRIAGE_*`` variables)."""

from cxrtriage.serve.app import create_app

app = create_app()
