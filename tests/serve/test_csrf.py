"""A web page on another site cannot make the reader's browser change anything (serve/csrf.py): a state-changing
request whose Origin names another host, or whose Sec-Fetch-Site says cross-site, is refused with 403 before it
reaches a route (no study filed, no state changed); the service's own pages, and clients that are not browsers,
are served as before."""

from __future__ import annotations

import pytest
from fake_prediction import fake_prediction
from fastapi.testclient import TestClient

from cxrtriage.config import Settings
from cxrtriage.serve.app import create_app
from cxrtriage.serve.csrf import cross_site_reason


@pytest.fixture
def client(tmp_path):
    settings = Settings(crops_dir=tmp_path / "crops", ui=False, warmup=False, worklist_path=tmp_path / "wl.sqlite")
    app = create_app(settings, engine=object())  # a refused /predict never reaches the engine
    with TestClient(app) as c:
        app.state.runtime.worklist.add(fake_prediction(), "ACC-1")
        yield c, app.state.runtime.worklist


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://testserver:8080"},  # another port is another origin
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Origin": "file://"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling host of this one
        {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example.invalid"},
    ],
)
def test_a_cross_site_state_change_is_refused_and_changes_nothing(client, headers):
    c, wl = client
    r = c.post("/worklist/ACC-1/state", json={"state": "reported"}, headers=headers)
    assert r.status_code == 403 and r.json()["error_type"] == "CrossSiteRequest", r.text
    assert "may not change anything here" in r.json()["detail"] or "not a web origin" in r.json()["detail"]
    assert r.json()["request_id"] == r.headers["x-request-id"]  # logged like every request
    assert "evil" not in r.text  # the origin it named is not echoed
    assert wl.item("ACC-1")["state"] == "new"
    upload = c.post("/predict?accession=EVIL-1", files={"file": ("x.png", b"\x89PNG", "image/png")}, headers=headers)
    assert upload.status_code == 403 and wl.item("EVIL-1") is None


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts, the modality gateway: no browser headers
        {"Origin": "http://testserver"},  # the service's own page
        {"Origin": "HTTP://TestServer:80"},  # the same origin, written differently
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
    ],
)
def test_the_services_own_pages_and_non_browser_clients_are_served(client, headers):
    c, wl = client
    r = c.post("/worklist/ACC-1/state", json={"state": "opened"}, headers=headers)
    assert r.status_code == 200 and wl.item("ACC-1")["state"] == "opened", r.text


def test_reads_are_never_refused(client):
    c, _ = client
    assert c.get("/worklist/ACC-1", headers={"Origin": "http://evil.example"}).status_code == 200


def test_behind_a_reverse_proxy_the_forwarded_host_is_the_services_own():
    proxied = {
        "host": "127.0.0.1:8000",
        "x-forwarded-host": "triage.hospital.example",
        "origin": "https://triage.hospital.example",
    }
    assert cross_site_reason("POST", proxied) is None
    assert cross_site_reason("POST", {**proxied, "origin": "https://triage.hospital.example:443"}) is None
    assert cross_site_reason("POST", {**proxied, "origin": "https://other.hospital.example"}) is not None
    assert cross_site_reason("POST", {"host": "[::1]:8000", "origin": "http://[::1]:8000"}) is None
    assert cross_site_reason("POST", {"host": "[::1]:8000", "origin": "http://[::1]:9000"}) is not None
    assert cross_site_reason("GET", {"host": "a", "origin": "http://b"}) is None


def test_no_page_on_another_origin_may_read_the_ui_with_the_readers_cookie(tmp_path):
    """Gradio answers localhost origins with Access-Control-Allow-Origin + -Credentials; a page on another port of
    the same host is the same site, so the reader's SameSite cookie goes with its fetch. The service drops every
    CORS header, so the browser keeps the answer from that page (and fails its preflight)."""
    pytest.importorskip("gradio")
    settings = Settings(crops_dir=tmp_path / "crops", ui=True, warmup=False, worklist_path=tmp_path / "wl.sqlite")
    with TestClient(create_app(settings, engine=object()), base_url="http://127.0.0.1:7860") as c:
        for origin in ("http://127.0.0.1:9999", "http://localhost:3000", "https://evil.example"):
            read = c.get("/ui/config", headers={"Origin": origin})
            preflight = c.options(
                "/ui/gradio_api/queue/join", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            )
            for r in (read, preflight):
                assert not [h for h in r.headers if h.lower().startswith("access-control-")], (origin, r.headers)
        assert c.get("/ui/config").status_code == 200  # the UI itself is served as before
