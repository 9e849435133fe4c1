"""The HTML of signing in, as pure functions: the sign-in page, the page a signed-in person whose role may not open
the UI gets (a ``submitter``), and the bar at the top of the UI that says who is signed in, with its Sign out
button. Small, server-rendered, styled like the UI (:mod:`cxrtriage.serve.ui.render`'s colours, system fonts), no
script and nothing loaded from anywhere: it works offline and behind a proxy (every URL carries the proxy's prefix,
``root``). Every value shown is HTML-escaped; the key a person typed is never put back into a page.
"""

from __future__ import annotations

import html

from cxrtriage.schema import DISCLAIMER
from cxrtriage.security.principal import Principal, Role

__all__ = ["MESSAGES", "forbidden_page", "login_page", "not_configured_page", "signed_in_bar"]

TITLE = "cxrtriage — chest X-ray triage"
#: the notes the sign-in page shows for ``?m=...`` (a fixed word, so no client text reaches the page)
MESSAGES = {
    "expired": "Your session has ended (no activity for a while, or its maximum lifetime). Please sign in again.",
    "ended": "Your session is no longer valid (signed out, or its key was revoked). Please sign in again.",
    "signed_out": "You are signed out.",
}
WRONG = "Sign-in refused: that name and key do not match an active key. Check both and try again."
INCOMPLETE = "Enter your name and your personal access key."

_CSS = """
body {font-family: ui-sans-serif, system-ui, sans-serif; margin: 0; background: #f7f7f8; color: #1a202c;}
main {max-width: 30rem; margin: 4rem auto; background: #fff; border: 1px solid #e2e8f0; border-radius: 10px;
  padding: 1.6rem 1.8rem;}
h1 {font-size: 1.45rem; margin: 0 0 .2rem 0;}
.sub {color: #555; margin: 0 0 1.1rem 0; font-size: .95rem;}
label {display: block; font-weight: 600; margin: .9rem 0 .25rem 0;}
input[type=text], input[type=password] {width: 100%; box-sizing: border-box; padding: .5rem .6rem; font-size: 1rem;
  border: 1px solid #a0aec0; border-radius: 6px;}
button {margin-top: 1.2rem; background: #2c5282; color: #fff; border: 0; border-radius: 6px; padding: .55rem 1.2rem;
  font-size: 1rem; font-weight: 600; cursor: pointer;}
.note {background: #ebf8ff; border: 1px solid #90cdf4; border-radius: 6px; padding: .6rem .8rem;}
.error {background: #fff5f5; border: 2px solid #c53030; color: #9b2c2c; border-radius: 8px; padding: .6rem .8rem;
  font-weight: 600;}
.disclaimer {background: #fff4d6; border: 2px solid #b7791f; color: #5c3d00; border-radius: 8px; padding: .5rem .8rem;
  font-weight: 700; font-size: .9rem; margin-top: 1.4rem;}
.help {color: #555; font-size: .88rem; margin-top: 1rem;}
code {background: #edf2f7; padding: 0 .25rem; border-radius: 4px;}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="same-origin"><title>Sign in · {_esc(TITLE)}</title><style>{_CSS}</style>'
        f"</head><body><main><h1>{_esc(TITLE)}</h1>{body}"
        f'<div class="disclaimer" role="note">⚠ {_esc(DISCLAIMER)}</div></main></body></html>'
    )


def login_page(*, root: str, next_path: str, message: str | None = None, error: str | None = None) -> str:
    """The sign-in form: name and personal access key (an API key created for this person). ``message``: a note
    (session ended, signed out); ``error``: why the last try was refused (never which part was wrong)."""
    note = f'<p class="note" role="status">{_esc(message)}</p>' if message else ""
    fault = f'<p class="error" role="alert" id="login-error">{_esc(error)}</p>' if error else ""
    return _page(
        '<p class="sub">Sign in to see the worklist and triage images.</p>'
        f"{note}{fault}"
        f'<form method="post" action="{_esc(root)}/login" autocomplete="off">'
        f'<input type="hidden" name="next" value="{_esc(next_path)}">'
        '<label for="name">Name</label>'
        '<input type="text" id="name" name="name" required maxlength="64" autocomplete="username" autofocus>'
        '<label for="key">Personal access key</label>'
        '<input type="password" id="key" name="key" required maxlength="200" autocomplete="current-password">'
        '<button type="submit" id="sign-in">Sign in</button></form>'
        '<p class="help">Your administrator creates your key with '
        "<code>cxrtriage keys create --role reader --name YOUR-NAME</code> and gives it to you once; the name is "
        "the one it was created under. Single sign-on tokens are accepted from API clients and from a reverse proxy "
        "that sends them; this page takes personal access keys.</p>"
    )


def not_configured_page(*, root: str) -> str:
    """What ``/login`` says while the service runs without authentication (open on loopback, or
    ``--insecure-no-auth``)."""
    return _page(
        '<p class="note" role="status">Sign-in is not configured on this service: it runs without '
        "authentication, so the UI is open to anyone who can reach it. An administrator configures it with "
        "<code>cxrtriage keys create --role reader --name YOUR-NAME</code> (or single sign-on).</p>"
        f'<p><a href="{_esc(root)}/ui/">Open the UI</a></p>'
    )


def _sign_out_form(root: str) -> str:
    return (
        f'<form method="post" action="{_esc(root)}/logout" style="display:inline">'
        '<button type="submit" id="sign-out">Sign out</button></form>'
    )


def forbidden_page(*, root: str, principal: Principal, required: Role) -> str:
    """403 for a signed-in person whose role is below what the page needs (a ``submitter`` opening the UI)."""
    if principal.role == Role.SUBMITTER:
        why = (
            "This account may send images for triage but not read results: the worklist, stored results and the "
            f"web UI need the {required.value} role."
        )
    else:
        why = f"This page needs the {required.value} role; this account has the {principal.role.value} role."
    return _page(
        f'<p class="error" role="alert" id="forbidden">{_esc(why)}</p>'
        f"<p>Signed in as <b>{_esc(principal.name)}</b> ({_esc(principal.role.value)}). Ask your administrator for "
        f"a key with the {_esc(required.value)} role, and sign in with it.</p>{_sign_out_form(root)}"
    )


def signed_in_bar(principal: Principal | None, *, logout_url: str) -> str:
    """The UI's top bar: who is signed in, their role and a Sign out button (a POST form: a link could be followed
    by another site's page). Empty while the service runs open; without the button for a principal that did not
    sign in here (a token or key a reverse proxy sends with each request: signing out is the proxy's business)."""
    if principal is None or principal.via == "open":
        return ""
    role = f'<span class="cxr-user-role">({_esc(principal.role.value)})</span>'
    who = f"Signed in as <b>{_esc(principal.name)}</b> {role}"
    bar = '<div class="cxr-user" id="cxr-user-bar" style="text-align:right; font-size:0.92rem;">'
    if principal.via != "session":
        return f"{bar}{who}</div>"
    return (
        f"{bar}{who} "
        f'<form method="post" action="{_esc(logout_url)}" style="display:inline; margin-left:8px;">'
        '<button type="submit" id="cxr-sign-out" style="border:1px solid #a0aec0; border-radius:6px; '
        'padding:2px 10px; background:#fff; cursor:pointer;">Sign out</button></form></div>'
    )
