"""Signing in to the web UI (serve/routes/login.py, security/sessions.py, serve/session_cookie.py): a person signs in
with the name and secret of their personal API key and gets a signed session cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS) that the UI, the crops and the reading routes' GETs accept; a wrong name or key is refused with one
message, rate limited and audited without the key; the session ends after its idle timeout, its maximum lifetime, a
sign-out or the key's revocation; ``next`` never leads off the site. The clock of the sessions is moved by the tests,
no sleeping. No model: the engine is never asked for anything."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.errors import ConfigurationError  # noqa: E402
from cxrtriage.schema import ModelInfo  # noqa: E402
from cxrtriage.security.keys import KeyStore  # noqa: E402
from cxrtriage.security.principal import Role  # noqa: E402
from cxrtriage.security.sessions import COOKIE_NAME, SECRET_FILE, Sessions, load_secret  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402
from cxrtriage.serve.login_page import WRONG  # noqa: E402
from cxrtriage.serve.session_cookie import safe_next  # noqa: E402

HTML = {"Accept": "text/html,application/xhtml+xml"}


class _Engine:
    info = ModelInfo(name="m", version="1", sha256="0" * 64)
    backend = None

    def footprint_mb(self) -> float:
        return 1.0


class Clock:
    """The sessions' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path, **values: Any) -> tuple[Any, dict[str, str], Clock]:
    """An app with authentication configured: a reader, a submitter and an admin key (name -> key)."""
    settings = Settings(
        crops_dir=tmp_path / "crops",
        worklist_path=tmp_path / "state" / "worklist.sqlite",
        ui=False,
        warmup=False,
        **values,
    )
    store = KeyStore(settings.keys_path)
    keys = {
        name: store.create(name, role)[1]
        for name, role in [("dr-smith", Role.READER), ("ct-gateway", Role.SUBMITTER), ("it-admin", Role.ADMIN)]
    }
    app = create_app(settings, engine=_Engine())
    clock = Clock()
    app.state.runtime.guard.sessions.clock = clock
    return app, keys, clock


def _sign_in(client: TestClient, name: str, key: str, next_path: str = "/ui/", **kw: Any) -> Any:
    return client.post("/login", data={"name": name, "key": key, "next": next_path}, follow_redirects=False, **kw)


def _set_cookie(response: Any) -> str:
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE_NAME + "=")]
    assert len(cookies) == 1, response.headers
    return cookies[0]


def _audit(app: Any) -> list[dict]:
    path = app.state.runtime.settings.audit_file
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_reader_signs_in_and_the_cookie_opens_what_a_browser_reads(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app) as c:
        page = c.get("/login?next=/ui/", headers=HTML)
        assert page.status_code == 200 and 'name="key"' in page.text and 'type="password"' in page.text
        assert page.headers["cache-control"] == "no-store"
        assert c.get("/worklist").status_code == 401  # nothing before signing in

        ok = _sign_in(c, "dr-smith", keys["dr-smith"])
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
        cookie = _set_cookie(ok)
        flags = [p.strip() for p in cookie.split(";")]
        assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=1800"} <= set(flags)
        assert "Secure" not in flags  # plain http here (loopback); https below
        value = flags[0].split("=", 1)[1]
        assert keys["dr-smith"] not in cookie and keys["dr-smith"].split("_", 2)[2] not in value  # no secret inside

        assert c.get("/worklist").status_code == 200  # a reader's GETs
        assert c.get("/static/crops/none.png").status_code == 404  # past authentication: the crop is not there
        # state-changing API calls still need the key in a header: the cookie's reach is what the UI needs
        assert c.post("/worklist/ACC-1/state", json={"state": "reported"}).status_code == 401
        assert c.post("/predict").status_code == 401
        assert c.get("/status").status_code == 403  # an admin route, and this is a reader


