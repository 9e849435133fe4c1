"""The deliverables' server (:func:`cxrtriage.evaluation.live_server.running_service`) runs as a hospital's does:
with keys by role and a sign-in page, and its keys never show in a repr, the audit trail or the scratch folder after
it stops. The second test starts a real server and signs in through the real page in headless chromium."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cxrtriage.evaluation import live_server
from cxrtriage.evaluation.live_server import Person

ROOT = Path(__file__).resolve().parents[2]


def test_a_person_never_shows_its_key():
    person = Person("night-radiologist", "reader", "cxt_0123abcd_not-a-real-secret")
    assert "not-a-real-secret" not in repr(person) and "not-a-real-secret" not in str(person)
    assert person.headers == {"X-API-Key": "cxt_0123abcd_not-a-real-secret"}


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback URL built here
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(not Path(live_server.CHROMIUM).is_file(), reason="chromium not installed")
def test_the_service_requires_a_key_by_role_and_the_reader_signs_in(tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    with live_server.running_service(ROOT, tmp_path / "no-data-directory") as service:
        scratch = service.audit_path.parent
        worklist = f"{service.base}/worklist"
        assert _status(worklist) == 401  # nothing stored is open to anyone
        assert _status(worklist, service.submitter.headers) == 403  # a gateway's key reads nothing
        assert _status(worklist, service.reader.headers) == 200
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=live_server.CHROMIUM, args=live_server.CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(120_000)
            live_server.open_ui(page, service.base, person=service.reader)
            assert service.reader.name in page.locator("#cxr-user-bar").inner_text()
            assert service.reader.key not in page.content()
            browser.close()
        trail = service.audit_path.read_text()
        records = [json.loads(line) for line in trail.splitlines()]
        created = [r["reason"] for r in records if r["action"] == "key.create"]
        assert len(created) == 2 and any(service.reader.name in c for c in created)
        assert any(r["action"] == "login" and r["principal"] == service.reader.name for r in records)
        assert service.reader.key not in trail and service.submitter.key not in trail
        assert not list(scratch.glob("*.key")) and not list(scratch.glob(".*.key"))  # key files read and deleted
    assert not scratch.exists()
