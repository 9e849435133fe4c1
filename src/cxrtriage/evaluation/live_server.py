"""A real ``cxrtriage serve`` on a free loopback port for the deliverables (the write-up's screenshot, the video):
started in a subprocess with a scratch crops folder, stopped and cleaned up on exit."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu"]


@contextlib.contextmanager
def running_service(
    root: Path, data_dir: Path, timeout_s: float = 120.0, worklist: Path | None = None
) -> Iterator[str]:
    """Yield the base URL of a ready server (``/ready`` answered 200). Its worklist is a scratch file unless
    ``worklist`` names one (the video sets its simulated arrival times there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch = Path(tempfile.mkdtemp(prefix="cxrtriage-live-"))
    env = {
        **os.environ,
        "CXRTRIAGE_CROPS_DIR": str(scratch / "crops"),
        "CXRTRIAGE_DATA_DIR": str(data_dir),
        "CXRTRIAGE_WORKLIST_PATH": str(worklist or scratch / "worklist.sqlite"),
        # a scratch audit trail: the recording's requests are not the user's record. The server runs open on
        # loopback (no key: its state folder is a fresh one), as `cxrtriage serve` does by default there
        "CXRTRIAGE_AUDIT_PATH": str(scratch / "audit.jsonl"),
    }
    server = subprocess.Popen(  # noqa: S603 - this interpreter's own CLI, fixed arguments
        [sys.executable, "-m", "cxrtriage.cli.main", "serve", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5):  # noqa: S310 - an http URL on loopback built here
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the cxrtriage server did not become ready") from None
                time.sleep(1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def open_ui(page, base_url: str, idle_timeout_ms: int = 10_000) -> None:
    """Open the UI as a user does and wait until it can be used: the page loaded and the Triage button shown, then
    network idle for at most ``idle_timeout_ms``. Not "networkidle" alone: Gradio keeps a session's event stream
    (``gradio_api/queue/data``) open while an event of that session is pending, and the service no longer cuts such a
    stream after its body timeout; in the browser tests it was seen open for over 10 s on a fresh page, and a wait
    for idle alone then ran into the 60 s timeout."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.goto(f"{base_url}/ui/", wait_until="load")
    page.locator("#cxr-triage").wait_for(state="visible")
    try:
        page.wait_for_load_state("networkidle", timeout=idle_timeout_ms)
    except PlaywrightTimeoutError:
        pass


def upload_and_triage(page, image: Path, prior_report: str | None = None, accession: str | None = None) -> None:
    """Drive the UI as a user does: choose the file, optionally paste a prior report and type the accession, press
    Triage, wait."""
    page.locator("#cxr-file input[type=file]").set_input_files(str(image))
    page.locator(f'#cxr-file a[download="{image.name}"][href*="/file="]').first.wait_for(state="visible")
    page.locator("#cxr-prior textarea").fill(prior_report or "")
    page.locator("#cxr-accession textarea, #cxr-accession input").first.fill(accession or "")
    page.locator("#cxr-triage").click()
    page.wait_for_function(
        "() => { const e = document.querySelector('#cxr-error .cxr-error');"
        " const l = document.querySelector('#cxr-label .cxr-label'); return !!(e || l); }"
    )