def test_the_cookie_is_secure_over_https_and_when_the_setting_says_so(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app, base_url="https://testserver") as c:
        assert "Secure" in _set_cookie(_sign_in(c, "dr-smith", keys["dr-smith"])).split("; ")
    app, keys, _ = _service(tmp_path / "b", session_cookie_secure="true")
    with TestClient(app) as c:
        assert "Secure" in _set_cookie(_sign_in(c, "dr-smith", keys["dr-smith"])).split("; ")
    with pytest.raises(ConfigurationError, match="CXRTRIAGE_SESSION_COOKIE_SECURE"):
        Settings(session_cookie_secure="sometimes")


@pytest.mark.parametrize(
    "name, key",
    [
        ("dr-smith", "cxt_00000000_" + "A" * 43),  # the right name, a wrong key
        ("dr-nobody", None),  # an unknown name with a valid key
        ("ct-gateway", None),  # a valid key under another person's name
        ("dr-smith", "not-a-key"),
    ],
)
def test_a_wrong_name_or_key_is_refused_with_one_message(tmp_path: Path, name: str, key: str | None) -> None:
    app, keys, _ = _service(tmp_path)
    key = key or keys["dr-smith"]
    with TestClient(app) as c:
        refused = _sign_in(c, name, key)
        assert refused.status_code == 401 and WRONG in refused.text
        assert key not in refused.text and "set-cookie" not in refused.headers
        assert f'value="{name}"' not in refused.text  # nothing typed is put back
        assert c.get("/worklist").status_code == 401


def test_an_empty_form_asks_for_both_fields_and_is_not_counted(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path, auth_failures_per_min=1)
    with TestClient(app) as c:
        for _ in range(3):
            r = c.post("/login", data={"name": "dr-smith"}, follow_redirects=False)
            assert r.status_code == 400 and "Enter your name and your personal access key" in r.text
        assert _sign_in(c, "dr-smith", keys["dr-smith"]).status_code == 303


def test_failed_sign_ins_are_rate_limited_like_the_api(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path, auth_failures_per_min=3)
    with TestClient(app) as c:
        for _ in range(3):
            assert _sign_in(c, "dr-smith", "cxt_00000000_" + "B" * 43).status_code == 401
        blocked = _sign_in(c, "dr-smith", keys["dr-smith"])  # even the right key waits
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in blocked.text and "set-cookie" not in blocked.headers
        assert c.get("/worklist", headers={"X-API-Key": keys["dr-smith"]}).status_code == 429  # one limit for both


