"""Reader feedback in a real browser (Debian's chromium driven by Playwright) against the real service with
authentication (a reader's key, signed in through the sign-in page): the reader triages a film in the Triage tab,
records a disagreement under the result (Disagree fills in the other label; a finding and a comment), and the API
(``GET /worklist/{key}/feedback`` with the reader's key) reads it back under the signed-in name; the Worklist tab's
study view shows that history, takes a reassessment (the history keeps both) and its header shows the readers'
agreement. Every request goes to the local server (offline).

The engine is the service tests' fake (a fixed Urgent result; what is tested is the feedback, not the model), so the
test needs no data folder and no model load; it uses a sample radiograph bundled in the package. Skips only when
/usr/bin/chromium is missing (the ``browser`` fixture of ``tests/serve/conftest.py``).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fake_engine import Engine

from cxrtriage.data import example_paths
from cxrtriage.evaluation.live_server import Person, open_ui, upload_and_triage

TIMEOUT_MS = 60_000
READER = "dr-smith"
COMMENT = "Old apical pleural thickening, unchanged: not urgent."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    """The service with the fake engine and a reader's key, on a free port: (URL, the reader)."""
    import httpx
    import uvicorn

    from cxrtriage.config import Settings
    from cxrtriage.security.keys import KeyStore
    from cxrtriage.security.principal import Role
    from cxrtriage.serve.app import create_app

    folder = tmp_path_factory.mktemp("ui-feedback")
    port = _free_port()
    settings = Settings(
        port=port, crops_dir=folder / "crops", worklist_path=folder / "state" / "worklist.sqlite", warmup=False
    )
    reader = Person(READER, "reader", KeyStore(settings.keys_path).create(READER, Role.READER)[1])
    (folder / "crops").mkdir()
    app = create_app(settings, engine=Engine(folder / "crops"))
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
            pytest.fail("the service did not start")
        time.sleep(0.2)
    yield url, reader
    server.should_exit = True
    thread.join(timeout=30)


def _history(url: str, reader: Person, key: str) -> dict:
    import httpx

    r = httpx.get(f"{url}/worklist/{key}/feedback", headers=reader.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_disagreement_recorded_in_the_ui_is_read_back_by_the_api(browser, service, tmp_path: Path) -> None:
    url, reader = service
    images = [p for p in example_paths() if p.suffix.lower() == ".png"]
    if not images:
        pytest.skip("no bundled sample radiograph")
    context = browser.new_context(viewport={"width": 1440, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    hosts: list[str | None] = []
    page.on("request", lambda req: hosts.append(urlsplit(req.url).hostname))
    try:
        open_ui(page, url, person=reader)
        assert not page.locator("#cxr-fb-save").is_visible()  # nothing to assess before a result
        upload_and_triage(page, images[0], accession="FB-0001")
        assert page.locator("#cxr-label .cxr-label").inner_text().startswith("URGENT")
        page.locator("#cxr-fb-save").wait_for(state="visible")  # the panel shows under the result
        assert not page.locator("#cxr-fb-name").is_visible()  # signed in: the record takes the reader's name
        page.locator("#cxr-fb-history #cxr-fb-none").wait_for()

        page.locator("#cxr-fb-agrees label", has_text="Disagree").click()
        page.wait_for_function(  # the label the reader would give follows: the other one
            "() => document.querySelector('#cxr-fb-label input[value=\"Non-Urgent\"]').checked"
        )
        page.locator("#cxr-fb-finding input").click()
        page.get_by_role("option", name="other", exact=True).click()
        page.wait_for_function("() => document.querySelector('#cxr-fb-finding input').value === 'other'")
        page.locator("#cxr-fb-comment textarea").fill(COMMENT)
        page.locator("#cxr-fb-save").click()
        saved = page.locator("#cxr-fb-answer .cxr-fb-saved")
        saved.wait_for()
        assert saved.inner_text().strip() == f"Saved: {READER} disagrees: Non-Urgent (the result said Urgent)."
        assert COMMENT in page.locator("#cxr-fb-history").inner_text()

        history = _history(url, reader, "FB-0001")
        record = history["current"]
        assert {k: record[k] for k in ("agrees", "label", "model_label", "reader", "via", "finding", "comment")} == {
            "agrees": False,
            "label": "Non-Urgent",
            "model_label": "Urgent",
            "reader": READER,
            "via": "session",
            "finding": "other",
            "comment": COMMENT,
        }

        # the Worklist tab's study view: the same history, and a reassessment adds to it
        page.get_by_role("tab", name="Worklist").click()
        page.locator('#cxr-worklist tr[data-key="FB-0001"]').click()
        page.locator("#cxr-wl-fb-save").wait_for(state="visible")
        page.wait_for_function("() => document.querySelector('#cxr-wl-fb-history').innerText.includes('disagrees')")
        page.locator("#cxr-wl-fb-agrees label", has_text="Agree").first.click()
        page.wait_for_function("() => document.querySelector('#cxr-wl-fb-label input[value=\"Urgent\"]').checked")
        page.locator("#cxr-wl-fb-save").click()
        page.locator("#cxr-wl-fb-answer .cxr-fb-saved").wait_for()
        rows = page.locator("#cxr-wl-fb-history li")
        assert rows.count() == 2, page.locator("#cxr-wl-fb-history").inner_text()
        assert "agrees: Urgent" in rows.first.inner_text() and "current" in rows.first.inner_text()
        assert "disagrees: Non-Urgent" in rows.nth(1).inner_text() and COMMENT in rows.nth(1).inner_text()
        page.wait_for_function(  # the header's agreement line, at the tab's next refresh
            "() => /Readers agreed with 100% of 1 assessed result · Urgent: 100%/.test("
            "document.querySelector('#cxr-wl-agreement').innerText)",
            timeout=20_000,
        )
        page.screenshot(path=str(tmp_path / "ui_feedback.png"), full_page=True)
    finally:
        context.close()
    again = _history(url, reader, "FB-0001")
    assert [(h["agrees"], h["current"]) for h in again["history"]] == [(False, False), (True, True)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", again["current"]["time"])
    assert set(hosts) <= {"127.0.0.1", "localhost"}, set(hosts)
