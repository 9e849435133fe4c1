"""The service's side of the audit trail: one record (:mod:`cxrtriage.security.audit`) per request that takes or
returns patient-derived data, and per refused authentication.

What is recorded (:func:`audited_action`): ``POST /predict`` -> ``triage`` (the study: the response's
``X-Worklist-Key``), ``GET /worklist`` -> ``worklist.list``, ``GET /worklist/{key}`` -> ``result.read``,
``POST /worklist/{key}/state`` -> ``worklist.state``, ``POST /worklist/{key}/feedback`` -> ``feedback.record`` and
its ``GET`` -> ``feedback.read`` (a reader's assessment: the study only, never the comment), a crop thumbnail ->
``crop.read``, the UI's page ->
``ui.open``, its file route -> ``ui.file``, its upload -> ``ui.upload``, each UI action (a triage, a worklist
page or a stored result opened in the UI; which one is not visible at this layer, so the UI's handlers add their own
``result.read`` / ``worklist.state`` / ``triage`` record with the study: :mod:`cxrtriage.serve.ui.audit`) ->
``ui.event``, and the UI's
sign-in ``POST /login`` -> ``login`` (with the person's name and role; a refused one is ``auth.failed``, target
``login``, reason ``wrong name or key``) and ``POST /logout`` -> ``logout``. Any 401 or 403
is recorded as ``auth.failed`` (``target``: what was asked for; ``reason``: ``request.state.auth_failure`` when the
authentication layer set one). Nothing is recorded for ``/health``, ``/ready``, ``/status``, ``/metrics``, the docs
or the UI's static assets. The principal is ``request.state.principal`` (its ``name``, ``role`` and ``via``), set by
the authentication layer; without one the record says ``anonymous`` / ``none``.

The record is written when the response starts, before its body leaves: the access is on file before the data is
out. A write that fails does not withhold the response (a triage result or a stored result is never held back for
the sake of bookkeeping: the safety of a patient waiting for a reading comes first), but it is logged at ERROR,
counted in ``/metrics`` (``cxrtriage_audit_write_failures_total``, for an alert) and the response carries
``X-Audit: failed``, so the client and a proxy's logs see it too.

The middleware sits inside the request log (which gives the request id it records) and outside everything else,
so that it sees every answer, refusals by other middleware (413, 429) and the authentication layer included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrtriage.security.audit import ANONYMOUS, NO_ROLE, AuditEvent, AuditLog, without_secrets
from cxrtriage.serve.crops import CROPS_URL
from cxrtriage.serve.middleware import REQUEST_ID_KEY
from cxrtriage.serve.routes.predict import WORKLIST_KEY_HEADER
from cxrtriage.worklist import KEY_PATTERN

__all__ = ["AUDIT_HEADER", "AuditMiddleware", "append_or_report", "audited_action", "install_audit", "principal_fields"]

log = logging.getLogger("cxrtriage.serve.audit")

#: the response header that says the request's audit record could not be written
AUDIT_HEADER = "X-Audit"
_KEY = re.compile(KEY_PATTERN)
_WORKLIST_ITEM = re.compile(r"/worklist/([^/]+)")
_WORKLIST_STATE = re.compile(r"/worklist/([^/]+)/state")
_WORKLIST_FEEDBACK = re.compile(r"/worklist/([^/]+)/feedback")
_UI_API = "/ui/gradio_api"
_UI_EVENT_PREFIXES = (f"{_UI_API}/queue/join", f"{_UI_API}/run/", f"{_UI_API}/call/", f"{_UI_API}/api/")
_READS = frozenset({"GET", "HEAD"})
#: what a refused request to an otherwise unaudited path asked for (the ``target`` of its auth.failed record)
_OTHER_TARGETS = {"/metrics": "metrics", "/status": "status", "/docs": "docs", "/openapi.json": "docs"}


def _key(text: str) -> str | None:
    """A path's study key, only when it is accession-like (the route refuses anything else, and a refused value
    may be a patient's name)."""
    return text if _KEY.match(text) else None


def audited_action(method: str, path: str) -> tuple[str, str | None] | None:
    """``(action, study key)`` of a request, or None when it is not audited (see the module docstring)."""
    if path == "/predict":
        return ("triage", None) if method == "POST" else None
    if path == "/worklist":
        return ("worklist.list", None) if method in _READS else None
    if (m := _WORKLIST_STATE.fullmatch(path)) is not None:
        return ("worklist.state", _key(m.group(1))) if method == "POST" else None
    if (m := _WORKLIST_FEEDBACK.fullmatch(path)) is not None:
        action = "feedback.record" if method == "POST" else "feedback.read" if method in _READS else None
        return (action, _key(m.group(1))) if action else None
    if (m := _WORKLIST_ITEM.fullmatch(path)) is not None:
        return ("result.read", _key(m.group(1))) if method in _READS else None
    if path.startswith(CROPS_URL + "/"):
        return ("crop.read", None) if method in _READS else None
    if path in ("/ui", "/ui/"):
        return ("ui.open", None) if method in _READS else None
    if path.startswith((f"{_UI_API}/file=", f"{_UI_API}/file/")):
        return ("ui.file", None) if method in _READS else None
    if path == f"{_UI_API}/upload":
        return ("ui.upload", None) if method == "POST" else None
    if path.startswith(_UI_EVENT_PREFIXES):
        return ("ui.event", None) if method == "POST" else None
    if path in ("/login", "/logout"):
        return (path[1:], None) if method == "POST" else None
    return None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _presented_secrets(scope: Scope) -> list[str]:
    """The credentials the request carried (bearer token, API key, cookie values): what a reason must not hold."""
    found: list[str] = []
    for key, value in scope.get("headers", []):
        text = value.decode("latin-1")
        if key == b"authorization":
            found += [text, text.split(" ", 1)[-1].strip()]
        elif key == b"x-api-key":
            found.append(text.strip())
        elif key == b"cookie":
            found += [part.split("=", 1)[-1].strip() for part in text.split(";")]
    return [s for s in found if s]


