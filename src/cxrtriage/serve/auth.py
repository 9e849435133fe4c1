"""Which role each part of the service needs, declared in one place per route.

* A FastAPI route declares its role with the dependency :func:`require` on its router or its decorator
  (``dependencies=[require(Role.READER)]``): the router of ``/worklist*`` (reader), of ``POST /predict``
  (submitter), ``/status`` and ``/metrics`` (admin). The dependency also puts the two security schemes (HTTP bearer,
  ``X-API-Key``) on the operation in the OpenAPI schema.
* What is not a FastAPI route (the Gradio UI and its upload and file routes under ``/ui``, the crops directory) is
  declared in :data:`PREFIX_ROLES` and checked by :class:`PrefixAuthMiddleware` with the same
  :class:`~cxrtriage.serve.guard.Guard`.
* A route that takes a body (``POST /predict``: up to the upload limit) is checked before its body is read: FastAPI
  reads and parses a body before it runs the route's dependencies, so a caller without a credential could otherwise
  make the server receive 32 MB per request. :class:`PrefixAuthMiddleware` looks up the role the route declared
  (:class:`RouteRoles`, read from the same dependency) and runs the guard on the headers first; the dependency then
  finds the principal already checked for its role and does not check (or count a failure) twice.
* Open to anyone: :data:`OPEN_PATHS` (``/health``, ``/ready`` for orchestrators, ``/`` (a redirect), the API docs and
  their assets, the web UI's sign-in and sign-out pages ``/login`` and ``/logout``).

Which credentials: the ``Authorization: Bearer`` / ``X-API-Key`` header everywhere; the web UI's session cookie
(:mod:`cxrtriage.serve.routes.login`) also for what a signed-in browser loads: the UI and the crops
(:class:`PrefixAuthMiddleware`), and the GETs of the routes that declare the reader role or higher (the worklist's
reads, ``/status``, ``/metrics``). A state-changing API call (``POST /predict``, ``POST /worklist/{key}/state``)
needs the header: the cookie's reach stays as small as the UI needs (the UI's own actions go through its Gradio
routes under ``/ui``). A browser loading the UI without a session is sent to the sign-in page (303), and a signed-in
person whose role is too low gets a 403 page (:func:`~cxrtriage.serve.session_cookie.browser_refusal`).

:func:`declared_roles` reads the table back from an app; the tests walk every route with it and fail on a route
that declares no role. The role table of the documentation (demo_app/README.md, "Security") is this one.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from cxrtriage.security.principal import Principal, Role
from cxrtriage.serve.crops import CROPS_URL
from cxrtriage.serve.deps import GuardDep
from cxrtriage.serve.docs import ASSETS_URL, DOCS_URL, REDOC_URL
from cxrtriage.serve.errors import ApiError
from cxrtriage.serve.guard import API_KEY_HEADER, Guard
from cxrtriage.serve.middleware import scope_request_id
from cxrtriage.serve.session_cookie import LOGIN_PATH, LOGOUT_PATH, browser_refusal

__all__ = [
    "AUTH_RESPONSES",
    "OPEN_PATHS",
    "BROWSER_PAGE_URL",
    "PREFIX_ROLES",
    "PrefixAuthMiddleware",
    "RoleRequirement",
    "RouteRoles",
    "declared_roles",
    "require",
]

#: what is not a FastAPI route, by path prefix: the UI (Gradio's app and the upload / file routes before it) and the
#: crop thumbnails of stored results
PREFIX_ROLES: dict[str, Role] = {"/ui": Role.READER, CROPS_URL: Role.READER}
#: open to anyone (orchestrators' probes, the redirect at /, the API documentation)
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/", DOCS_URL, f"{DOCS_URL}/oauth2-redirect", REDOC_URL, "/openapi.json"}
    | {LOGIN_PATH, LOGOUT_PATH}
)
#: what the UI's page asks for by itself, while nobody touches it: these do not renew a session's idle timeout. The
#: event stream and heartbeat, and ``run/predict``: the UI's one unqueued event, the Worklist tab's timed refresh
#: (serve/ui/worklist.py). Every other UI event (queue/join: a click, a page load) is the person's activity.
PASSIVE_PREFIXES = ("/ui/gradio_api/heartbeat/", "/ui/gradio_api/queue/data", "/ui/gradio_api/run/predict")
_SESSION_METHODS = frozenset({"GET", "HEAD"})
#: methods whose requests carry a body that FastAPI reads before the dependencies: checked in the middleware first
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: ``scope["state"]`` key: the role an early check (:class:`PrefixAuthMiddleware`) already granted this request
_CHECKED_ROLE = "auth_checked_role"
#: the static browser page (``make browser``), mounted when built: code and shipped weights, no patient data
BROWSER_PAGE_URL = "/local"
OPEN_PREFIXES = (ASSETS_URL, BROWSER_PAGE_URL)

#: the answers every protected operation documents (routers pass them as ``responses=``)
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "no credential, or one that is not accepted (unknown or revoked key, invalid or expired token)"
    },
    403: {"description": "the credential's role is below the one this operation needs"},
    429: {"description": "too many failed authentications from this address; see Retry-After"},
}

_BEARER = HTTPBearer(
    auto_error=False, scheme_name="HTTPBearer", description="an API key (cxt_...) or an OIDC access token"
)
_API_KEY = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, scheme_name="APIKeyHeader", description="an API key (cxt_...)"
)


class RoleRequirement:
    """The dependency of a route that needs ``role`` (:func:`require` builds it; :func:`declared_roles` reads
    ``role`` back). A plain ``def``: FastAPI runs it in a worker thread, so a key's hash never blocks the loop."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(
        self,
        request: Request,
        guard: GuardDep,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
        _api_key: Annotated[str | None, Depends(_API_KEY)] = None,
    ) -> Principal:
        # the schemes are declared for the OpenAPI schema; the guard reads the same two headers itself. A session
        # cookie counts for reads that need a reader (not for submitting, and not for changing state)
        state = request.scope.get("state") or {}
        if state.get(_CHECKED_ROLE) is self.role:  # checked before the body was read (PrefixAuthMiddleware)
            principal: Principal = state["principal"]
            return principal
        session_ok = request.method in _SESSION_METHODS and self.role.allows(Role.READER)
        return guard.check(request.scope, request.headers, self.role, session_ok=session_ok)


