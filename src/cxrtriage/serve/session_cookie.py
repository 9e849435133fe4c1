"""The web side of the UI's sessions (:mod:`cxrtriage.security.sessions` holds the rules): the cookie's header, the
middleware that sets a renewed cookie or clears an ended one on the response, the ``next`` rule of the sign-in page
(no open redirect), and what a browser gets instead of the API's 401/403 JSON.

The cookie: ``cxrtriage_session=<signed value>; Path=/; Max-Age=<idle timeout>; HttpOnly; SameSite=Strict``, plus
``Secure`` when the request came over HTTPS (``CXRTRIAGE_SESSION_COOKIE_SECURE``: ``auto``, ``true``, ``false``).
``HttpOnly``: no script reads it; ``SameSite=Strict``: the browser sends it only with requests this service's own
pages make, never with a request another site's page starts (with :mod:`cxrtriage.serve.csrf`, the cross-site
defence of everything the session may do).

A browser is a request whose ``Accept`` names ``text/html`` (a page load, a followed link): a GET of the UI without a
session is sent to ``/login?next=<the page>`` (303), a signed-in person whose role is too low gets a 403 page that
says so. Everything else (API clients, the UI's own script calls, images) keeps the 401/403 JSON.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrtriage.config import Settings
from cxrtriage.security.principal import Principal, Role
from cxrtriage.security.sessions import COOKIE_NAME, Sessions
from cxrtriage.serve.errors import ApiError
from cxrtriage.serve.login_page import forbidden_page

__all__ = [
    "LOGIN_PATH",
    "LOGOUT_PATH",
    "SessionCookieMiddleware",
    "browser_refusal",
    "clear_cookie",
    "root_of",
    "safe_next",
    "session_cookie",
    "wants_html",
]

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
DEFAULT_NEXT = "/ui/"
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


def root_of(scope: Scope) -> str:
    """The prefix a reverse proxy serves the app under (``root_path``), without its last slash; usually ``""``."""
    return str(scope.get("root_path", "")).rstrip("/")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: ``value`` when it is a path on this service (``/ui/``, ``/ui/?x=1``), else
    ``/ui/``. Refused: another site (``https://...``, ``//host``, ``/\\host``, which browsers read as a host),
    anything with a scheme, control characters or spaces, and the sign-in and sign-out pages themselves."""
    if not value or len(value) > 512 or not _LOCAL_PATH.fullmatch(value):
        return DEFAULT_NEXT
    if value.split("?", 1)[0] in (LOGIN_PATH, LOGOUT_PATH):
        return DEFAULT_NEXT
    return value


def wants_html(scope: Scope) -> bool:
    """A browser loading a page (GET or HEAD with ``text/html`` in ``Accept``), not a script or an API client."""
    if scope.get("type") != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    for key, value in scope.get("headers", []):
        if key == b"accept":
            return b"text/html" in value.lower()
    return False


def _secure(scope: Scope, setting: str) -> bool:
    if setting == "auto":
        return scope.get("scheme") in ("https", "wss")
    return setting == "true"


def session_cookie(value: str, max_age: int, scope: Scope, settings: Settings) -> str:
    """The ``Set-Cookie`` value that gives the browser the session ``value`` for ``max_age`` seconds."""
    parts = [f"{COOKIE_NAME}={value}", "Path=/", f"Max-Age={max(0, int(max_age))}", "HttpOnly", "SameSite=Strict"]
    if _secure(scope, settings.session_cookie_secure):
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie(scope: Scope, settings: Settings) -> str:
    """The ``Set-Cookie`` value that makes the browser forget the session cookie."""
    expired = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    return session_cookie("", 0, scope, settings).replace("Max-Age=0", expired)


class SessionCookieMiddleware:
    """Sets the cookie a request's session check renewed (``state['session_cookie']``: a sliding idle timeout) or
    clears one that ended (``state['session_ended']``) on the response; never touches a response that sets the
    cookie itself (sign-in, sign-out)."""

    def __init__(self, app: ASGIApp, settings: Settings, sessions: Sessions) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                sets_own = any(k.lower() == b"set-cookie" and v.startswith(COOKIE_NAME.encode()) for k, v in headers)
                cookie = None
                if not sets_own and state.get("session_cookie"):
                    value = str(state["session_cookie"])
                    cookie = session_cookie(value, self.sessions.cookie_max_age(value), scope, self.settings)
                elif not sets_own and state.get("session_ended"):
                    cookie = clear_cookie(scope, self.settings)
                if cookie is not None:
                    message = {**message, "headers": [*headers, (b"set-cookie", cookie.encode("latin-1"))]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def browser_refusal(scope: Scope, exc: ApiError, required: Role) -> Response | None:
    """What a browser loading a protected page gets instead of ``exc`` (the guard's 401/403): a redirect to the
    sign-in page (with ``next`` and, for an ended session, a note), or the 403 page naming the role; None when the
    request is not a browser's page load, or the refusal is neither (429, 503: the JSON stays)."""
    if not wants_html(scope):
        return None
    root = root_of(scope)
    state = scope.get("state", {})
    if exc.status_code == 401:
        here = str(scope.get("path", ""))
        if root and here.startswith(root + "/"):  # the app's own path: the redirect adds the prefix back
            here = here[len(root) :]
        query = scope.get("query_string", b"").decode("latin-1")
        target = {"next": safe_next(quote(here, safe="/") + (f"?{query}" if query else ""))}
        ended = state.get("session_ended") if isinstance(state, dict) else None
        if ended in ("expired", "ended"):
            target["m"] = ended
        return RedirectResponse(f"{root}{LOGIN_PATH}?{urlencode(target)}", status_code=303, headers=NO_STORE)
    principal = state.get("principal") if isinstance(state, dict) else None
    if exc.status_code == 403 and isinstance(principal, Principal):
        page = forbidden_page(root=root, principal=principal, required=required)
        return HTMLResponse(page, status_code=403, headers=NO_STORE)
    return None
