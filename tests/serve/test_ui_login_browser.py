"""The web UI's sign-in in a real browser (Debian's chromium driven by Playwright), against the real service with
authentication configured (a reader's and a submitter's key): opening the UI shows the sign-in page first; a wrong
key is refused; a reader signs in, sees who is signed in, the Worklist tab and its studies, and triages an image (the
UI's own requests: upload, queue, event stream, files, all carry the session cookie and pass the guard and the
cross-site check), and opening the study it filed leaves a ``result.read`` audit record naming the reader and the
study; a submitter signs in and is refused the UI; signing out returns to the sign-in page, and the UI
is closed again. Every request goes to the local server (offline).

Skips only when /usr/bin/chromium is missing (the ``browser`` fixture of ``tests/serve/conftest.py``); uses the
sample radiographs bundled in the package (no data folder).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cxrtriage.data import example_paths

TIMEOUT_MS = 60_000
READER, SUBMITTER = "dr-smith", "ct-gateway"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    """The real service (bundled model) on a free port, with a reader's and a submitter's key: (URL, keys, app)."""
    import httpx
    import uvicorn

    from cxrtriage.config import Settings
    from cxrtriage.security.keys import KeyStore
    from cxrtriage.security.principal import Role
    from cxrtriage.serve.app import create_app

    folder = tmp_path_factory.mktemp("ui-login")
    port = _free_port()
    settings = Settings(port=port, crops_dir=folder / "crops", worklist_path=folder / "state" / "worklist.sqlite")
    store = KeyStore(settings.keys_path)
    keys = {READER: store.create(READER, Role.READER)[1], SUBMITTER: store.create(SUBMITTER, Role.SUBMITTER)[1]}
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the service did not start or the model did not become ready")
        time.sleep(0.2)
    yield url, keys, app
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture()
def page(browser, service):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.seen = []  # type: ignore[attr-defined]
    pg.on("response", lambda r: pg.seen.append((r.url, r.status)))  # type: ignore[attr-defined]
    yield pg
    context.close()


def _sign_in(page, url: str, name: str, key: str) -> None:
    page.goto(f"{url}/ui/")
    assert urlsplit(page.url).path == "/login"  # the UI asks for a sign-in first
    page.fill("#name", name)
    page.fill("#key", key)
    page.click("#sign-in")
    page.wait_for_load_state("load")


def _assert_offline_and_never_refused(page, url: str) -> None:
    host = urlsplit(url).netloc
    outside = [u for u, _ in page.seen if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != host]
    assert not outside, f"the page contacted other hosts: {outside}"
    refused = [(u, s) for u, s in page.seen if s in (401, 403) and "/ui" in u]
    assert not refused, f"the UI's own requests were refused: {refused}"


def test_the_ui_shows_the_sign_in_page_first_and_refuses_a_wrong_key(page, service) -> None:
    url, keys, _ = service
    page.goto(f"{url}/ui/")
    assert urlsplit(page.url).path == "/login"
    assert page.locator("#name").is_visible() and page.locator("#key").get_attribute("type") == "password"
    assert page.locator("#cxr-triage").count() == 0  # nothing of the UI is shown
    page.fill("#name", READER)
    page.fill("#key", keys[READER][:-4] + "AAAA")
    page.click("#sign-in")
    page.wait_for_load_state("load")
    error = page.locator("#login-error")
    assert "Sign-in refused" in error.inner_text() and urlsplit(page.url).path == "/login"
    assert keys[READER][:-4] not in page.content()
    assert not [c for c in page.context.cookies() if c["name"] == "cxrtriage_session"]


def test_a_reader_signs_in_sees_the_worklist_triages_and_signs_out(page, service) -> None:
    url, keys, app = service
    _sign_in(page, url, READER, keys[READER])
    assert urlsplit(page.url).path == "/ui/"
    page.locator("#cxr-triage").wait_for(state="visible")
    bar = page.locator("#cxr-user-bar")
    bar.wait_for(state="visible")
    assert "Signed in as dr-smith (reader)" in bar.inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "cxrtriage_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert page.evaluate("document.cookie") == ""  # no script can read it

    # triage a bundled sample: upload, queue, event stream, the rendered files
    image = next(p for p in example_paths() if p.suffix == ".png")
    page.locator("#cxr-file input[type=file]").set_input_files(str(image))
    page.locator(f'#cxr-file a[download="{image.name}"][href*="/file="]').first.wait_for(state="visible")
    page.locator("#cxr-triage").click()
    page.wait_for_function(
        "() => !!(document.querySelector('#cxr-label .cxr-label') || document.querySelector('#cxr-error .cxr-error'))"
    )
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    page.locator("#cxr-image img").first.wait_for(state="visible")

    # the Worklist tab lists what was filed; opening the study leaves a result.read naming the reader and the study
    page.get_by_role("tab", name="Worklist").click()
    row = page.locator("#cxr-worklist tbody tr").first
    row.wait_for(state="visible")
    assert page.locator("#cxr-worklist tbody tr").count() >= 1
    key = row.get_attribute("data-key")
    row.click()
    page.locator(f'#cxr-wl-study .cxr-wl-study[data-key="{key}"]').wait_for(state="visible")
    records = [json.loads(line) for line in Path(app.state.runtime.settings.audit_file).read_text().splitlines()]
    mine = [(r["action"], r["study"], r["principal"], r["role"], r["via"], r["outcome"]) for r in records]
    assert ("triage", key, READER, "reader", "session", "ok") in mine  # the Triage tab filed it under this key
    assert ("result.read", key, READER, "reader", "session", "ok") in mine
    _assert_offline_and_never_refused(page, url)

    page.locator("#cxr-sign-out").click()
    page.wait_for_load_state("load")
    assert urlsplit(page.url).path == "/login" and "You are signed out." in page.inner_text("body")
    page.goto(f"{url}/ui/")
    assert urlsplit(page.url).path == "/login"  # closed again


def test_a_submitter_signs_in_and_is_refused_the_worklist(page, service) -> None:
    url, keys, _ = service
    _sign_in(page, url, SUBMITTER, keys[SUBMITTER])
    assert urlsplit(page.url).path == "/ui/"
    refusal = page.locator("#forbidden")
    assert "may send images for triage but not read results" in refusal.inner_text()
    assert page.locator("#cxr-triage").count() == 0 and page.locator("#cxr-worklist").count() == 0
    page.goto(f"{url}/worklist")  # the API's worklist, opened in the same browser
    assert "ACC" not in page.content() and "Forbidden" in page.content()
    page.goto(f"{url}/ui/")
    page.locator("#sign-out").click()
    page.wait_for_load_state("load")
    assert urlsplit(page.url).path == "/login"


def test_a_worklist_left_open_does_not_keep_the_session_alive(page, service) -> None:
    """The Worklist tab refreshes itself every few seconds; those refreshes are not the reader's activity, so the
    idle timeout (30 minutes here) still ends the session. The sessions' clock is moved forward, no waiting."""
    url, keys, app = service
    sessions = app.state.runtime.guard.sessions
    offset = [0.0]
    sessions.clock = lambda: time.time() + offset[0]
    try:
        _sign_in(page, url, READER, keys[READER])
        page.get_by_role("tab", name="Worklist").click()
        page.locator("#cxr-worklist tbody tr, #cxr-wl-empty").first.wait_for(state="attached")
        offset[0] = 5 * 60  # five minutes without touching anything: the timed refreshes keep coming
        with page.expect_response(lambda r: "/gradio_api/run/predict" in r.url) as tick:
            pass
        assert tick.value.status == 200 and "set-cookie" not in tick.value.all_headers()
        offset[0] = 31 * 60  # thirty-one minutes after the last thing the reader did
        page.reload()
        assert urlsplit(page.url).path == "/login"
        assert "Your session has ended" in page.inner_text("body")
    finally:
        sessions.clock = time.time
