"""What a client sends cannot forge a line of the service's log: the request line's path and method, and header
values (a credential, a cookie, the user agent, the Host) with newlines or terminal escapes, reach the log (if at
all) escaped by cxrtriage.log_text.loggable, so one logger call stays one line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.serve.middleware import RequestLogMiddleware  # noqa: E402

FORGED = "2026-01-01 12:00:00 INFO cxrtriage.serve.app request 0000 GET /predict -> 200"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def _raw(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values as bytes (UTF-8): the client library sends them as they are, as a hostile client would."""
    return {k: v.encode("utf-8") for k, v in headers.items()}


def _assert_one_line_each(messages: list[str]) -> None:
    for message in messages:
        assert not any(c in message for c in "\n\r\x1b\x00\x85\u2028"), repr(message)


def test_a_path_with_an_encoded_newline_is_one_escaped_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app = RequestLogMiddleware(Starlette(routes=[Route("/health", lambda r: PlainTextResponse("ok"))]))
    with TestClient(app) as c, caplog.at_level(logging.INFO, logger="cxrtriage.serve.app"):
        assert c.get(f"/%0a{FORGED}").status_code == 404
        assert c.get("/%1b[2J%0d/more").status_code == 404
    first, second = _lines(caplog)
    assert first.startswith("request ") and "GET /\\n2026-01-01 12:00:00 INFO" in first and first.endswith(" ms")
    assert "GET /\\x1b[2J\\r/... -> 404" in second  # a terminal escape and a carriage return, shown as text
    _assert_one_line_each([first, second])


def test_hostile_header_values_never_break_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Through the whole service with API keys configured: a wrong credential, a cookie, a user agent and a Host with
    control characters; every line logged on the way (request log, the guard's refusal) is one line, and the
    presented credential is in none of them."""
    from cxrtriage.security.keys import KeyStore
    from cxrtriage.serve.app import create_app

    crops = tmp_path / "crops"
    crops.mkdir()
    settings = Settings(crops_dir=crops, ui=False, warmup=False, worklist_path=tmp_path / "state" / "wl.sqlite")
    KeyStore(settings.keys_path).create("night-reader", "reader")
    engine: Any = object()  # nothing here reaches the model
    hostile = "x\r\n" + FORGED + "\x1b[2J\u2028"
    with TestClient(create_app(settings, engine=engine)) as c, caplog.at_level(logging.DEBUG, logger="cxrtriage"):
        headers = {"authorization": f"Bearer cxt_{hostile}", "user-agent": hostile, "cookie": f"a={hostile}"}
        assert c.get("/worklist", headers=_raw(headers)).status_code == 401
        assert c.get("/worklist", headers=_raw({"x-api-key": hostile})).status_code == 401
        assert c.get("/worklist", headers=_raw({"host": f"127.0.0.1{hostile}"})).status_code == 400
        assert c.get(f"/%0a{FORGED}", headers=_raw({"x-api-key": hostile})).status_code == 404
    messages = _lines(caplog)
    assert sum("authentication failed" in m for m in messages) == 2
    assert sum(m.startswith("request ") and " -> " in m for m in messages) == 4
    _assert_one_line_each(messages)
    assert not any(FORGED in m and "\\n" not in m for m in messages)  # the forged text only ever after an escape
