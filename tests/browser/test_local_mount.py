"""``cxrtriage serve`` serves the built browser page at /local, read-only and without a login, when it is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cxrtriage.browser import build as browser_build
from cxrtriage.config import Settings
from cxrtriage.serve.app import BROWSER_PAGE_URL, create_app


def test_the_built_page_is_served_at_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "build" / "browser"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<title>cxrtriage</title>", encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"classifier": {}}), encoding="utf-8")
    monkeypatch.setattr(browser_build, "built_page", lambda start=None: folder)
    with TestClient(create_app(Settings(crops_dir=tmp_path / "crops", ui=False))) as client:
        page = client.get(f"{BROWSER_PAGE_URL}/")
        assert page.status_code == 200 and "cxrtriage" in page.text
        assert client.get(f"{BROWSER_PAGE_URL}/config.json").json() == {"classifier": {}}
        assert client.put(f"{BROWSER_PAGE_URL}/config.json", content=b"{}").status_code in (403, 405)


def test_no_local_without_a_built_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser_build, "built_page", lambda start=None: None)
    with TestClient(create_app(Settings(crops_dir=tmp_path / "crops", ui=False))) as client:
        assert client.get(f"{BROWSER_PAGE_URL}/").status_code == 404
