"""The check every protected request of one app goes through (:class:`Guard`, owned by the app's
:class:`~cxrtriage.serve.runtime.ServiceRuntime`): rate limit, credential, authentication, role.

Both ways a request reaches something protected call :meth:`Guard.check`: the FastAPI dependency of a route
(:func:`cxrtriage.serve.auth.require`) and the middleware in front of the mounts that are not FastAPI routes (the UI,
the crops). The credential is the ``Authorization: Bearer`` or ``X-API-Key`` header; where the caller allows it
(``session_ok``: the UI, the crops and the reading routes' GETs), a request without one may carry the web UI's
session cookie instead (:class:`~cxrtriage.security.sessions.Sessions`: signed, re-checked against the key store,
idle timeout and absolute lifetime). The answers are the service's error JSON
(:class:`~cxrtriage.serve.errors.ApiError`):

* 401 ``Unauthorized`` with ``WWW-Authenticate: Bearer``: no credential, or one that is not accepted (the reason,
  never the credential);
* 403 ``Forbidden``: a valid credential whose role is below the route's (or a token that names no role);
* 429 ``TooManyFailedAuthentications`` with ``Retry-After``: this client address failed
  ``CXRTRIAGE_AUTH_FAILURES_PER_MIN`` times within the last minute (every request from it waits, valid or not);
* 503 ``AuthUnavailable``: the keys file cannot be read or the provider's JWKS cannot be fetched.

What other parts read (the audit trail): ``request.state.principal`` is set to the :class:`Principal` once the
credential is accepted (:data:`~cxrtriage.security.principal.ANONYMOUS` while no authentication is configured), and
``request.state.auth_failure`` to a short reason (never the credential) before a 401, 403-without-role or 429. For
a session, ``request.state.session_cookie`` holds a renewed cookie value to set on the response, or
``request.state.session_ended`` says why the presented one ended (``expired`` or ``ended``), so that the response
clears it (:mod:`cxrtriage.serve.login` does both).

Failed authentications are logged with the client address as the server sees it (the socket's, or the one a trusted
reverse proxy forwards: uvicorn's ``--forwarded-allow-ips``) and the reason; the credential never reaches a log,
an answer or the state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from starlette.types import Scope

from cxrtriage.config import Settings
from cxrtriage.errors import ConfigurationError
from cxrtriage.log_text import loggable
from cxrtriage.security.authenticate import (
    Authenticator,
    AuthUnavailable,
    CredentialRejected,
    CredentialWithoutRole,
    FailureLimiter,
)
from cxrtriage.security.keys import KeyStoreError
from cxrtriage.security.principal import ANONYMOUS, Principal, Role
from cxrtriage.security.sessions import COOKIE_NAME, SessionRejected, Sessions
from cxrtriage.security.shared_failures import SharedFailureLimiter
from cxrtriage.serve.errors import ApiError
from cxrtriage.serve.middleware import scope_request_id
from cxrtriage.serve.worker_metrics import multiprocess_dir

__all__ = ["API_KEY_HEADER", "Guard", "client_address", "credential_of", "session_cookie_of"]

log = logging.getLogger("cxrtriage.serve.auth")

API_KEY_HEADER = "X-API-Key"
_NO_CREDENTIAL = "no credential"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_ADDRESS_CHARS = re.compile(r"[^0-9A-Za-z:.\-\[\]]")
_MISSING = (
    "this endpoint needs a credential: send 'Authorization: Bearer <API key or token>' "
    f"or '{API_KEY_HEADER}: <API key>'"
)


def credential_of(headers: Mapping[str, str]) -> str | None:
    """The credential of a request: ``Authorization: Bearer <credential>``, else ``X-API-Key: <key>``."""
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = (headers.get(API_KEY_HEADER.lower()) or "").strip()
    return key or None


def session_cookie_of(headers: Mapping[str, str]) -> str | None:
    """The web UI's session cookie of a request, if it carries one."""
    from starlette.requests import cookie_parser

    value = cookie_parser(headers.get("cookie") or "").get(COOKIE_NAME, "").strip()
    return value or None


def client_address(scope: Scope) -> str:
    """The client's address as the server sees it, reduced to address characters (it reaches the log)."""
    client = scope.get("client")
    return _ADDRESS_CHARS.sub("?", str(client[0]))[:64] if client else "unknown"


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})  # what request.state reads and writes
    return state


