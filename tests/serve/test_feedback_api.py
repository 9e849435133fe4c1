"""``POST`` / ``GET /worklist/{key}/feedback``: a reader records an assessment of a stored result and reads the
history back (reassessments kept); the wrong role gets 401/403, an unknown study 404, a bad body 422 that says why;
who is the authenticated principal (a typed name only without authentication); every call leaves an audit record
without the comment; the agreement rates appear on ``/status`` and in ``/metrics``. No model: the worklist is filled
directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_engine import Engine
from fake_prediction import fake_prediction
from fastapi.testclient import TestClient

from cxrtriage.config import Settings
from cxrtriage.security.keys import KeyStore
from cxrtriage.security.principal import Role
from cxrtriage.serve.app import create_app

COMMENT = "old apical scarring, unchanged since 2019"


def _settings(tmp_path: Path) -> Settings:
    return Settings(crops_dir=tmp_path / "crops", ui=False, warmup=False, worklist_path=tmp_path / "s" / "wl.sqlite")


@pytest.fixture
def open_service(tmp_path: Path):
    """A service without authentication (nobody identified: the reader types a name), two studies on its list."""
    app = create_app(_settings(tmp_path), engine=Engine(tmp_path))  # an engine for /status; nothing is triaged
    with TestClient(app) as c:
        wl = app.state.runtime.worklist
        wl.add(fake_prediction("Urgent"), "ACC-U")
        wl.add(fake_prediction("Non-Urgent"), "ACC-N")
        yield c, app


@pytest.fixture
def keyed_service(tmp_path: Path):
    """A service with a key of each role: (client, app, {role: key})."""
    settings = _settings(tmp_path)
    store = KeyStore(settings.keys_path)
    keys = {role: store.create(f"{role.value}-key", role)[1] for role in Role}
    keys[Role.READER] = store.create("dr-smith", Role.READER)[1]
    app = create_app(settings, engine=object())
    with TestClient(app) as c:
        app.state.runtime.worklist.add(fake_prediction("Urgent"), "ACC-U")
        yield c, app, keys


def test_a_disagreement_is_recorded_and_reassessment_keeps_the_history(open_service) -> None:
    c, _ = open_service
    body = {"agrees": False, "finding": "no acute finding", "comment": COMMENT, "reader": "Dr Night"}
    r = c.post("/worklist/ACC-U/feedback", json=body)
    assert r.status_code == 201, r.text
    first = r.json()
    assert {k: first[k] for k in ("key", "version", "model_label", "agrees", "label", "reader", "via")} == {
        "key": "ACC-U",
        "version": 1,
        "model_label": "Urgent",
        "agrees": False,
        "label": "Non-Urgent",
        "reader": "Dr Night",
        "via": "typed",
    }
    assert first["model_sha256"] == "0" * 64 and first["comment"] == COMMENT and first["time"].endswith("Z")
    again = c.post("/worklist/ACC-U/feedback", json={"agrees": True, "label": "Urgent", "reader": "Dr Day"})
    assert again.status_code == 201 and again.json()["label"] == "Urgent"

    history = c.get("/worklist/ACC-U/feedback").json()
    assert history["key"] == "ACC-U" and history["current"]["reader"] == "Dr Day"
    assert [(h["reader"], h["agrees"], h["current"]) for h in history["history"]] == [
        ("Dr Night", False, False),
        ("Dr Day", True, True),
    ]
    assert c.get("/worklist/ACC-N/feedback").json() == {"key": "ACC-N", "current": None, "history": []}


@pytest.mark.parametrize(
    "path, body, status, says",
    [
        ("/worklist/ACC-404/feedback", {"agrees": True, "reader": "a"}, 404, "no study with this key on the worklist"),
        ("/worklist/ACC-U/feedback", {"agrees": True, "reader": "a", "version": 3}, 404, "this study has no version 3"),
        ("/worklist/ACC-U/feedback", {"reader": "a"}, 422, "missing field 'agrees'"),
        ("/worklist/ACC-U/feedback", {"agrees": True}, 422, "reader: the reader's name is required while the"),
        ("/worklist/ACC-U/feedback", {"agrees": "maybe", "reader": "a"}, 422, "agrees: Input should be a valid bool"),
        ("/worklist/ACC-U/feedback", {"agrees": True, "reader": "a", "label": "Normal"}, 422, "label: Input should"),
        (
            "/worklist/ACC-U/feedback",
            {"agrees": True, "reader": "a", "label": "Non-Urgent"},
            422,
            "the reader agrees with the result's label (Urgent) but gives the label Non-Urgent",
        ),
        ("/worklist/ACC-U/feedback", {"agrees": True, "reader": "a", "finding": "ghost"}, 422, "finding: Value error"),
        ("/worklist/ACC-U/feedback", {"agrees": True, "reader": "a", "comment": "x" * 501}, 422, "comment: String"),
        ("/worklist/ACC-U/feedback", {"agrees": True, "reader": "a", "by": "x"}, 422, "by: Extra inputs are not"),
        ("/worklist/Doe%5EJohn/feedback", {"agrees": True, "reader": "a"}, 422, "path.key: String should match"),
        ("/worklist/ACC-U/feedback", b"{not json", 422, "the body is not valid JSON"),
    ],
)
def test_a_bad_request_says_why_and_records_nothing(open_service, path, body, status, says) -> None:
    c, app = open_service
    if isinstance(body, bytes):
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = c.post(path, json=body)
    assert r.status_code == status and r.json()["detail"].startswith(says), r.text
    assert "x" * 50 not in r.text  # a refused comment is not echoed
    assert app.state.runtime.feedback.current() == []


def test_roles_the_signed_in_name_and_the_audit_trail(keyed_service) -> None:
    c, app, keys = keyed_service
    body = {"agrees": False, "comment": COMMENT}
    assert c.post("/worklist/ACC-U/feedback", json=body).status_code == 401
    assert c.get("/worklist/ACC-U/feedback").status_code == 401
    submitter = {"X-API-Key": keys[Role.SUBMITTER]}
    assert c.post("/worklist/ACC-U/feedback", json=body, headers=submitter).status_code == 403
    assert c.get("/worklist/ACC-U/feedback", headers=submitter).status_code == 403

    reader = {"X-API-Key": keys[Role.READER]}
    r = c.post("/worklist/ACC-U/feedback", json=body, headers=reader)
    assert r.status_code == 201 and (r.json()["reader"], r.json()["via"]) == ("dr-smith", "api-key"), r.text
    other = c.post("/worklist/ACC-U/feedback", json={**body, "reader": "someone-else"}, headers=reader)
    assert other.status_code == 422 and "recorded under the signed-in name (dr-smith)" in other.json()["detail"]
    same = c.post("/worklist/ACC-U/feedback", json={"agrees": True, "reader": "dr-smith"}, headers=reader)
    assert same.status_code == 201
    admin = {"X-API-Key": keys[Role.ADMIN]}
    history = c.get("/worklist/ACC-U/feedback", headers=admin).json()["history"]
    assert [(h["reader"], h["agrees"]) for h in history] == [("dr-smith", False), ("dr-smith", True)]

    trail = [json.loads(line) for line in app.state.runtime.settings.audit_file.read_text().splitlines()]
    recorded = [(t["action"], t["principal"], t["study"], t["outcome"]) for t in trail if t["action"] != "auth.failed"]
    assert recorded == [
        ("feedback.record", "dr-smith", "ACC-U", 201),
        ("feedback.record", "dr-smith", "ACC-U", 422),
        ("feedback.record", "dr-smith", "ACC-U", 201),
        ("feedback.read", "admin-key", "ACC-U", 200),
    ]
    assert sum(t["action"] == "auth.failed" for t in trail) == 4
    assert COMMENT not in app.state.runtime.settings.audit_file.read_text()


def test_agreement_on_status_and_metrics(open_service) -> None:
    c, app = open_service
    status = c.get("/status").json()
    assert status["reader_agreement"] == {"overall": None, "urgent": None, "non_urgent": None, "n": 0}
    assert "cxrtriage_reader_agreement_ratio{" not in c.get("/metrics").text  # no made-up rate before any record
    c.post("/worklist/ACC-U/feedback", json={"agrees": True, "reader": "a"})
    c.post("/worklist/ACC-U/feedback", json={"agrees": False, "reader": "a"})  # reassessed: the latest counts
    c.post("/worklist/ACC-N/feedback", json={"agrees": True, "reader": "b"})
    assert c.get("/status").json()["reader_agreement"] == {"overall": 0.5, "urgent": 0.0, "non_urgent": 1.0, "n": 2}
    metrics = c.get("/metrics").text
    assert 'cxrtriage_reader_agreement_ratio{result="overall"} 0.5' in metrics
    assert 'cxrtriage_reader_agreement_ratio{result="urgent"} 0.0' in metrics
    assert 'cxrtriage_reader_agreement_ratio{result="non_urgent"} 1.0' in metrics
    assert "cxrtriage_reader_assessed_studies 2.0" in metrics


def test_the_routes_are_documented(open_service) -> None:
    c, _ = open_service
    paths = c.get("/openapi.json").json()["paths"]
    post = paths["/worklist/{key}/feedback"]["post"]
    assert {"201", "404", "422", "503", "401", "403"} <= set(post["responses"])
    assert {"agrees", "label", "finding", "comment", "reader", "version"} == set(
        c.get("/openapi.json").json()["components"]["schemas"]["Assessment"]["properties"]
    )
    assert "the latest is current" in paths["/worklist/{key}/feedback"]["get"]["summary"]


def test_another_method_is_a_405_naming_both(open_service) -> None:
    c, _ = open_service
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        r = c.request(method, "/worklist/ACC-U/feedback")
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST", (method, r.headers)
