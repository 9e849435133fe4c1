"""Cross-site request refusal: a web page on another site cannot make the reader's browser change anything here.

A browser sends a form POST to any site without asking first (a multipart form needs no CORS preflight), so a page
on ``evil.example`` could file a result on the worklist or mark a study reported through the reader's browser,
with whatever the browser would attach to this service. Every browser names the page that made a request: ``Origin``
on every cross-origin POST (and on same-origin ones in current browsers), ``Sec-Fetch-Site`` in current browsers.
So a state-changing request (POST, PUT, PATCH, DELETE) is refused with 403 when:

* its ``Origin`` is ``null`` (a sandboxed frame, a ``data:`` page), or names another host (and port) than the one
  the request was sent to (its ``Host``, or ``X-Forwarded-Host`` from a reverse proxy that rewrites ``Host``; a
  cross-site page cannot set either header without a CORS preflight, which this service never grants);
* it has no ``Origin`` and its ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site`` (another site, or a sibling
  host of this one).

Requests without either header (curl, scripts, the modality gateway, the smoke and load tests) are not browsers'
and pass. The web UI's own requests come from this service's own pages, so their ``Origin`` is its host: they pass.
Safe methods (GET, HEAD, OPTIONS) change nothing and pass. This is the OWASP "verifying origin with standard
headers" defence; it is independent of how callers authenticate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrtriage.serve.middleware import scope_request_id

log = logging.getLogger("cxrtriage.serve.app")

__all__ = ["CrossSiteRequestMiddleware", "NoCorsMiddleware", "cross_site_reason"]

#: the methods that change state (RFC 9110's unsafe methods)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: a refused body up to this size is read and thrown away before the 403, so that the browser sees the answer and
#: not a reset connection; a larger one (or a stalled one) gets the 403 with the connection closed
DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_TIMEOUT_S = 2.0
_CORS = b"access-control-"


async def _drain(receive: Receive) -> bool:
    """Read and discard the request body (bounded); True when all of it was read."""
    seen = 0
    while True:
        try:
            message: Message = await asyncio.wait_for(receive(), DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            return False
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if seen > DRAIN_BYTES:
            return False
        if not message.get("more_body", False):
            return True


def _netloc(host: str, scheme: str | None = None) -> str:
    """``host[:port]`` lower-cased, without the scheme's default port (``example.org:443`` for https is
    ``example.org``); a Host header has no scheme, so both default ports are dropped."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and (not name.startswith("[") or name.endswith("]")):  # [::1]:8000 has a port
        defaults = {_DEFAULT_PORTS[scheme]} if scheme in _DEFAULT_PORTS else set(_DEFAULT_PORTS.values())
        if port in defaults:
            return name
    return host


def cross_site_reason(method: str, headers: dict[str, str]) -> str | None:
    """Why a request must be refused as cross-site (the 403's words), or None when it may proceed. ``headers``:
    lower-case names."""
    if method.upper() not in UNSAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is None:
        site = headers.get("sec-fetch-site", "").strip().lower()
        if site in ("cross-site", "same-site"):
            return f"a {site} request from a web page (Sec-Fetch-Site: {site}) may not change anything here"
        return None
    if origin.strip().lower() == "null":
        return "a request from a page without an origin (Origin: null) may not change anything here"
    parts = urlsplit(origin.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return "the request's Origin header is not a web origin"
    theirs = _netloc(parts.netloc, parts.scheme)
    ours = {_netloc(h) for h in (headers.get("host"), headers.get("x-forwarded-host", "").split(",")[0]) if h}
    if theirs in ours:
        return None
    return "a request from a page on another site may not change anything here: open this service's own page"


class CrossSiteRequestMiddleware:
    """403 ``CrossSiteRequest`` for a state-changing request that a page on another site made
    (:func:`cross_site_reason`); the refusal is logged with the request id, never with the origin it named."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        reason = cross_site_reason(scope["method"], headers)
        if reason is None:
            await self.app(scope, receive, send)
            return
        rid = scope_request_id(scope)
        log.warning("refused a cross-site %s request (request %s)", scope["method"], rid)
        body = json.dumps({"detail": reason, "error_type": "CrossSiteRequest", "request_id": rid}).encode()
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if not await _drain(receive):
            response_headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 403, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


class NoCorsMiddleware:
    """This service grants no cross-origin reads: every ``Access-Control-*`` response header is dropped.

    Gradio's own CORS middleware (inside the ``/ui`` mount) answers any ``localhost`` / ``127.0.0.1`` origin with
    ``Access-Control-Allow-Origin: <that origin>`` and ``-Credentials: true``. The session cookie is SameSite=Strict,
    but a page on another *port* of the same host is the same site, so its browser sends the cookie: with those
    headers, a page served from ``http://127.0.0.1:9999`` could read the UI's JSON (its config, a study's result) as
    the signed-in reader. The UI is served from this origin and needs no CORS; the API's clients are not browsers. A
    preflight then fails in the browser, as it should (and a cross-site write is refused anyway, above)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_without_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                message = {**message, "headers": [(k, v) for k, v in headers if not k.lower().startswith(_CORS)]}
            await send(message)

        await self.app(scope, receive, send_without_cors)
