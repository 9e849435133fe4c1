"""The service records who did what (cxrtriage.serve.audit_middleware): one audit record per triage, worklist
listing, stored-result read, state change and crop read, with the request id the client got and the study key;
nothing for /health, /ready, /status, /metrics; the principal that the authentication layer puts on
``request.state``; a refused authentication as ``auth.failed``; never a patient identifier, a prior report or a
credential; and a failed audit write never withholds a result. A small fake engine: no model is needed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fake_engine import Engine, png_bytes  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.security.audit import verify  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402
from cxrtriage.serve.audit_middleware import audited_action  # noqa: E402

IDENTIFIERS = ("John", "Doe", "12345", "1960", "555-0100")
REPORT = "Patient John Doe, MRN 12345, DOB 01/02/1960, phone 555-0100. Small right pleural effusion."
TOKEN = "cxr_live_0123456789abcdef"  # what a client would present; must never reach the file
API_KEY = "k3y-abcdefghij-0987"


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    crops = tmp_path / "crops"
    crops.mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "crops_dir": crops,
        "ui": False,
        "warmup": False,
        "worklist_path": tmp_path / "state" / "worklist.sqlite",
    }
    return Settings(**(values | kw))


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _triage(c: TestClient, accession: str = "ACC-1001", **headers: str):
    return c.post(
        "/predict",
        files={"file": ("Doe_John_MRN12345.png", png_bytes(), "image/png")},
        data={"prior_report": REPORT, "accession": accession},
        headers=headers,
    )


def test_a_triage_and_reads_of_the_worklist_are_recorded_with_their_request_ids(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with TestClient(create_app(settings, engine=Engine(settings.crops_dir))) as c:
        r = _triage(c, authorization=f"Bearer {TOKEN}", **{"x-api-key": API_KEY})
        assert r.status_code == 200 and r.headers["x-worklist-key"] == "ACC-1001" and "x-audit" not in r.headers
        listed = c.get("/worklist")
        read = c.get("/worklist/ACC-1001")
        state = c.post("/worklist/ACC-1001/state", json={"state": "opened"})
        crop = c.get(r.json()["crops"][0]["thumb_path"])
        for path in ("/health", "/ready", "/status", "/metrics", "/docs", "/openapi.json", "/"):
            c.get(path)
        assert c.get("/worklist/NOPE-1").status_code == 404
    assert [x.status_code for x in (listed, read, state, crop)] == [200, 200, 200, 200]

    audit = settings.audit_file
    assert audit == tmp_path / "state" / "audit.jsonl"
    records = _records(audit)
    assert [(x["action"], x["study"], x["outcome"]) for x in records] == [
        ("triage", "ACC-1001", 200),
        ("worklist.list", None, 200),
        ("result.read", "ACC-1001", 200),
        ("worklist.state", "ACC-1001", 200),
        ("crop.read", None, 200),
        ("result.read", "NOPE-1", 404),
    ]
    responses = [r, listed, read, state, crop]
    assert [x["request_id"] for x in records[:5]] == [x.headers["x-request-id"] for x in responses]
    triage = records[0]
    assert {k: triage[k] for k in ("seq", "principal", "role", "via", "client", "reason", "target")} == {
        "seq": 1,
        "principal": "anonymous",
        "role": "none",
        "via": "open",  # no authentication configured: nobody identified
        "client": "testclient",
        "reason": None,
        "target": None,
    }
    assert verify(audit) == []

    # every field but the random hex ones (the chain's digests and the request ids), in which "1960" or "12345"
    # turns up by chance now and then
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    hex_fields = ("hash", "prev", "request_id")
    text = "\n".join(json.dumps({k: v for k, v in r.items() if k not in hex_fields}) for r in records)
    for secret in (*IDENTIFIERS, "effusion", TOKEN, API_KEY, "Bearer", str(settings.crops_dir)):
        assert secret not in text, secret


class Role(str):
    """Stands in for the authentication layer's StrEnum role."""


def test_the_principal_on_request_state_is_recorded_and_a_refusal_is_auth_failed(tmp_path: Path) -> None:
    """With API keys configured, the authentication layer (serve/auth.py) sets ``request.state.principal`` (the
    key's name and role are recorded) or ``auth_failure`` before its 401; no presented credential reaches the file."""
    from cxrtriage.security.keys import KeyStore

    settings = _settings(tmp_path)
    _info, reader_key = KeyStore(settings.keys_path).create("night-reader", "reader")
    wrong_key = reader_key[:-4] + ("AAAA" if not reader_key.endswith("AAAA") else "BBBB")
    app = create_app(settings, engine=Engine(settings.crops_dir))
    with TestClient(app) as c:
        assert c.get("/worklist", headers={"x-api-key": reader_key}).status_code == 200
        assert c.get("/worklist/ACC-7", headers={"x-api-key": wrong_key}).status_code == 401
        assert c.get("/worklist").status_code == 401
    ok, refused, missing = _records(settings.audit_file)
    assert (ok["principal"], ok["role"], ok["via"], ok["action"], ok["outcome"]) == (
        "night-reader",
        "reader",
        "api-key",
        "worklist.list",
        200,
    )
    assert (refused["principal"], refused["role"], refused["action"], refused["target"], refused["outcome"]) == (
        "anonymous",
        "none",
        "auth.failed",
        "result.read",
        401,
    )
    assert refused["study"] == "ACC-7" and refused["reason"] and missing["reason"]
    assert missing["target"] == "worklist.list"
    text = settings.audit_file.read_text()
    assert reader_key not in text and wrong_key not in text


