"""A request to a route with a body is authenticated from its headers before the body is read: FastAPI parses a
multipart body before it runs the route's dependencies, so without the early check in PrefixAuthMiddleware anyone
who reaches the port could make the server receive an upload of up to the size limit per request. Driven at the
ASGI level, so the test sees exactly which parts of the body the app asked for."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fake_engine import Engine, png_bytes  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.schema import Prediction  # noqa: E402
from cxrtriage.security.keys import KeyStore  # noqa: E402
from cxrtriage.security.principal import Role  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402

BOUNDARY = "cxrtriage-test-boundary"


class _CountingEngine(Engine):
    calls = 0

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction:
        self.calls += 1
        return super().predict(image, prior_report, save_crops=save_crops)


def _multipart_png() -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _asgi_post(app: Any, headers: dict[str, str], body: bytes, path: str = "/predict") -> tuple[int, int]:
    """POST ``path`` through the ASGI app; (status, how many body messages the app pulled)."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    kind = f"multipart/form-data; boundary={BOUNDARY}" if path == "/predict" else "application/json"
    raw = {"content-type": kind, "content-length": str(len(body))} | headers
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in ({"host": "127.0.0.1"} | raw).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    return status, pulled


@pytest.fixture()
def service(tmp_path: Path) -> tuple[Any, _CountingEngine, dict[str, str]]:
    settings = Settings(
        crops_dir=tmp_path / "crops",
        worklist_path=tmp_path / "state" / "worklist.sqlite",
        warmup=False,
        ui=False,
        auth_failures_per_min=1000,
    )
    store = KeyStore(settings.keys_path)
    keys = {r.value: store.create(f"{r.value}-key", r)[1] for r in Role}
    engine = _CountingEngine(settings.crops_dir)
    app = create_app(settings, engine=engine)
    with TestClient(app) as c:  # runs the lifespan: the engine loads in the background; it stays loaded after
        deadline = time.monotonic() + 30
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the fake engine did not become ready"
            time.sleep(0.05)
    return app, engine, keys


def test_a_predict_without_a_credential_is_refused_before_its_body_is_read(service) -> None:
    app, engine, _ = service
    assert _asgi_post(app, {}, _multipart_png()) == (401, 0)
    assert _asgi_post(app, {"x-api-key": "cxt_not-a-key"}, _multipart_png()) == (401, 0)
    assert engine.calls == 0


def test_a_role_too_low_for_a_body_route_is_refused_before_its_body_is_read(service) -> None:
    app, _, keys = service
    # POST /worklist/{key}/state needs a reader: a submitter's key is refused from its headers alone
    status, pulled = _asgi_post(app, {"x-api-key": keys["submitter"]}, b'{"state": "opened"}', "/worklist/ACC-1/state")
    assert (status, pulled) == (403, 0)
    status, pulled = _asgi_post(app, {"x-api-key": keys["reader"]}, b'{"state": "opened"}', "/worklist/ACC-1/state")
    assert status == 404 and pulled >= 1  # past authentication: the route read the body (no such study)


def test_a_valid_key_is_checked_once_and_the_triage_goes_through(service) -> None:
    app, engine, keys = service
    status, pulled = _asgi_post(app, {"x-api-key": keys["submitter"]}, _multipart_png())
    assert status == 200 and pulled >= 1 and engine.calls == 1
    with TestClient(app) as c:
        r = c.get("/worklist", headers={"X-API-Key": keys["reader"]})
    assert r.status_code == 200
