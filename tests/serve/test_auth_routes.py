"""Who may use what, walked over the whole app: every route of the OpenAPI schema and every route that is not in it
(the UI's Gradio mount and its upload and file routes, the crops, the docs), with no credential, a wrong key, an
expired token, a token for another audience, and a valid API key and token of each role. A refused request gets
401/403 in the error shape, with no result data and never the credential; an allowed one gets past authentication
(2xx, or the route's own 4xx). A route that declares no role fails the walk."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from cxrtriage.config import Settings
from cxrtriage.schema import ModelInfo, Prediction
from cxrtriage.security.keys import KeyStore
from cxrtriage.security.principal import ANONYMOUS, Role
from cxrtriage.serve.app import create_app
from cxrtriage.serve.auth import app_routes, declared_roles, require

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from jwt_fixtures import AUDIENCE, ISSUER, Provider, make_provider  # noqa: E402

#: the role table of demo_app/README.md ("Security"): what the walk expects of each route (None: open)
EXPECTED = {
    "/predict": Role.SUBMITTER,
    "/worklist": Role.READER,
    "/worklist/{key}": Role.READER,
    "/worklist/{key}/versions": Role.READER,
    "/worklist/{key}/state": Role.READER,
    "/worklist/{key}/feedback": Role.READER,
    "/static/crops": Role.READER,
    "/ui": Role.READER,
    "/status": Role.ADMIN,
    "/metrics": Role.ADMIN,
    "/health": None,
    "/ready": None,
    "/": None,
    "/docs": None,
    "/docs/oauth2-redirect": None,
    "/redoc": None,
    "/openapi.json": None,
    "/static/apidocs": None,
    "/local": None,  # the browser page, when `make browser` has built it: code and shipped weights only
    "/login": None,
    "/logout": None,
}
STUDY = "ACC-0042"


def _prediction() -> Prediction:
    return Prediction(
        label="Urgent",
        score=0.91,
        explanation="Urgent.",
        threshold=0.3,
        review_band=(0.25, 0.35),
        needs_review=False,
        model=ModelInfo(name="m", version="1", sha256="0" * 64),
    )


class _Engine:
    """Enough of an engine for /ready and /status; the walk never gets to triage anything."""

    backend = None
    info = ModelInfo(name="m", version="1", sha256="0" * 64)

    def footprint_mb(self) -> float:
        return 1.0


class Walk:
    def __init__(self, client: TestClient, app: Any, credentials: dict[str, str], provider: Provider) -> None:
        self.client, self.app, self.credentials, self.provider = client, app, credentials, provider


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    folder = tmp_path_factory.mktemp("auth")
    provider = make_provider(folder)
    settings = Settings(
        crops_dir=folder / "crops",
        worklist_path=folder / "state" / "worklist.sqlite",
        warmup=False,
        ui=True,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks=str(provider.jwks_path),
        auth_failures_per_min=100_000,  # the walk sends hundreds of bad credentials from one address
    )
    store = KeyStore(settings.keys_path)
    credentials = {f"key:{r.value}": store.create(f"{r.value}-key", r)[1] for r in Role}
    credentials |= {f"token:{r.value}": provider.token(roles=[r.value]) for r in Role}
    app = create_app(settings, engine=_Engine())
    with TestClient(app) as client:
        app.state.runtime.worklist.add(_prediction(), STUDY, dt.datetime.now(dt.timezone.utc))
        yield Walk(client, app, credentials, provider)


def _requests(app: Any) -> list[tuple[str, str, str]]:
    """(method, URL, declared path) for every route: the OpenAPI schema's operations, then every route outside it."""
    out = []
    schema = app.openapi()
    for path, operations in schema["paths"].items():
        for method in operations:
            out.append((method.upper(), path.replace("{key}", STUDY), path))
    for path, route, _ in app_routes(app):
        if isinstance(route, Mount):
            out.append(("GET", path + "/", path))
        elif isinstance(route, Route) and not getattr(route, "include_in_schema", True) or path.startswith("/ui/"):
            url = re.sub(r"\{path:path\}", "x.png", path)
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                out.append((method, url, path))
    return sorted(set(out))


