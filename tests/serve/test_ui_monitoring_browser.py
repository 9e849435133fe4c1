"""The web UI's Monitoring tab in a real browser (headless chromium): with monitor records whose urgent rate and
scores moved after the first results of use, the tab shows the reference it compared with, the alerts in words,
a plot per figure (inline SVG) and the table of figures, loading nothing from outside the server."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("gradio")
from fake_engine import Engine  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.evaluation.live_server import open_ui  # noqa: E402
from cxrtriage.monitoring.store import MonitorStore  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shifted_records(store: MonitorStore) -> None:
    """One result an hour for 100 hours: the first 40, one in five Urgent (the reference); then 60, all Urgent with
    high scores, the last 3 of them within the last 24 hours."""
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=120)
    for i in range(100):
        urgent = i >= 40 or i % 5 == 0
        store.append(
            {
                "time": (start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": "node",
                "outcome": "triaged",
                "label": "Urgent" if urgent else "Non-Urgent",
                "score": 0.8 + (i % 7) / 100 if urgent else 0.1 + (i % 7) / 100,
                "needs_review": False,
                "similarity": 0.8,
                "image": {"mean": 0.5, "std": 0.2, "width": 512, "height": 512},
                "site": None,
                "model_sha256": "0" * 64,
            }
        )


@pytest.fixture(scope="module")
def monitored_url(tmp_path_factory: pytest.TempPathFactory):
    import uvicorn

    folder = tmp_path_factory.mktemp("monitoring-ui")
    (folder / "crops").mkdir()
    settings = Settings(
        crops_dir=folder / "crops",
        worklist_path=folder / "state" / "worklist.sqlite",
        warmup=False,
        monitor_reference_n=40,
    )
    _shifted_records(MonitorStore.from_settings(settings))
    port = _port()
    app = create_app(settings, engine=Engine(folder / "crops"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_monitoring_tab_flags_the_change(browser, monitored_url: str) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    open_ui(page, monitored_url)
    page.get_by_role("tab", name="Monitoring").click()
    page.locator("#cxr-monitoring .cxr-mon-alerts").wait_for(state="visible")
    text = page.locator("#cxr-monitoring").inner_text()
    assert "the first 40 results of use" in text
    # the window starts where the reference ends (a result is never compared with itself): 60 hours ago
    assert re.search(r"urgent rate 100% in the last [\d.]+ hours against 20% in the first 40 results of use", text)
    assert "check for a new modality or protocol" in text
    assert page.locator("#cxr-monitoring .cxr-mon-has-alerts").count() == 1
    assert page.locator("#cxr-monitoring svg.cxr-mon-plot").count() >= 6
    assert page.locator("#cxr-monitoring table.cxr-mon-table tr").count() > 8
    page.get_by_role("radio", name="24h").check()
    page.wait_for_function("document.querySelector('#cxr-monitoring').innerText.includes('in the last 24 hours')")
    assert "urgent rate: too few results to judge (3 in the window" in page.locator("#cxr-monitoring").inner_text()
    assert {urlsplit(u).hostname for u in requests} <= {"127.0.0.1"}
    context.close()
