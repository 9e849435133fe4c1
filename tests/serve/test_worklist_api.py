"""``GET /worklist`` pages and filters the list and says its totals; ``POST /worklist/{key}/state`` sets a study's
state, with a clear 404 or 422 for a bad request; reading never changes a state. No model is needed: the worklist
is filled directly."""

from __future__ import annotations

import datetime as dt

import pytest
from fake_prediction import fake_prediction
from fastapi.testclient import TestClient

from cxrtriage.config import Settings
from cxrtriage.serve.app import create_app
from cxrtriage.worklist import StudyInfo

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def client(tmp_path):
    settings = Settings(crops_dir=tmp_path / "crops", ui=False, warmup=False, worklist_path=tmp_path / "wl.sqlite")
    app = create_app(settings, engine=object())  # the worklist routes never touch the engine
    with TestClient(app) as c:
        yield c, app.state.runtime.worklist


def test_the_list_comes_a_page_at_a_time_with_its_totals(client):
    c, wl = client
    for i in range(205):
        wl.add(fake_prediction("Non-Urgent"), f"R{i}", NOW - dt.timedelta(hours=2, seconds=i))
    wl.add(fake_prediction("Urgent"), "URGENT-NEW", NOW, StudyInfo(accession="URGENT-NEW", view="AP", modality="DX"))
    first = c.get("/worklist").json()
    assert first["items"][0]["key"] == "URGENT-NEW" and first["items"][0]["view"] == "AP"
    assert {k: first[k] for k in ("status", "total", "urgent_total", "page", "per_page", "pages")} == {
        "status": "active",
        "total": 206,
        "urgent_total": 1,
        "page": 1,
        "per_page": 50,
        "pages": 5,
    }
    assert "every urgent study" in first["order"] and first["max_wait_min"] == 60.0
    last = c.get("/worklist?page=5&per_page=50").json()
    assert len(last["items"]) == 6 and last["total"] == 206
    big = c.get("/worklist?per_page=200&page=2").json()
    assert len(big["items"]) == 6 and big["pages"] == 2
    past = c.get("/worklist?page=99")
    assert past.status_code == 200 and past.json()["items"] == [] and past.json()["total"] == 206


@pytest.mark.parametrize(
    "query, says",
    [
        ("per_page=0", "query.per_page: Input should be greater than or equal to 1"),
        ("per_page=201", "query.per_page: Input should be less than or equal to 200"),
        ("page=0", "query.page: Input should be greater than or equal to 1"),
        ("page=x", "query.page: Input should be a valid integer"),
        ("status=done", "query.status: Input should be 'active', 'reported' or 'all'"),
    ],
)
def test_a_bad_page_or_filter_is_a_422_that_says_why(client, query, says):
    c, _ = client
    r = c.get(f"/worklist?{query}")
    assert r.status_code == 422 and r.json()["detail"].startswith(says), r.text


def test_a_reported_study_leaves_the_active_list_and_is_listed_as_reported(client):
    c, wl = client
    wl.add(fake_prediction("Urgent"), "ACC-1", NOW - dt.timedelta(minutes=5))
    wl.add(fake_prediction("Non-Urgent"), "ACC-2", NOW - dt.timedelta(minutes=9))
    for _ in range(2):  # reading the list and a result changes nothing
        c.get("/worklist"), c.get("/worklist/ACC-1")
    assert [i["state"] for i in c.get("/worklist").json()["items"]] == ["new", "new"]

    r = c.post("/worklist/ACC-1/state", json={"state": "opened"})
    assert r.status_code == 200 and r.json()["key"] == "ACC-1" and r.json()["state"] == "opened", r.text
    assert [i["key"] for i in c.get("/worklist").json()["items"]] == ["ACC-1", "ACC-2"]  # opened is active
    r = c.post("/worklist/ACC-1/state", json={"state": "reported"})
    assert r.status_code == 200 and r.json()["state"] == "reported"
    active = c.get("/worklist").json()
    assert [i["key"] for i in active["items"]] == ["ACC-2"] and (active["total"], active["urgent_total"]) == (1, 0)
    reported = c.get("/worklist?status=reported").json()
    assert [i["key"] for i in reported["items"]] == ["ACC-1"] and reported["items"][0]["state"] == "reported"
    assert c.get("/worklist?status=all").json()["total"] == 2
    assert c.get("/worklist/ACC-1").status_code == 200  # its result is kept
    assert c.post("/worklist/ACC-1/state", json={"state": "new"}).json()["state"] == "new"  # back on the list
    assert [i["key"] for i in c.get("/worklist").json()["items"]] == ["ACC-1", "ACC-2"]