def _required(path: str) -> Role | None:
    for prefix in ("/ui", "/static/crops", "/static/apidocs"):
        if path == prefix or path.startswith(prefix + "/"):
            return EXPECTED[prefix]
    return EXPECTED[path]


def test_every_route_declares_the_role_of_the_table(walk: Walk) -> None:
    roles, undeclared = declared_roles(walk.app)
    assert undeclared == [], (
        f"routes without a declared role (add require(Role.X) or a PREFIX_ROLES entry): {undeclared}"
    )
    assert {path: role for path, role in roles.items()} == {path: _required(path) for path in roles}
    # the table names nothing the app lacks (the API docs' assets and the browser page are there when installed/built)
    assert set(EXPECTED) - {"/static/apidocs", "/local"} <= set(roles)


def test_a_route_added_without_a_role_fails_the_check(tmp_path: Path) -> None:
    app = create_app(
        Settings(crops_dir=tmp_path, worklist_path=tmp_path / "w.sqlite", ui=False, warmup=False), engine=object()
    )

    @app.get("/leak")
    async def leak() -> dict:
        return {}

    assert declared_roles(app)[1] == ["/leak"]


def _refused(response: Any, status: int, credential: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "error_type", "request_id"}  # no result data
    assert body["error_type"] == ("Unauthorized" if status == 401 else "Forbidden")
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if credential:
        assert credential not in response.text and credential not in str(response.headers)


def test_the_walk(walk: Walk) -> None:
    requests = _requests(walk.app)
    assert len(requests) >= 20 and any(url.startswith("/ui/gradio_api/upload") for _, url, _ in requests)
    bad = {
        "none": {},
        "wrong key": {"X-API-Key": "cxt_00000000_" + "A" * 43},
        "expired token": {"Authorization": f"Bearer {walk.provider.token(roles=['admin'], lifetime_s=-3600)}"},
        "wrong audience": {"Authorization": f"Bearer {walk.provider.token(roles=['admin'], aud='another-app')}"},
    }
    for method, url, path in requests:
        required = _required(path)
        for name, headers in bad.items():
            r = walk.client.request(method, url, headers=headers, follow_redirects=False)
            if required is None:
                assert r.status_code not in (401, 403), (method, url, name)
            else:
                _refused(r, 401, next(iter(headers.values()), None))
        for name, credential in walk.credentials.items():
            role = Role(name.split(":")[1])
            header = {"X-API-Key": credential} if name.startswith("key") else {"Authorization": f"Bearer {credential}"}
            r = walk.client.request(method, url, headers=header, follow_redirects=False)
            if required is None or role.allows(required):
                assert r.status_code not in (401, 403, 429) and r.status_code < 500, (method, url, name, r.text)
            else:
                _refused(r, 403, credential)


def test_a_reader_reads_the_stored_result_and_a_submitter_does_not(walk: Walk) -> None:
    reader = {"X-API-Key": walk.credentials["key:reader"]}
    submitter = {"Authorization": f"Bearer {walk.credentials['token:submitter']}"}
    assert walk.client.get(f"/worklist/{STUDY}", headers=reader).json()["label"] == "Urgent"
    assert walk.client.get("/worklist", headers=reader).json()["total"] == 1
    refused = walk.client.get(f"/worklist/{STUDY}", headers=submitter)
    assert refused.status_code == 403 and "Urgent" not in refused.text and "0.91" not in refused.text
    assert walk.client.post("/predict", headers=submitter).status_code == 422  # past auth: the form is missing