def test_sign_in_and_its_failures_are_audited_without_the_key(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    wrong = "cxt_00000000_" + "C" * 43
    with TestClient(app) as c:
        _sign_in(c, "dr-smith", wrong)
        _sign_in(c, "dr-smith", keys["dr-smith"])
        c.get("/worklist")
        c.post("/logout", follow_redirects=False)
    records = _audit(app)
    failed, login, listing, logout = records[-4:]
    assert failed["action"] == "auth.failed" and failed["target"] == "login" and failed["outcome"] == 401
    assert failed["reason"] == "wrong name or key" and failed["principal"] == "anonymous"
    assert (login["action"], login["principal"], login["role"], login["via"], login["outcome"]) == (
        "login",
        "dr-smith",
        "reader",
        "session",
        303,
    )
    assert (listing["action"], listing["principal"], listing["via"]) == ("worklist.list", "dr-smith", "session")
    assert (logout["action"], logout["principal"], logout["outcome"]) == ("logout", "dr-smith", 303)
    text = app.state.runtime.settings.audit_file.read_text()
    for secret in (wrong, keys["dr-smith"], keys["dr-smith"].split("_", 2)[2]):
        assert secret not in text


def test_the_session_ends_after_its_idle_timeout_and_activity_renews_it(tmp_path: Path) -> None:
    app, keys, clock = _service(tmp_path, session_idle_min=30)
    with TestClient(app) as c:
        _sign_in(c, "dr-smith", keys["dr-smith"])
        clock.now += 29 * 60
        renewed = c.get("/worklist")  # active within the idle time: renewed
        assert renewed.status_code == 200 and "Max-Age=1800" in _set_cookie(renewed)
        clock.now += 29 * 60
        assert c.get("/worklist").status_code == 200  # 58 minutes after signing in, never 30 idle
        clock.now += 31 * 60
        ended = c.get("/worklist")
        assert ended.status_code == 401 and "session idle for too long" in ended.json()["detail"]
        assert "Max-Age=0" in _set_cookie(ended)  # the browser forgets it


def test_the_session_ends_at_its_maximum_lifetime_however_active(tmp_path: Path) -> None:
    app, keys, clock = _service(tmp_path, session_idle_min=30, session_max_hours=2)
    with TestClient(app) as c:
        _sign_in(c, "dr-smith", keys["dr-smith"])
        statuses = []
        for _ in range(6):  # a request every 20 minutes for 2 hours
            clock.now += 20 * 60
            statuses.append(c.get("/worklist"))
        assert [r.status_code for r in statuses] == [200] * 5 + [401]
        assert "maximum lifetime" in statuses[-1].json()["detail"]


def test_the_cookie_is_kept_no_longer_than_the_lifetime_left(tmp_path: Path) -> None:
    app, keys, clock = _service(tmp_path, session_idle_min=30, session_max_hours=1)
    with TestClient(app) as c:
        _sign_in(c, "dr-smith", keys["dr-smith"])
        clock.now += 25 * 60
        assert "Max-Age=1800" in _set_cookie(c.get("/worklist"))
        clock.now += 25 * 60  # 50 minutes in: 10 left of the hour
        assert "Max-Age=600" in _set_cookie(c.get("/worklist"))


def test_revoking_the_key_ends_its_sessions_at_the_next_request(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app) as c:
        _sign_in(c, "dr-smith", keys["dr-smith"])
        assert c.get("/worklist").status_code == 200
        KeyStore(app.state.runtime.settings.keys_path).revoke("dr-smith")
        refused = c.get("/worklist")
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        assert _sign_in(c, "dr-smith", keys["dr-smith"]).status_code == 401  # and it signs in no more


def test_signing_out_clears_the_cookie_and_the_old_cookie_is_refused(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app) as c:
        value = _set_cookie(_sign_in(c, "dr-smith", keys["dr-smith"])).split(";")[0].split("=", 1)[1]
        out = c.post("/logout", follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login?m=signed_out"
        assert "Max-Age=0" in _set_cookie(out)
        assert "You are signed out." in c.get("/login?m=signed_out").text
        c.cookies.clear()
        c.cookies.set(COOKIE_NAME, value)  # a copy kept from before the sign-out
        assert c.get("/worklist").status_code == 401


def test_a_sign_out_on_one_worker_is_refused_by_every_other_worker(tmp_path: Path) -> None:
    """Two apps on one state folder are two worker processes of one service (CXRTRIAGE_WORKERS=2): the sign-out
    taken by one is honoured by the other, through the state folder (security/signed_out.py), not one process's
    memory."""
    app, keys, _ = _service(tmp_path)
    other = create_app(app.state.runtime.settings, engine=_Engine())
    with TestClient(app) as first, TestClient(other) as second:
        value = _set_cookie(_sign_in(first, "dr-smith", keys["dr-smith"])).split(";")[0].split("=", 1)[1]
        second.cookies.set(COOKIE_NAME, value)  # the same cookie, sent to the other worker
        assert second.get("/worklist").status_code == 200
        assert first.post("/logout", follow_redirects=False).status_code == 303
        refused = second.get("/worklist")
        assert refused.status_code == 401 and "signed out" in refused.json()["detail"]
    stored = app.state.runtime.settings.state_dir / "signed_out.sqlite"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert b"dr-smith" not in stored.read_bytes() and keys["dr-smith"].encode() not in stored.read_bytes()


def test_a_forged_cookie_is_refused_and_counted(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path, auth_failures_per_min=2)
    with TestClient(app) as c:
        value = _set_cookie(_sign_in(c, "it-admin", keys["it-admin"])).split(";")[0].split("=", 1)[1]
        payload, _, signature = value.rpartition(".")
        c.cookies.clear()
        c.cookies.set(COOKIE_NAME, payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:])
        for _ in range(2):
            assert c.get("/worklist").status_code == 401
        assert c.get("/worklist").status_code == 429


def test_a_browser_without_a_session_is_sent_to_the_sign_in_page(tmp_path: Path) -> None:
    app, keys, clock = _service(tmp_path)
    with TestClient(app) as c:
        r = c.get("/static/crops/x.png?v=1", headers=HTML, follow_redirects=False)
        assert r.status_code == 303
        target = urlsplit(r.headers["location"])
        assert target.path == "/login" and parse_qs(target.query) == {"next": ["/static/crops/x.png?v=1"]}
        api = c.get("/static/crops/x.png")  # an API client or a script: the 401 JSON, as before
        assert api.status_code == 401 and api.json()["error_type"] == "Unauthorized"
        # an ended session: the sign-in page says why
        _sign_in(c, "dr-smith", keys["dr-smith"])
        clock.now += 3600
        r = c.get("/static/crops/x.png", headers=HTML, follow_redirects=False)
        assert parse_qs(urlsplit(r.headers["location"]).query)["m"] == ["expired"]
        assert "Your session has ended" in c.get(r.headers["location"]).text


def test_a_submitter_who_signs_in_is_told_the_account_cannot_read_results(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app) as c:
        assert _sign_in(c, "ct-gateway", keys["ct-gateway"]).status_code == 303
        page = c.get("/static/crops/x.png", headers=HTML, follow_redirects=False)
        assert page.status_code == 403 and "text/html" in page.headers["content-type"]
        assert "may send images for triage but not read results" in page.text and 'action="/logout"' in page.text
        assert c.get("/static/crops/x.png").json()["error_type"] == "Forbidden"
        assert c.get("/worklist").status_code == 403  # a submitter reads nothing stored, signed in or not


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/ui/", "/ui/"),
        ("/ui/?view=worklist", "/ui/?view=worklist"),
        ("https://evil.example/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/\\evil.example", "/ui/"),
        ("javascript:alert(1)", "/ui/"),
        ("ui/", "/ui/"),
        ("/ui/\r\nSet-Cookie: x=1", "/ui/"),
        ("/login", "/ui/"),
        ("/logout?x=1", "/ui/"),
        ("", "/ui/"),
        (None, "/ui/"),
    ],
)
def test_next_is_a_local_path_only(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_no_open_redirect_after_signing_in(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app) as c:
        r = _sign_in(c, "dr-smith", keys["dr-smith"], next_path="//evil.example/ui/")
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        page = c.get("/login", params={"next": "https://evil.example/"})
        assert "evil.example" not in page.text


def test_a_sign_in_form_sent_from_another_site_is_refused(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app) as c:
        r = _sign_in(c, "dr-smith", keys["dr-smith"], headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert _sign_in(c, "dr-smith", keys["dr-smith"], headers={"Origin": "http://testserver"}).status_code == 303


def test_without_authentication_the_sign_in_page_says_it_is_not_configured(tmp_path: Path) -> None:
    settings = Settings(crops_dir=tmp_path / "c", worklist_path=tmp_path / "s" / "w.sqlite", ui=False, warmup=False)
    with TestClient(create_app(settings, engine=_Engine())) as c:
        page = c.get("/login")
        assert page.status_code == 200 and "Sign-in is not configured" in page.text and "<form" not in page.text
        assert c.post("/login", data={"name": "a", "key": "b"}).status_code == 409
        assert c.get("/worklist").status_code == 200  # open, as before
    assert not (tmp_path / "s" / SECRET_FILE).exists()  # no sign-in, no secret made


def test_the_secret_is_made_owner_only_once_and_an_explicit_one_must_be_long(tmp_path: Path) -> None:
    settings = Settings(worklist_path=tmp_path / "state" / "w.sqlite")
    first = load_secret(settings)
    path = tmp_path / "state" / SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) >= 32
    assert load_secret(settings) == first  # every worker and restart reads the same
    explicit = "s" * 40
    assert load_secret(Settings(worklist_path=tmp_path / "w.sqlite", session_secret=explicit)) == explicit.encode()
    with pytest.raises(ConfigurationError) as exc:
        Settings(session_secret="short-secret-value")
    assert "CXRTRIAGE_SESSION_SECRET=(hidden)" in str(exc.value) and "short-secret-value" not in str(exc.value)
    assert "**" in repr(Settings(session_secret=explicit)) and explicit not in repr(Settings(session_secret=explicit))
    assert Settings(session_secret=explicit).environment()["CXRTRIAGE_SESSION_SECRET"] == explicit  # for children


def test_a_session_signed_with_another_secret_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, key = store.create("dr-smith", Role.READER)
    one = Sessions(store, b"1" * 32, idle_s=60, max_s=3600)
    other = Sessions(store, b"2" * 32, idle_s=60, max_s=3600)
    signed = one.sign_in("dr-smith", key)
    assert signed is not None and one.check(signed[1])[0].name == "dr-smith"
    with pytest.raises(Exception, match="invalid session cookie"):
        other.check(signed[1])


def test_the_pages_own_polling_does_not_renew_the_idle_timeout(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, key = store.create("dr-smith", Role.READER)
    clock = Clock()
    sessions = Sessions(store, b"1" * 32, idle_s=600, max_s=3600, clock=clock)
    signed = sessions.sign_in("dr-smith", key)
    assert signed is not None
    clock.now += 300
    assert sessions.check(signed[1], activity=False)[1] is None  # accepted, not renewed
    assert sessions.check(signed[1], activity=True)[1] is not None


def test_behind_a_proxy_prefix_every_url_keeps_the_prefix(tmp_path: Path) -> None:
    app, keys, _ = _service(tmp_path)
    with TestClient(app, root_path="/cxr") as c:
        # the prefix table (the UI, the crops) is matched without the proxy's prefix: still protected behind one
        assert c.get("/cxr/static/crops/x.png").status_code == 401
        r = c.get("/cxr/static/crops/x.png", headers=HTML, follow_redirects=False)
        assert r.status_code == 303
        target = urlsplit(r.headers["location"])
        assert target.path == "/cxr/login" and parse_qs(target.query)["next"] == ["/static/crops/x.png"]
        assert 'action="/cxr/login"' in c.get("/cxr/login").text
        signed_in = _sign_in(c, "dr-smith", keys["dr-smith"], next_path="/static/crops/x.png")
        assert signed_in.headers["location"] == "/cxr/static/crops/x.png"


def test_the_ui_bar_names_who_is_signed_in() -> None:
    from cxrtriage.security.principal import ANONYMOUS, Principal
    from cxrtriage.serve.login_page import signed_in_bar

    assert signed_in_bar(None, logout_url="../logout") == "" and signed_in_bar(ANONYMOUS, logout_url="x") == ""
    session = signed_in_bar(Principal("dr-smith", Role.READER, "session"), logout_url="../logout")
    assert "Signed in as <b>dr-smith</b>" in session and 'action="../logout"' in session and "Sign out" in session
    proxied = signed_in_bar(Principal("a<b>", Role.ADMIN, "oidc"), logout_url="../logout")
    assert "a&lt;b&gt;" in proxied and "Sign out" not in proxied  # a proxy's token: signing out is the proxy's