def require(role: Role) -> Any:
    """``dependencies=[require(Role.READER)]``: the route needs ``role`` (or a higher one, :meth:`Role.allows`)."""
    return Depends(RoleRequirement(role))


def route_path(scope: Scope) -> str:
    """The path the app routes on. Behind a reverse proxy's prefix (uvicorn's ``--root-path``) the ASGI ``path``
    begins with that prefix and Starlette's router strips it before matching, so the prefix table must be matched
    without it too: ``/cxr/ui/`` is the UI's ``/ui/``."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "")).rstrip("/")
    return (path[len(root) :] or "/") if root and (path == root or path.startswith(root + "/")) else path


def _prefix_role(path: str) -> Role | None:
    for prefix, role in PREFIX_ROLES.items():
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return role
    return None


class RouteRoles:
    """The role a FastAPI route of ``app`` declared (:func:`require`), by method and path, for the routes that take
    a body: what :class:`PrefixAuthMiddleware` checks before the body is read. The table is built on first use,
    when every route is in place."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._table: list[tuple[Any, frozenset[str], Role]] | None = None

    def role_of(self, method: str, path: str) -> Role | None:
        if self._table is None:
            table = []
            for route_path_, route, dependant in app_routes(self._app):
                role = _dependency_role(dependant)
                methods = frozenset(getattr(route, "methods", None) or ()) & _BODY_METHODS
                if role is not None and methods:
                    table.append((compile_path(route_path_)[0], methods, role))
            self._table = table
        for regex, methods, role in self._table:
            if method in methods and regex.match(path):
                return role
        return None


class PrefixAuthMiddleware:
    """:data:`PREFIX_ROLES` for what is not a FastAPI route, and the routes with a body before their body is read
    (``route_roles``): the same check as :func:`require`, answered in the service's error JSON (a refused WebSocket
    is closed with 1008, policy violation)."""

    def __init__(self, app: ASGIApp, guard: Guard, route_roles: RouteRoles | None = None) -> None:
        self.app = app
        self.guard = guard
        self.route_roles = route_roles

    def _role(self, scope: Scope, path: str) -> tuple[Role | None, bool]:
        """The role this request needs checked here, and whether it is a prefix's (else a body route's)."""
        if scope["type"] not in ("http", "websocket"):
            return None, False
        role = _prefix_role(path)
        if role is not None:
            return role, True
        method = str(scope.get("method", ""))
        if scope["type"] == "http" and method in _BODY_METHODS and self.route_roles is not None:
            return self.route_roles.role_of(method, path), False
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        role, is_prefix = self._role(scope, path)
        if role is None:
            await self.app(scope, receive, send)
            return
        try:
            await run_in_threadpool(
                functools.partial(
                    self.guard.check,
                    scope,
                    Headers(scope=scope),
                    role,
                    session_ok=is_prefix,  # a route's state-changing request needs the header (RoleRequirement)
                    activity=not path.startswith(PASSIVE_PREFIXES),
                )
            )
        except ApiError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            page = browser_refusal(scope, exc, role) if is_prefix else None
            if page is not None:
                await page(scope, receive, send)
                return
            body = {"detail": str(exc.detail), "error_type": exc.error_type, "request_id": scope_request_id(scope)}
            await JSONResponse(body, status_code=exc.status_code, headers=exc.headers)(scope, receive, send)
            return
        if not is_prefix:
            scope.setdefault("state", {})[_CHECKED_ROLE] = role
        await self.app(scope, receive, send)


def _dependency_role(dependant: Any) -> Role | None:
    pending = list(getattr(dependant, "dependencies", None) or [])
    while pending:
        dep = pending.pop()
        if isinstance(dep.call, RoleRequirement):
            return dep.call.role
        pending.extend(dep.dependencies)
    return None


def app_routes(app: FastAPI) -> list[tuple[str, BaseRoute, Any]]:
    """Every route of ``app`` as (path, the route, its dependant or None), with the routes of included routers
    (FastAPI >= 0.13x keeps an included router as one entry of ``app.routes``; ``iter_route_contexts`` walks it, as
    the OpenAPI schema does), and on older FastAPI ``app.routes`` as it is."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: the routes are flat
        return [(str(getattr(r, "path", "")), r, getattr(r, "dependant", None)) for r in app.routes]
    out = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        dependant = getattr(route, "dependant", None) if isinstance(route, APIRoute) else None
        out.append((str(context.path or getattr(route, "path", "")), route, dependant))
    return out


def declared_roles(app: FastAPI) -> tuple[dict[str, Role | None], list[str]]:
    """Every route of ``app`` with the role it needs (None: open), and the routes that declare none (which must be
    an empty list: a new route has to say who may use it)."""
    roles: dict[str, Role | None] = {}
    undeclared = []
    for path, route, dependant in app_routes(app):
        role = _dependency_role(dependant) or _prefix_role(path)
        if role is not None:
            roles[path] = role
        elif path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            roles[path] = None
        elif isinstance(route, (APIRoute, Route, Mount)):
            undeclared.append(path)
    return roles, undeclared
