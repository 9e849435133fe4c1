"""The bar at the top of the web UI that says who is signed in (name and role) with its Sign out button
(:func:`cxrtriage.serve.login_page.signed_in_bar`), filled when the page loads.

Who it is comes from the request of the page's load event: the guard in front of ``/ui``
(:class:`cxrtriage.serve.auth.PrefixAuthMiddleware`) put the principal on the request's state, and Gradio hands the
event's request to the function. Empty while the service runs without authentication, so the page looks as it did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxrtriage.optional import require
from cxrtriage.security.principal import Principal
from cxrtriage.serve.login_page import signed_in_bar

__all__ = ["LOGOUT_FROM_UI", "principal_of", "user_bar_event"]

#: the sign-out URL relative to the UI's page (``<root>/ui/`` -> ``<root>/logout``), so it holds behind a proxy prefix
LOGOUT_FROM_UI = "../logout"


def principal_of(request: Any) -> Principal | None:
    """The principal the guard set on the request of a Gradio event (None when there is none)."""
    state = getattr(getattr(request, "request", None), "state", None)
    principal = getattr(state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def user_bar_event() -> Callable[..., Any]:
    """The load event's function: ``(request) -> the bar`` (its HTML, shown when there is someone to name),
    annotated with :class:`gradio.Request` so that Gradio passes the request (the annotation is the class itself:
    with postponed annotations Gradio could not resolve the string)."""
    gr = require("gradio", extra="demo", purpose="the web UI")

    def who(request: Any) -> Any:
        bar = signed_in_bar(principal_of(request), logout_url=LOGOUT_FROM_UI)
        return gr.update(value=bar, visible=bool(bar))  # hidden while the service runs open: the page as before

    who.__annotations__ = {"request": gr.Request, "return": Any}
    return who