def principal_fields(state: Any) -> tuple[str, str, str | None]:
    """``(name, role, via)`` of ``request.state.principal`` (read duck-typed: the authentication layer owns the
    type), else anonymous. ``state``: the scope's state dict. The UI's own records use it too
    (:mod:`cxrtriage.serve.ui.audit`), so both say who in the same words."""
    principal = state.get("principal") if isinstance(state, dict) else None
    if principal is None:
        return ANONYMOUS, NO_ROLE, None
    name = getattr(principal, "name", None)
    role = getattr(principal, "role", None)
    role = getattr(role, "value", role)  # an Enum member: its value ("reader"), not "Role.READER"
    via = getattr(principal, "via", None)
    if via == "open":  # authentication is not configured: nobody was identified, whatever the open mode allows
        return ANONYMOUS, NO_ROLE, "open"
    return (str(name) if name else ANONYMOUS), (str(role) if role else NO_ROLE), (str(via) if via else None)


def scope_event(
    scope: Any,
    action: str,
    outcome: int | str,
    study: str | None,
    *,
    reason: str | None = None,
    target: str | None = None,
) -> AuditEvent:
    """The audit record of ``action`` in a request's ASGI ``scope``: its principal (``scope['state']``), request id
    and client address; shared by this middleware and the UI's own records (:mod:`cxrtriage.serve.ui.audit`)."""
    name, role, via = principal_fields(scope.get("state"))
    client = scope.get("client")
    return AuditEvent(
        action=action,
        outcome=outcome,
        principal=name,
        role=role,
        via=via,
        study=study,
        request_id=str(scope.get(REQUEST_ID_KEY, "")) or None,
        client=str(client[0]) if client else None,
        reason=reason,
        target=target,
    )


def _path(scope: Scope) -> str:
    """The path the app routes on: behind a proxy's prefix (``root_path``) that prefix is not part of it."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "")).rstrip("/")
    return (path[len(root) :] or "/") if root and path.startswith(root + "/") else path


class AuditMiddleware:
    """Records one :class:`~cxrtriage.security.audit.AuditEvent` per audited request (see the module docstring)."""

    def __init__(self, app: ASGIApp, audit: AuditLog, on_failure: Callable[[], None] | None = None) -> None:
        self.app = app
        self.audit = audit
        self.on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = str(scope.get("method", "")), _path(scope)
        audited = audited_action(method, path)
        state = scope.setdefault("state", {})  # request.state lives here; the same dict reaches every layer
        recorded = False

        async def send_recorded(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                if not await self._record(scope, state, audited, path, status, headers):
                    message = {**message, "headers": [*headers, (AUDIT_HEADER.lower().encode(), b"failed")]}
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        except Exception:
            if not recorded:  # no answer was started: the server answers 500
                await self._record(scope, state, audited, path, 500, [])
            raise

    async def _record(
        self,
        scope: Scope,
        state: Any,
        audited: tuple[str, str | None] | None,
        path: str,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> bool:
        """Write the request's record, if it has one; False when the write failed (logged and counted)."""
        failed_auth = status in (401, 403)
        if audited is None and not failed_auth:
            return True
        action, study = audited if audited is not None else (None, None)
        if action == "triage":
            study = _header(headers, WORKLIST_KEY_HEADER.lower().encode())
        reason = state.get("auth_failure") if failed_auth and isinstance(state, dict) else None
        event = scope_event(
            scope,
            "auth.failed" if failed_auth else str(action),
            status,
            study,
            reason=without_secrets(str(reason), _presented_secrets(scope)) if reason else None,
            target=(action or _OTHER_TARGETS.get(path, "other")) if failed_auth else None,
        )
        what = f"request {event.request_id} ({event.action} -> {status})"
        return await anyio.to_thread.run_sync(append_or_report, self.audit, event, what, self.on_failure)


def append_or_report(
    audit: AuditLog, event: AuditEvent, what: str, on_failure: Callable[[], None] | None = None
) -> bool:
    """Append ``event``; False when it could not be written, which is logged at ERROR (``AUDIT RECORD NOT WRITTEN
    for <what>``) and reported to ``on_failure`` (the ``/metrics`` counter). Never raises: a record that cannot be
    written never withholds an answer, from the API (this middleware) or the UI (:mod:`cxrtriage.serve.ui.audit`).
    Blocking (``fsync``)."""
    try:
        audit.append(event)
    except Exception as exc:  # noqa: BLE001 - any failure: the answer still goes out, flagged and counted
        log.error("AUDIT RECORD NOT WRITTEN for %s: %s: %s", what, type(exc).__name__, exc)
        if on_failure is not None:
            on_failure()
        return False
    return True


def install_audit(app: FastAPI, audit: AuditLog, on_failure: Callable[[], None]) -> None:
    """Add the audit middleware to ``app``, writing to ``audit`` (the app's one log, which the UI also writes to)
    and calling ``on_failure`` for a record not written. Call it just before the request log is added, so that it
    sits inside that and outside every other layer."""
    app.add_middleware(AuditMiddleware, audit=audit, on_failure=on_failure)