def failure_limiter(settings: Settings) -> FailureLimiter | SharedFailureLimiter:
    """This process's own count of failed authentications; with several workers (``serve --workers N``: the shared
    metrics folder is set) one count in the state folder that every worker reads and writes, so that the limit per
    client address holds for the service, not for each worker."""
    if multiprocess_dir() is None:
        return FailureLimiter(settings.auth_failures_per_min)
    path = settings.state_dir / "auth_failures.sqlite"
    return SharedFailureLimiter(path, settings.auth_failures_per_min)


class Guard:
    """Authentication and roles of one app: its :class:`Authenticator` and its :class:`FailureLimiter`."""

    def __init__(self, settings: Settings) -> None:
        self.authenticator = Authenticator(settings)
        self.failures = failure_limiter(settings)
        self.sessions = Sessions.from_settings(settings, self.authenticator.keys)

    def _refuse(self, scope: Scope, status: int, reason: str, detail: str, error_type: str, **headers: str) -> ApiError:
        _state(scope)["auth_failure"] = reason
        log.log(
            logging.INFO if status == 401 and reason == _NO_CREDENTIAL else logging.WARNING,  # a browser's first visit
            "request %s: authentication failed from %s: %s",
            scope_request_id(scope),
            client_address(scope),
            loggable(reason),  # a token's error may quote what the client sent in its header
        )
        return ApiError(status, detail, error_type, dict(headers) or None)

    def check(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        required: Role,
        *,
        session_ok: bool = False,
        activity: bool = True,
    ) -> Principal:
        """The principal of a request to a route that needs ``required``, or the :class:`ApiError` to answer.
        ``session_ok``: a request without a credential header may carry the UI's session cookie instead;
        ``activity``: whether the request renews the session's idle timeout (the page's own polling does not).
        Blocking (a key's hash, a JWKS fetch): call it from a worker thread."""
        if not self.authenticator.enforced():
            _state(scope)["principal"] = ANONYMOUS
            return ANONYMOUS
        client = client_address(scope)
        retry = self.failures.retry_after(client)
        if retry is not None:
            raise self._refuse(
                scope,
                429,
                "too many failed authentications",
                f"too many failed authentications from this address; retry in {retry} s",
                "TooManyFailedAuthentications",
                **{"Retry-After": str(retry)},
            )
        credential = credential_of(headers)
        cookie = session_cookie_of(headers) if credential is None and session_ok else None
        if credential is None and cookie is None:
            raise self._refuse(scope, 401, _NO_CREDENTIAL, _MISSING, "Unauthorized", **_CHALLENGE)
        try:
            principal = (
                self._session(scope, client, cookie, activity)
                if credential is None
                else self.authenticator.authenticate(credential)
            )
        except CredentialWithoutRole as exc:
            raise self._refuse(scope, 403, str(exc), f"not allowed: {exc}", "Forbidden") from None
        except CredentialRejected as exc:
            self.failures.record(client)
            raise self._refuse(
                scope, 401, str(exc), f"the credential was not accepted ({exc})", "Unauthorized", **_CHALLENGE
            ) from None
        except AuthUnavailable as exc:
            log.error("request %s: authentication unavailable: %s", scope_request_id(scope), exc)
            raise ApiError(
                503, "authentication is unavailable on the server; the error is logged", "AuthUnavailable"
            ) from None
        _state(scope)["principal"] = principal
        if not principal.role.allows(required):
            raise ApiError(
                403,
                f"not allowed: this needs the {required.value} role; "
                f"the credential has the {principal.role.value} role",
                "Forbidden",
            )
        return principal

    def _session(self, scope: Scope, client: str, cookie: str | None, activity: bool) -> Principal:
        """The principal of a session cookie (a renewed cookie goes to ``state['session_cookie']``), or the 401."""
        try:
            principal, renewed = self.sessions.check(cookie or "", activity=activity)
        except SessionRejected as exc:
            if exc.counts:
                self.failures.record(client)
            _state(scope)["session_ended"] = "expired" if exc.expired else "ended"
            raise self._refuse(
                scope,
                401,
                exc.reason,
                f"not signed in ({exc.reason}): sign in again at /login, or send an API key or token",
                "Unauthorized",
                **_CHALLENGE,
            ) from None
        except (KeyStoreError, ConfigurationError) as exc:  # the keys file or the session secret cannot be read
            raise AuthUnavailable(str(exc)) from None
        if renewed is not None:
            _state(scope)["session_cookie"] = renewed
        return principal
