"""A real ``cxrtriage serve`` on a free loopback port for the deliverables (the write-up's screenshot, the video, the
README's screenshot): started in a subprocess with a scratch state folder, stopped and cleaned up on exit.

It runs with authentication, as a hospital's service does: before it starts, ``cxrtriage keys create`` (the real
command, so each key's creation is the first record of the scratch audit trail) makes a ``reader`` key (the
radiologist who signs in to the UI) and a ``submitter`` key (the modality gateway that sends films) in the scratch
state folder. Each key is written to an owner-only file by ``--key-file``, read back and the file deleted: no key is
printed, logged or left on disk when the service stops. A browser signs in through the real sign-in page
(:func:`open_ui` with ``person``), an API client sends the key in ``X-API-Key`` (:attr:`Person.headers`).
"""

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu"]
#: the key holders of the scratch service (key names appear in the UI's top bar and in the audit trail)
READER_NAME, SUBMITTER_NAME = "night-radiologist", "modality-gateway"


@dataclass(frozen=True)
class Person:
    """A key holder of the running service: the key's name, its role and the key itself (kept out of ``repr``, so
    that no log line or error message that shows a Person shows its key)."""

    name: str
    role: str
    key: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The header an API client sends the key in."""
        return {"X-API-Key": self.key}


@dataclass(frozen=True)
class LiveService:
    """What a caller of :func:`running_service` needs: the base URL, the two key holders and the scratch audit
    trail (every request of the recording is recorded there, not in the user's own trail)."""

    base: str
    reader: Person
    submitter: Person
    audit_path: Path


def _create_key(root: Path, env: Mapping[str, str], name: str, role: str, folder: Path) -> Person:
    """A key made by ``cxrtriage keys create --key-file`` in the service's state folder; the key file is removed."""
    key_file = folder / f".{name}.key"
    done = subprocess.run(  # noqa: S603 - this interpreter's own CLI, fixed arguments
        [sys.executable, "-m", "cxrtriage.cli.main", "keys", "create", "--role", role, "--name", name]
        + ["--key-file", str(key_file)],
        cwd=root,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:  # its stderr names the problem and never holds a key (--key-file prints none)
        raise RuntimeError(f"cxrtriage keys create --name {name} failed: {done.stderr.strip()[-500:]}")
    try:
        key = key_file.read_text(encoding="ascii").strip()
    finally:
        key_file.unlink(missing_ok=True)
    return Person(name, role, key)


@contextlib.contextmanager
def running_service(
    root: Path, data_dir: Path, timeout_s: float = 120.0, worklist: Path | None = None
) -> Iterator[LiveService]:
    """Yield a ready server (``/ready`` answered 200) that requires a key or a signed-in session for everything but
    its open pages. Its worklist is a scratch file unless ``worklist`` names one (the video sets its simulated
    arrival times there); the keys and the session secret live in that worklist's folder (the state folder)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch = Path(tempfile.mkdtemp(prefix="cxrtriage-live-"))
    audit_path = scratch / "audit.jsonl"
    env = {
        **os.environ,
        "CXRTRIAGE_CROPS_DIR": str(scratch / "crops"),
        "CXRTRIAGE_DATA_DIR": str(data_dir),
        "CXRTRIAGE_WORKLIST_PATH": str(worklist or scratch / "worklist.sqlite"),
        # a scratch audit trail: the recording's requests are not the user's record
        "CXRTRIAGE_AUDIT_PATH": str(audit_path),
    }
    env.pop("CXRTRIAGE_SESSION_SECRET", None)  # the scratch state folder's own secret, not the user's
    server = None
    try:
        reader = _create_key(root, env, READER_NAME, "reader", scratch)
        submitter = _create_key(root, env, SUBMITTER_NAME, "submitter", scratch)
        server = subprocess.Popen(  # noqa: S603 - this interpreter's own CLI, fixed arguments
            [sys.executable, "-m", "cxrtriage.cli.main", "serve", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5):  # noqa: S310 - an http URL on loopback built here
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the cxrtriage server did not become ready") from None
                time.sleep(1)
        yield LiveService(base, reader, submitter, audit_path)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def fill_sign_in(page, person: Person, type_delay_ms: float = 0) -> None:
    """Fill in the sign-in page the browser shows as a person does: the name typed into its field, the key into the
    password field (the browser shows dots, never the key). ``type_delay_ms`` types key by key (the video)."""
    page.locator("#name").press_sequentially(person.name, delay=type_delay_ms)
    page.locator("#key").press_sequentially(person.key, delay=type_delay_ms / 4)


def submit_sign_in(page) -> None:
    """Press Sign in on the filled sign-in page and wait for the page it leads to; raises when the page says the
    sign-in was refused (its words name neither the name nor the key)."""
    with page.expect_navigation(wait_until="load"):
        page.locator("#sign-in").click()
    if page.locator("#login-error").count():
        raise RuntimeError(f"the sign-in page refused the sign-in: {page.locator('#login-error').inner_text()}")


def open_ui(page, base_url: str, idle_timeout_ms: int = 10_000, person: Person | None = None) -> None:
    """Open the UI as a user does and wait until it can be used: signed in first through the sign-in page when
    ``person`` is given (a service that runs open needs none), the page loaded and the Triage button shown, then
    network idle for at most ``idle_timeout_ms``. Not "networkidle" alone: Gradio keeps a session's event stream
    (``gradio_api/queue/data``) open while an event of that session is pending, and the service no longer cuts such a
    stream after its body timeout; in the browser tests it was seen open for over 10 s on a fresh page, and a wait
    for idle alone then ran into the 60 s timeout."""
    page.goto(f"{base_url}/ui/", wait_until="load")  # a service that requires sign-in answers with its sign-in page
    if person is not None:
        fill_sign_in(page, person)
        submit_sign_in(page)
    wait_for_ui(page, idle_timeout_ms)


def wait_for_ui(page, idle_timeout_ms: int = 10_000) -> None:
    """Wait until the loaded UI can be used (see :func:`open_ui`)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

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
