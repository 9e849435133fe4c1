"""The web UI's own audit records: which study a reader opened, set the state of, or filed from the Triage tab.

The HTTP layer (:mod:`cxrtriage.serve.audit_middleware`) sees each UI action only as ``ui.event``: the study is in
the event's payload, not in the path. So the UI's handlers add a record of what they did, in the same audit trail
(``Settings.audit_file``) and in the same words as the API's records of the same acts:

* ``result.read``: a reader opened a study in the Worklist tab (what ``GET /worklist/{key}`` records);
* ``worklist.state``: Mark reported / Return to list (``POST /worklist/{key}/state``);
* ``triage``: the Triage tab filed a result (``POST /predict``), under the accession typed, else a random key;
* ``feedback.record``: a reader saved an assessment of a result (``POST /worklist/{key}/feedback``), from either
  tab; ``refused`` when a value was not accepted (:mod:`cxrtriage.serve.ui.feedback`).

``study`` is the worklist key; ``outcome`` is ``ok``, ``not_found`` (no such study on the worklist) or ``failed``
(the worklist could not be read or written). Who: the principal the guard put on the request of the Gradio event
(``request.state.principal``: the signed-in person's name and role, ``via`` ``session``; ``anonymous`` / ``none`` /
``open`` while the service runs without authentication), read by the middleware's own rule
(:func:`~cxrtriage.serve.audit_middleware.scope_event`, which reads it with ``principal_fields``): no second copy
of who is who. The request id is the event's HTTP request's, so a UI record and that request's ``ui.event``
record pair up.

A record that cannot be written never hides the result from the reader: the middleware's own
:func:`~cxrtriage.serve.audit_middleware.append_or_report` logs it at ERROR (``AUDIT RECORD NOT WRITTEN``), counts
it where the service counts the middleware's failures (``on_failure``: ``cxrtriage_audit_write_failures_total`` in
``/metrics``, for an alert), and the handler goes on. The service hands the UI its own
:class:`~cxrtriage.security.audit.AuditLog` (one object, one counter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxrtriage.config import Settings
from cxrtriage.security.audit import AuditLog
from cxrtriage.serve.audit_middleware import append_or_report, scope_event

__all__ = ["UiAudit", "scope_of"]


def scope_of(request: Any) -> dict[str, Any]:
    """The ASGI scope of a Gradio event's request (:class:`gradio.Request` wraps Starlette's), else empty."""
    scope = getattr(getattr(request, "request", None), "scope", None)
    return scope if isinstance(scope, dict) else {}


class UiAudit:
    """Appends the UI's records to ``audit`` (:class:`~cxrtriage.security.audit.AuditLog`); see the module
    docstring."""

    def __init__(self, audit: AuditLog, on_failure: Callable[[], None] | None = None) -> None:
        self.audit = audit
        self.on_failure = on_failure

    @classmethod
    def from_settings(cls, settings: Settings) -> UiAudit:
        """The audit trail of ``settings`` (``settings.audit_file``), for a page served without the service (a
        notebook's launcher); the service passes its own log and failure counter instead."""
        return cls(AuditLog(settings.audit_file))

    def record(self, request: Any, action: str, study: str | None, outcome: str) -> bool:
        """Append one record of ``action`` on ``study`` by the principal of the Gradio event's ``request``; False
        (logged at ERROR) when it could not be written. Blocking (``fsync``): call it from a worker thread."""
        event = scope_event(scope_of(request), action, outcome, study)
        what = f"UI request {event.request_id} ({action}, {outcome})"
        return append_or_report(self.audit, event, what, self.on_failure)