def test_the_openapi_schema_shows_the_schemes_on_protected_operations(walk: Walk) -> None:
    schema = walk.client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer" and schemes["APIKeyHeader"]["name"] == "X-API-Key"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if _required(path) is None:
                assert "security" not in operation, (method, path)
            else:
                assert operation["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def _app(tmp_path: Path, **values: Any) -> Any:
    settings = Settings(
        crops_dir=tmp_path / "crops", worklist_path=tmp_path / "w.sqlite", ui=False, warmup=False, **values
    )
    app = create_app(settings, engine=_Engine())
    seen: list[dict] = []

    @app.get("/test-principal", dependencies=[require(Role.READER)])
    async def principal(request: Request) -> dict:
        p = request.state.principal
        return {"name": p.name, "role": p.role.value, "via": p.via}

    @app.middleware("http")
    async def record_state(request: Request, call_next: Any) -> Any:  # what the audit trail reads afterwards
        response = await call_next(request)
        seen.append(dict(request.scope.get("state", {})))
        return response

    app.state.seen = seen
    return app


def test_the_state_the_audit_trail_reads(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with TestClient(app) as c:
        assert c.get("/test-principal").json() == {"name": "anonymous", "role": "admin", "via": "open"}
        _, key = KeyStore(app.state.runtime.settings.keys_path).create("night-reader", Role.READER)
        assert c.get("/test-principal", headers={"X-API-Key": key}).json() == {
            "name": "night-reader",
            "role": "reader",
            "via": "api-key",
        }
        c.get("/worklist", headers={"X-API-Key": key + "x"})
        last = app.state.seen[-1]
        assert last["auth_failure"] == "unknown or revoked API key" and "principal" not in last
        c.get("/ui")  # not mounted here: a 404, but not a route that needs a role either
    assert ANONYMOUS.via == "open"


def test_a_revoked_key_is_refused_by_the_running_service(tmp_path: Path) -> None:
    app = _app(tmp_path)
    store = KeyStore(app.state.runtime.settings.keys_path)
    _, key = store.create("laptop", Role.ADMIN)
    with TestClient(app) as c:
        assert c.get("/status", headers={"X-API-Key": key}).status_code == 200
        store.revoke("laptop")
        _refused(c.get("/status", headers={"X-API-Key": key}), 401, key)
        _refused(c.get("/status"), 401, None)  # every key revoked: the service stays closed


def test_failed_authentications_are_rate_limited_per_address_and_logged_without_the_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path, auth_failures_per_min=3)
    _, key = KeyStore(app.state.runtime.settings.keys_path).create("reader", Role.READER)
    wrong = "cxt_00000000_" + "B" * 43
    with TestClient(app) as c, caplog.at_level(logging.INFO, logger="cxrtriage"):
        for _ in range(3):
            assert c.get("/worklist", headers={"X-API-Key": wrong}).status_code == 401
        blocked = c.get("/worklist", headers={"X-API-Key": key})  # even a valid key waits
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert blocked.json()["error_type"] == "TooManyFailedAuthentications"
        assert c.get("/health").status_code == 200  # open routes stay open
    failures = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 4 and all("testclient" in m for m in failures)
    assert wrong not in caplog.text and key not in caplog.text


def test_without_authentication_configured_the_service_is_open_as_before(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path)) as c:
        assert c.get("/worklist").status_code == 200 and c.get("/status").status_code == 200


def test_only_the_allowed_host_names_are_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXRTRIAGE_ALLOWED_HOSTS", raising=False)
    assert Settings().allowed_host_list == ["localhost", "127.0.0.1", "[::1]"]
    assert Settings(host="0.0.0.0").allowed_host_list == ["localhost", "127.0.0.1", "[::1]"]
    assert Settings(host="cxr.hospital.example").allowed_host_list[-1] == "cxr.hospital.example"
    assert Settings(allowed_hosts=" a.example , *.b.example ").allowed_host_list == ["a.example", "*.b.example"]
    with TestClient(_app(tmp_path, allowed_hosts="localhost,127.0.0.1,::1"), base_url="http://localhost:7860") as c:
        assert c.get("/health").status_code == 200
        for host in ("127.0.0.1:7860", "[::1]:7860", "LOCALHOST"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        refused = c.get("/health", headers={"host": "attacker.example"})
        assert refused.status_code == 400 and refused.json()["error_type"] == "InvalidHost"
        assert "CXRTRIAGE_ALLOWED_HOSTS" in refused.json()["detail"]