@pytest.mark.parametrize(
    "path, body, status, says",
    [
        ("/worklist/ACC-404/state", {"state": "reported"}, 404, "no study with this key on the worklist"),
        ("/worklist/ACC-1/state", {"state": "done"}, 422, "state: Input should be 'new', 'opened' or 'reported'"),
        ("/worklist/ACC-1/state", {}, 422, "missing field 'state'"),
        ("/worklist/ACC-1/state", {"state": "new", "by": "x"}, 422, "by: Extra inputs are not permitted"),
        ("/worklist/Doe%5EJohn/state", {"state": "new"}, 422, "path.key: String should match pattern"),
        ("/worklist/ACC-1/state", b"{not json", 422, "the body is not valid JSON"),
        ("/worklist/ACC-1/state", "reported", 422, "the body must be a JSON object"),
    ],
)
def test_a_bad_state_change_says_why(client, path, body, status, says):
    c, wl = client
    wl.add(fake_prediction("Urgent"), "ACC-1")
    if isinstance(body, bytes):
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = c.post(path, json=body)
    assert r.status_code == status and r.json()["detail"].startswith(says), r.text
    assert wl.item("ACC-1")["state"] == "new"


def test_the_routes_are_documented(client):
    c, _ = client
    paths = c.get("/openapi.json").json()["paths"]
    post = paths["/worklist/{key}/state"]["post"]
    assert {"200", "400", "404", "422", "503"} <= set(post["responses"]) and "reported" in post["summary"]
    get = paths["/worklist"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"status", "page", "per_page"}
    assert "every urgent study before every routine one" in get["summary"]


def test_a_study_sent_again_keeps_its_versions_and_the_list_says_its_label_changed(client):
    """The probe of issue 23: Urgent 0.88 then Non-Urgent 0.01 under one accession. GET /worklist/{key} is the
    latest (with the warning), ?version=1 the first, /versions the history; the study stays urgent on the list."""
    c, wl = client
    wl.add(fake_prediction("Non-Urgent"), "ROUTINE", NOW - dt.timedelta(hours=3))  # overdue routine
    wl.add(fake_prediction("Urgent"), "ACC-1", NOW - dt.timedelta(minutes=20))
    wl.add(fake_prediction("Non-Urgent"), "ACC-1", NOW)
    row = c.get("/worklist").json()["items"][0]
    assert (row["key"], row["label"], row["priority"], row["label_changed"], row["versions"], row["ever_urgent"]) == (
        "ACC-1",
        "Non-Urgent",
        "urgent",
        "Urgent → Non-Urgent",
        2,
        True,
    )
    latest = c.get("/worklist/ACC-1").json()
    assert latest["label"] == "Non-Urgent" and any("Urgent → Non-Urgent" in w for w in latest["warnings"])
    first = c.get("/worklist/ACC-1?version=1").json()
    assert first["label"] == "Urgent" and first["score"] == 0.9 and first["warnings"] == []
    history = c.get("/worklist/ACC-1/versions").json()
    assert history["key"] == "ACC-1" and history["label_changed"] == "Urgent → Non-Urgent"
    assert [(v["version"], v["label"], v["score"]) for v in history["versions"]] == [
        (1, "Urgent", 0.9),
        (2, "Non-Urgent", 0.1),
    ]
    assert wl.item("ACC-1")["state"] == "new"  # reading the history changes nothing


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/worklist/ACC-1?version=3", 404, "this study has no version 3"),
        ("/worklist/ACC-1?version=0", 422, "version"),
        ("/worklist/ACC-1?version=two", 422, "version"),
        ("/worklist/ACC-1?version=9223372036854775808", 422, "version"),  # past SQLite's integers (schemathesis)
        ("/worklist/NOPE?version=1", 404, "no study with this key"),
        ("/worklist/NOPE/versions", 404, "no study with this key"),
        ("/worklist/Doe%5EJohn/versions", 422, "key"),
    ],
)
def test_a_version_that_is_not_there_says_why(client, path, status, says):
    c, wl = client
    wl.add(fake_prediction("Urgent"), "ACC-1")
    r = c.get(path)
    assert r.status_code == status and says in r.json()["detail"], r.text


def test_the_versions_route_is_documented(client):
    c, _ = client
    paths = c.get("/openapi.json").json()["paths"]
    assert {"200", "404", "422", "503"} <= set(paths["/worklist/{key}/versions"]["get"]["responses"])
    item = paths["/worklist/{key}"]["get"]
    assert [p["name"] for p in item["parameters"] if p["in"] == "query"] == ["version"]