def test_a_failed_audit_write_still_returns_the_result_flagged_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, audit_path=tmp_path)  # a folder: the record cannot be written
    with TestClient(create_app(settings, engine=Engine(settings.crops_dir))) as c:
        with caplog.at_level(logging.ERROR, logger="cxrtriage.serve.audit"):
            r = _triage(c)
        assert r.status_code == 200 and r.json()["label"] == "Urgent"  # the result is never withheld
        assert r.headers["x-audit"] == "failed"
        assert c.get("/health").headers.get("x-audit") is None
        metrics = c.get("/metrics").text
    assert "cxrtriage_audit_write_failures_total 1.0" in metrics
    (message,) = [m.getMessage() for m in caplog.records if "AUDIT RECORD NOT WRITTEN" in m.getMessage()]
    assert "triage -> 200" in message and "ACC-1001" not in message


def test_the_ui_writes_to_the_apps_one_audit_log_and_its_failures_reach_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI's own records (serve/ui/audit.py) go through the same AuditLog object and failure counter as the
    middleware's, so a UI record that cannot be written shows in /metrics, where the alert looks."""
    pytest.importorskip("gradio")
    import cxrtriage.serve.ui.app as ui_app

    mounted: dict[str, Any] = {}
    monkeypatch.setattr(ui_app, "mount_ui", lambda *a, **kw: mounted.update(kw))
    settings = _settings(tmp_path).model_copy(update={"ui": True})
    app = create_app(settings, engine=Engine(settings.crops_dir))
    runtime = app.state.runtime
    assert mounted["audit"].audit is runtime.audit
    mounted["audit"].on_failure()
    with TestClient(app) as c:
        assert "cxrtriage_audit_write_failures_total 1.0" in c.get("/metrics").text  # open: no key here


def test_a_refused_upload_is_recorded_with_its_status_and_no_study(tmp_path: Path) -> None:
    """Refusals by the route (415) and by the middleware before it (413) alike."""
    settings = _settings(tmp_path, max_upload_mb=0.01)
    with TestClient(create_app(settings, engine=Engine(settings.crops_dir))) as c:
        r = c.post("/predict", files={"file": ("John Doe.txt", b"not an image", "text/plain")})
        assert r.status_code == 415
        big = c.post("/predict", files={"file": ("John Doe.png", b"\x89PNG" + bytes(20_000), "image/png")})
        assert big.status_code == 413
    refused, too_big = _records(settings.audit_file)
    assert (refused["action"], refused["outcome"], refused["study"]) == ("triage", 415, None)
    rid = big.headers["x-request-id"]
    assert (too_big["action"], too_big["outcome"], too_big["request_id"]) == ("triage", 413, rid)


def test_the_ui_page_its_file_route_and_its_upload_are_recorded_and_its_assets_are_not(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    settings = _settings(tmp_path, ui=True)
    with TestClient(create_app(settings, engine=Engine(settings.crops_dir))) as c:
        assert c.get("/ui/").status_code == 200
        for asset in ("/ui/config", "/ui/theme.css"):
            c.get(asset)
        assert c.get("/ui/gradio_api/file=/tmp/Doe_John.png").status_code == 404
        upload = c.post("/ui/gradio_api/upload", files={"files": ("Doe_John.png", png_bytes(), "image/png")})
        assert upload.status_code == 200
    records = _records(settings.audit_file)
    assert [(x["action"], x["outcome"]) for x in records] == [("ui.open", 200), ("ui.file", 404), ("ui.upload", 200)]
    assert "Doe" not in settings.audit_file.read_text()


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("POST", "/predict", ("triage", None)),
        ("GET", "/worklist", ("worklist.list", None)),
        ("GET", "/worklist/ACC-1", ("result.read", "ACC-1")),
        ("GET", "/worklist/Doe, John", ("result.read", None)),  # not a key: never copied
        ("POST", "/worklist/ACC-1/state", ("worklist.state", "ACC-1")),
        ("GET", "/static/crops/0123456789abcdef.png", ("crop.read", None)),
        ("GET", "/ui", ("ui.open", None)),
        ("GET", "/ui/", ("ui.open", None)),
        ("GET", "/ui/gradio_api/file=/tmp/x/Doe_John.png", ("ui.file", None)),
        ("GET", "/ui/gradio_api/file/abc.png", ("ui.file", None)),
        ("POST", "/ui/gradio_api/upload", ("ui.upload", None)),
        ("POST", "/ui/gradio_api/queue/join", ("ui.event", None)),
        ("GET", "/health", None),
        ("GET", "/ready", None),
        ("GET", "/metrics", None),
        ("GET", "/status", None),
        ("GET", "/ui/assets/index.js", None),
        ("GET", "/ui/theme.css", None),
        ("GET", "/ui/gradio_api/queue/data", None),
        ("GET", "/predict", None),
    ],
)
def test_which_requests_are_audited(method: str, path: str, expected: tuple[str, str | None] | None) -> None:
    assert audited_action(method, path) == expected
