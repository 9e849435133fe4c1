"""The browser of the web UI's browser tests (``test_ui_browser.py``, ``test_ui_login_browser.py``): Debian's
chromium (``apt-get install chromium``), headless, driven by Playwright, one per test module. A test that uses it
(directly or through a ``page`` fixture) is skipped at collection when ``/usr/bin/chromium`` is missing, before any
service fixture starts a server for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# headless, and nothing that reaches the network on its own (the tests assert the UI contacts no other host): the
# same Chromium and flags as the browser page's parity check
from cxrtriage.browser.parity import CHROMIUM, CHROMIUM_ARGS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.is_file():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} missing (apt-get install chromium)")
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()) and Path(str(item.path)).parent == Path(__file__).parent:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
