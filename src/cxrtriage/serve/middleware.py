"""ASGI middleware of the web service: request-body size limit (413 while streaming) and stall timeout (408),
load shedding before the body is read (429), request log without client-chosen text, the allowed host names (400
for any other ``Host:``), and the read-only crops file server."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrtriage.explain.crop_store import is_crop_name
from cxrtriage.log_text import loggable

log = logging.getLogger("cxrtriage.serve.app")

REQUEST_ID_KEY = "cxrtriage.request_id"
_LOGGED_PATHS = frozenset(
    {
        "/",
        "/predict",
        "/health",
        "/ready",
        "/status",
        "/metrics",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/docs/oauth2-redirect",
    }
)


class BodyError(StarletteHTTPException):
    """A request body the service refuses while reading it; ``error_type`` names it in the error JSON.

    An HTTPException on purpose: FastAPI re-raises those from body parsing (other errors become 400).
    """

    error_type = "BodyError"


class BodyTooLargeError(BodyError):
    """Raised from ``receive`` once the streamed body passes the limit (413)."""

    error_type = "PayloadTooLarge"

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the upload is larger than the limit of {_mib(limit)}")


class BodyTimeoutError(BodyError):
    """Raised from ``receive`` when the client sends no part of its body for ``timeout_s`` seconds (408); the
    connection is closed, since the rest of the body may still arrive."""

    error_type = "RequestTimeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            status_code=408,
            headers={"Connection": "close"},
            detail=f"the upload stalled: no data for {timeout_s:g} s; send the request body without pauses",
        )


class LoadSheddingMiddleware:
    """429 for ``POST <path>`` while every inference slot and queue place is taken, decided from the headers: under
    overload the service parses, spools and decodes nothing it would refuse anyway (issue 9.5).

    ``busy()`` returns None when a request may proceed, else the Retry-After seconds. A body of at most
    ``drain_bytes`` is read and thrown away first (no parsing, no copy kept): a server that answers and closes
    while the client is still sending makes most clients see a reset connection instead of the 429 (``make
    loadtest`` at 32 clients: 929 transport errors in 60 s). Larger bodies are not read; the connection is closed.
    The limiter in the endpoint stays the authority (a request let through here can still get 429 there).
    """

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        busy: Callable[[], int | None],
        *,
        drain_bytes: int = 8 * 1024 * 1024,
        drain_timeout_s: float = 2.0,
    ) -> None:
        self.app = app
        self.path = path
        self.busy = busy
        self.drain_bytes = drain_bytes
        self.drain_timeout_s = drain_timeout_s

    async def _drain(self, scope: Scope, receive: Receive) -> bool:
        """Read and discard a small body; True when all of it was read (the connection can stay open)."""
        declared = _content_length(scope)
        if declared is not None and declared > self.drain_bytes:
            return False
        seen = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.drain_timeout_s)
            except asyncio.TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            seen += len(message.get("body", b""))
            if seen > self.drain_bytes:
                return False
            if not message.get("more_body", False):
                return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") == self.path:
            retry = self.busy()
            if retry is not None:
                drained = await self._drain(scope, receive)
                body = {
                    "detail": f"the server is busy; retry in {retry} s",
                    "error_type": "QueueFull",
                    "request_id": scope_request_id(scope),
                }
                headers = {"Retry-After": str(retry)} | ({} if drained else {"Connection": "close"})
                await JSONResponse(body, status_code=429, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB"


def body_error_response(exc: BodyError, request_id: str) -> JSONResponse:
    """The service's error JSON for a refused body (used here and by the app's exception handler)."""
    return JSONResponse(
        {"detail": str(exc.detail), "error_type": exc.error_type, "request_id": request_id},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def scope_request_id(scope: Scope) -> str:
    return str(scope.get(REQUEST_ID_KEY, "-"))


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimitMiddleware:
    """413 for bodies over ``max_bytes``: from Content-Length before reading anything, else while streaming;
    408 when the body stalls for ``body_timeout_s`` (a slow or stuck client must not hold a worker, nor block
    shutdown, forever).

    Chunked uploads have no Content-Length, so the bytes actually received are counted too; the upload is
    never read (or spooled) past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await body_error_response(BodyTooLargeError(self.max_bytes), scope_request_id(scope))(scope, receive, send)
            return
        received = 0
        started = False
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # only the disconnect is left to wait for: a long response (the UI's event stream) is
                return await receive()  # not a stalled upload
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except asyncio.TimeoutError:
                raise BodyTimeoutError(self.body_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyError as exc:  # not turned into a response further in (e.g. a mounted sub-app)
            if started:
                raise
            await body_error_response(exc, scope_request_id(scope))(scope, receive, send)


def _loggable_path(path: str) -> str:
    """Known API paths as they are; anything else cut to its first segment, with its control characters escaped.

    Other paths can carry client-chosen text (Gradio serves uploads under their original file name, which
    may be a patient's name); crop names are random but are not needed in the log either. The path is the decoded
    one, so ``/%0a...`` arrives as a newline, which would forge a line of the log (:func:`loggable` escapes it).
    """
    if path in _LOGGED_PATHS:
        return path
    first = path.lstrip("/").split("/", 1)[0]
    return f"/{loggable(first, 64)}/..." if first else "/"


class RequestLogMiddleware:
    """Gives each request an id (``X-Request-ID`` header, ``scope["cxrtriage.request_id"]``) and logs one line.

    The line holds id, method, a sanitised path, status and latency, and nothing about the content; the method and
    the path are the client's text, escaped (:func:`cxrtriage.log_text.loggable`), so the line stays one line.
    """

    def __init__(self, app: ASGIApp, on_done: Callable[[Scope, int, float], None] | None = None) -> None:
        self.app = app
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope[REQUEST_ID_KEY] = rid
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - t0
            log.info(
                "request %s %s %s -> %d in %.1f ms",
                rid,
                loggable(scope.get("method", "?"), 16),
                _loggable_path(scope.get("path", "")),
                status,
                elapsed * 1e3,
            )
            if self.on_done is not None:
                try:
                    self.on_done(scope, status, elapsed)
                except Exception:  # pragma: no cover - bookkeeping must never break a response
                    log.exception("request %s: bookkeeping failed", rid)


class CropFiles(StaticFiles):
    """``StaticFiles`` that serves only engine-named thumbnails (16 hex + .png), never other files in the folder."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not is_crop_name(path):
            raise StarletteHTTPException(status_code=404)
        return await super().get_response(path, scope)


_HOST_ALLOWED_KEY = "cxrtriage.host_allowed"


class AllowedHostsMiddleware:
    """Starlette's :class:`TrustedHostMiddleware` (``CXRTRIAGE_ALLOWED_HOSTS``: a web page on another site that
    rebinds its DNS name to this server's address sends its own name in ``Host:`` and is refused), with the refusal
    in the service's error JSON: 400 ``InvalidHost`` saying what to configure (a refused WebSocket is closed)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        # Starlette compares the Host header's name, which keeps an IPv6 address in brackets ("[::1]")
        self.allowed_hosts = [f"[{h}]" if ":" in h and not h.startswith("[") else h for h in allowed_hosts]
        self._check = TrustedHostMiddleware(self._allowed, allowed_hosts=self.allowed_hosts, www_redirect=False)

    async def _allowed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_HOST_ALLOWED_KEY] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # no Host header at all (HTTP/1.0, an ASGI call in-process): nothing a rebinding browser page could send
        if scope["type"] not in ("http", "websocket") or not any(k == b"host" for k, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)
            return
        refused = False

        async def checked_send(message: Message) -> None:
            nonlocal refused
            if scope.get(_HOST_ALLOWED_KEY):
                await send(message)
            else:  # Starlette's plain-text refusal: replaced below
                refused = True

        await self._check(scope, receive, checked_send)
        if not refused or scope.get(_HOST_ALLOWED_KEY):
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = {
            "detail": "this server does not answer to the host name in the request's Host header; an administrator "
            "can add it to CXRTRIAGE_ALLOWED_HOSTS",
            "error_type": "InvalidHost",
            "request_id": scope_request_id(scope),
        }
        await JSONResponse(body, status_code=400)(scope, receive, send)
