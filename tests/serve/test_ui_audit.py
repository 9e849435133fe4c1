"""The web UI's own audit records (cxrtriage.serve.ui.audit): a reader opening a study in the Worklist tab, marking
it reported or returning it, and the Triage tab filing a result each leave a record with the study's key and the
person the guard put on the Gradio event's request (no second copy of the authentication rules); without
authentication the record says anonymous / open; a record that cannot be written never hides the result.

The handlers are called with a real ``gradio.Request`` around a Starlette request whose scope holds what the
service's layers put there (the principal, the request id); the browser test (test_ui_login_browser.py) checks the
same records through a real sign-in and a click."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fake_prediction import fake_prediction

from cxrtriage.security.audit import AuditLog, verify
from cxrtriage.security.principal import ANONYMOUS, Principal, Role
from cxrtriage.serve.middleware import REQUEST_ID_KEY
from cxrtriage.serve.ui.audit import UiAudit
from cxrtriage.serve.ui.worklist import file_ui_result, read_study, set_state_audited
from cxrtriage.worklist import Worklist

gr = pytest.importorskip("gradio")

READER = Principal(name="dr-smith", role=Role.READER, via="session")


def _request(principal: Principal | None = READER, request_id: str = "0a1b2c3d4e5f6a7b") -> Any:
    """A Gradio event's request as the service hands it over: the guard's principal on its state, the request id."""
    from starlette.requests import Request

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/ui/gradio_api/queue/join",
        "headers": [],
        "client": ("10.1.2.3", 50123),
        "state": {} if principal is None else {"principal": principal},
        REQUEST_ID_KEY: request_id,
    }
    return gr.Request(request=Request(scope))


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Worklist, UiAudit, Path]:
    wl = Worklist(tmp_path / "state" / "worklist.sqlite")
    wl.add(fake_prediction(), "ACC-42")
    path = tmp_path / "state" / "audit.jsonl"
    return wl, UiAudit(AuditLog(path)), path


def test_opening_a_study_records_a_result_read_naming_the_reader_and_the_study(setup) -> None:
    wl, audit, path = setup
    page = read_study(lambda: wl, "ACC-42", audit, _request())
    assert "Study <code>ACC-42</code>" in page and wl.item("ACC-42")["state"] == "opened"
    (record,) = _records(path)
    assert {k: record[k] for k in ("principal", "role", "via", "action", "study", "outcome")} == {
        "principal": "dr-smith",
        "role": "reader",
        "via": "session",
        "action": "result.read",
        "study": "ACC-42",
        "outcome": "ok",
    }
    assert record["request_id"] == "0a1b2c3d4e5f6a7b" and record["client"] == "10.1.2.3"
    assert verify(path) == []


def test_a_study_that_is_gone_is_recorded_as_not_found(setup) -> None:
    wl, audit, path = setup
    assert "no longer on the worklist" in read_study(lambda: wl, "ACC-99", audit, _request())
    assert [(r["action"], r["study"], r["outcome"]) for r in _records(path)] == [("result.read", "ACC-99", "not_found")]


def test_mark_reported_and_return_to_list_are_recorded_as_worklist_state(setup) -> None:
    wl, audit, path = setup
    assert set_state_audited(lambda: wl, "ACC-42", "reported", audit, _request(request_id="1")) is None
    assert wl.item("ACC-42")["state"] == "reported"
    assert set_state_audited(lambda: wl, "ACC-42", "new", audit, _request(request_id="2")) is None
    assert set_state_audited(lambda: wl, "ACC-77", "new", audit, _request(request_id="3")) is None
    got = [(r["action"], r["study"], r["outcome"], r["principal"], r["request_id"]) for r in _records(path)]
    assert got == [
        ("worklist.state", "ACC-42", "ok", "dr-smith", "1"),
        ("worklist.state", "ACC-42", "ok", "dr-smith", "2"),
        ("worklist.state", "ACC-77", "not_found", "dr-smith", "3"),
    ]


def test_a_result_filed_by_the_triage_tab_is_recorded_with_its_key(setup) -> None:
    wl, audit, path = setup
    _, typed = file_ui_result(lambda: wl, fake_prediction(), accession="ACC-1001", audit=audit, request=_request())
    _, random_key = file_ui_result(lambda: wl, fake_prediction(), audit=audit, request=_request())
    assert typed == "ACC-1001" and random_key and wl.item(random_key) is not None
    got = [(r["action"], r["study"], r["outcome"], r["principal"], r["role"]) for r in _records(path)]
    assert got == [
        ("triage", "ACC-1001", "ok", "dr-smith", "reader"),
        ("triage", random_key, "ok", "dr-smith", "reader"),
    ]


def test_a_result_that_could_not_be_filed_is_recorded_as_failed(setup, tmp_path: Path) -> None:
    _, audit, path = setup

    def broken() -> Worklist:
        raise OSError("disk gone")

    pred, key = file_ui_result(broken, fake_prediction(), accession="ACC-5", audit=audit, request=_request())
    assert key is None and pred.warnings  # the reader still gets the result, saying it is not on the list
    assert [(r["action"], r["study"], r["outcome"]) for r in _records(path)] == [("triage", "ACC-5", "failed")]


def test_without_authentication_the_record_says_anonymous_open(setup) -> None:
    wl, audit, path = setup
    read_study(lambda: wl, "ACC-42", audit, _request(ANONYMOUS))
    read_study(lambda: wl, "ACC-42", audit, _request(None))  # the UI served alone: no guard, no principal
    got = [(r["principal"], r["role"], r["via"], r["study"]) for r in _records(path)]
    assert got == [("anonymous", "none", "open", "ACC-42"), ("anonymous", "none", None, "ACC-42")]


def test_a_failed_audit_write_still_shows_the_study_and_is_logged_and_counted(
    setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wl, _, _ = setup
    folder = tmp_path / "a-folder"
    folder.mkdir()
    failures: list[int] = []
    with caplog.at_level(logging.ERROR, logger="cxrtriage.serve.audit"):
        page = read_study(lambda: wl, "ACC-42", UiAudit(AuditLog(folder), lambda: failures.append(1)), _request())
    assert "Study <code>ACC-42</code>" in page
    assert failures == [1]  # the service's counter (cxrtriage_audit_write_failures_total) goes up
    assert "AUDIT RECORD NOT WRITTEN for UI request 0a1b2c3d4e5f6a7b (result.read, ok)" in caplog.text


def test_the_ui_writes_to_the_services_audit_trail(tmp_path: Path) -> None:
    from cxrtriage.config import Settings

    settings = Settings(worklist_path=tmp_path / "state" / "worklist.sqlite")
    assert UiAudit.from_settings(settings).audit.path == settings.audit_file == tmp_path / "state" / "audit.jsonl"
