"""The API documentation (``/docs``, ``/redoc``) served from the package, so it renders with the network off.

FastAPI's default pages load Swagger UI and ReDoc from a CDN: on a hospital network without internet access (the
deployment cxrtriage is built for) they are blank. Here the same pages load the copies that the ``fastapi-offline``
package ships (Swagger UI 5, which reads the OpenAPI 3.1 FastAPI writes, and ReDoc; MIT licence; in the ``[demo]``
extra) from ``/static/apidocs``. Without that package the CDN pages are served and a warning says why they may be
blank.
"""

from __future__ import annotations

import logging
from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("cxrtriage.serve.app")

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/static/apidocs"


def mount_offline_docs(app: FastAPI, title: str) -> bool:
    """Add ``/docs`` (with its OAuth2 redirect page) and ``/redoc`` to an app built with ``docs_url=None`` and
    ``redoc_url=None``; True when their assets are served from the package, False when the pages use the CDN."""
    swagger: dict[str, str] = {}
    redoc: dict[str, str] = {}
    try:
        assets = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        log.warning(
            "fastapi-offline is not installed: /docs and /redoc load their scripts from a CDN and are blank offline "
            "(pip install 'cxrtriage[demo]')"
        )
    else:
        app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="apidocs")
        swagger = {
            "swagger_js_url": f"{ASSETS_URL}/swagger-ui-bundle.js",
            "swagger_css_url": f"{ASSETS_URL}/swagger-ui.css",
            "swagger_favicon_url": f"{ASSETS_URL}/favicon.png",
        }
        redoc = {"redoc_js_url": f"{ASSETS_URL}/redoc.standalone.js", "redoc_favicon_url": f"{ASSETS_URL}/favicon.png"}
    redirect_url = f"{DOCS_URL}/oauth2-redirect"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - API documentation", oauth2_redirect_url=redirect_url, **swagger
        )

    @app.get(redirect_url, include_in_schema=False)
    async def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{title} - API documentation", with_google_fonts=False, **redoc
        )

    return bool(swagger)
