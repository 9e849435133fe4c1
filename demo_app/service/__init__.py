"""The demo web service: thin re-exports of :mod:`cxrtriage.serve.app` (all behaviour lives in the core package).

Run with ``cxrtriage serve`` or ``uvicorn demo_app.service.app:app --port 7860 --no-access-log``.
"""
