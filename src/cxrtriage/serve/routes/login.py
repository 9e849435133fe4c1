"""Signing in to the web UI: ``GET /login`` (the form), ``POST /login`` (name and personal access key -> a session
cookie), ``POST /logout``. Open routes (:data:`cxrtriage.serve.auth.OPEN_PATHS`), not in the OpenAPI schema: they
are pages for people, not API operations.

A sign-in is refused with one message whatever was wrong (unknown name, wrong or revoked key, a key of another name),
with 401 (recorded by the audit trail as ``auth.failed``, target ``login``), and counted by the failed-attempt limit
of the API (:class:`~cxrtriage.security.authenticate.FailureLimiter`): after ``CXRTRIAGE_AUTH_FAILURES_PER_MIN``
failures in a minute, the address gets 429 with ``Retry-After``. A sign-in that succeeds is a 303 to ``next`` (a
local path only, :func:`~cxrtriage.serve.session_cookie.safe_next`) with the session cookie, recorded as ``login``
with the person's name and role; signing out as ``logout``. The key is read from the form body and goes nowhere
else: not into a log line, a page, the audit trail or the cookie.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cxrtriage.errors import ConfigurationError
from cxrtriage.log_text import loggable
from cxrtriage.security.keys import KeyStoreError
from cxrtriage.serve.deps import GuardDep, SettingsDep
from cxrtriage.serve.guard import client_address, session_cookie_of
from cxrtriage.serve.login_page import INCOMPLETE, MESSAGES, WRONG, login_page, not_configured_page
from cxrtriage.serve.middleware import scope_request_id
from cxrtriage.serve.session_cookie import (
    LOGIN_PATH,
    LOGOUT_PATH,
    NO_STORE,
    clear_cookie,
    root_of,
    safe_next,
    session_cookie,
)

__all__ = ["router"]

log = logging.getLogger("cxrtriage.serve.auth")

router = APIRouter(include_in_schema=False)
#: the form's fields: a form with anything else is not this page's
_FIELDS = ("name", "key", "next")


def _page(html: str, status: int = 200, **headers: str) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={**NO_STORE, **headers})


@router.get(LOGIN_PATH)
async def login_form(request: Request, guard: GuardDep, next: str | None = None, m: str | None = None) -> Response:
    """The sign-in form (or, while the service runs without authentication, a page that says so)."""
    root = root_of(request.scope)
    if not await run_in_threadpool(guard.authenticator.enforced):
        return _page(not_configured_page(root=root))
    return _page(login_page(root=root, next_path=safe_next(next), message=MESSAGES.get(m or "")))


@router.post(LOGIN_PATH)
async def login(request: Request, guard: GuardDep, settings: SettingsDep) -> Response:
    """Check the name and key of the form; on success set the session cookie and go to ``next``."""
    scope, root = request.scope, root_of(request.scope)
    if not await run_in_threadpool(guard.authenticator.enforced):
        return _page(not_configured_page(root=root), 409)
    try:
        async with request.form(max_files=0, max_fields=len(_FIELDS) + 2) as form:
            values = {f: v if isinstance(v := form.get(f), str) else "" for f in _FIELDS}  # a file part is no value
    except Exception:  # noqa: BLE001 - a malformed body: the parser's message could echo what was sent
        values = dict.fromkeys(_FIELDS, "")
    next_path = safe_next(values["next"])
    client = client_address(scope)
    retry = guard.failures.retry_after(client)
    if retry is not None:
        request.state.auth_failure = "too many failed authentications"
        error = f"Too many failed sign-ins from this address. Try again in {retry} seconds."
        return _page(login_page(root=root, next_path=next_path, error=error), 429, **{"Retry-After": str(retry)})
    if not values["name"].strip() or not values["key"].strip():
        return _page(login_page(root=root, next_path=next_path, error=INCOMPLETE), 400)
    try:
        signed_in = await run_in_threadpool(guard.sessions.sign_in, values["name"], values["key"])
    except (KeyStoreError, ConfigurationError) as exc:  # the keys file or the session secret cannot be read
        log.error("request %s: sign-in unavailable: %s", scope_request_id(scope), exc)
        error = "Sign-in is unavailable on the server; the error is logged. Please tell your administrator."
        return _page(login_page(root=root, next_path=next_path, error=error), 503)
    if signed_in is None:
        guard.failures.record(client)
        request.state.auth_failure = "wrong name or key"  # fixed words: neither the name nor the key
        log.warning("request %s: sign-in refused from %s: wrong name or key", scope_request_id(scope), client)
        return _page(login_page(root=root, next_path=next_path, error=WRONG), 401)
    principal, cookie = signed_in
    request.state.principal = principal  # what the audit trail records for this "login"
    name = loggable(principal.name, 128)
    log.info("request %s: %s signed in (%s) from %s", scope_request_id(scope), name, principal.role, client)
    response = RedirectResponse(f"{root}{next_path}", status_code=303, headers=NO_STORE)
    max_age = guard.sessions.cookie_max_age(cookie)
    response.headers.append("set-cookie", session_cookie(cookie, max_age, scope, settings))
    return response


@router.post(LOGOUT_PATH)
async def logout(request: Request, guard: GuardDep, settings: SettingsDep) -> Response:
    """End the session (this process refuses its cookie from now on), clear the cookie, show the sign-in page."""
    cookie = session_cookie_of(request.headers)
    try:
        principal = await run_in_threadpool(guard.sessions.end, cookie) if cookie else None
    except (KeyStoreError, ConfigurationError):
        principal = None
    if principal is not None:
        request.state.principal = principal
    root = root_of(request.scope)
    response = RedirectResponse(f"{root}{LOGIN_PATH}?m=signed_out", status_code=303, headers=NO_STORE)
    response.headers.append("set-cookie", clear_cookie(request.scope, settings))
    return response
