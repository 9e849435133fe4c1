"""The hospital DICOM flow on loopback, as one context manager: a real Orthanc PACS (Debian package ``orthanc``) with
a temporary configuration, cxrtriage's DICOM node C-STOREing its results to it (or, in pull mode, ``cxrtriage
orthanc-pull`` following Orthanc's change log) and the web service with its UI, all sharing one worklist. Public PNGs
are converted to DICOM with synthetic identifiers and sent, with the shared DICOM files, by dcmtk's ``storescu`` (the
modality) to Orthanc (the archive) and to the node. :func:`~cxrtriage.pacs.stack_checks.check_results` then finds,
through ``findscu`` (C-FIND) and Orthanc's REST API, the SR of every instance sent, and checks the worklist's order.
``cxrtriage pacs-demo``, its end-to-end test and the video all run this one path. Everything listens on 127.0.0.1
and is stopped, and its temporary folder removed, on exit. The web service requires authentication, as a hospital's
would: an admin API key is created in the stack's state folder (``cxrtriage keys create --key-file``, so it is in
that folder's audit trail too), its file's path is printed (never the key), and the checks send it. The
cxrtriage servers run with the caller's settings (its
one :class:`~cxrtriage.config.Settings`, with this stack's worklist, crops folder, data directory and port on top),
given to each child as its whole ``CXRTRIAGE_*`` environment.

What is sent lives in :mod:`cxrtriage.pacs.stack_inputs`, the checks in :mod:`cxrtriage.pacs.stack_checks` and what
all three share (AE titles, :class:`~cxrtriage.pacs.stack_tools.DemoError`, the tools) in
:mod:`cxrtriage.pacs.stack_tools`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cxrtriage.config import ENV_PREFIX, Settings
from cxrtriage.pacs.stack_inputs import Sent, demo_inputs, storescu
from cxrtriage.pacs.stack_tools import MODALITY_AET, NODE_AET, ORTHANC_AET, DemoError, find_tool, http_get


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ports:
    orthanc_http: int = 8042
    orthanc_dicom: int = 4242
    node: int = 11112
    ui: int = 7860

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


def _wait(what: str, ready, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log and log.is_file() else ""
            raise DemoError(f"{what} exited with code {proc.returncode} before it was ready:\n{tail}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.5)
    raise DemoError(f"{what} was not ready after {timeout_s:.0f} s")


def _environment(settings: Settings | None) -> dict[str, str]:
    """This process's environment, with exactly ``settings`` as its ``CXRTRIAGE_*`` variables when given."""
    env = dict(os.environ)
    if settings is not None:
        env = {k: v for k, v in env.items() if not k.startswith(ENV_PREFIX)} | settings.environment()
    return env


def create_api_key(settings: Settings, key_file: Path) -> str:
    """An admin API key for the stack's web service, made by ``cxrtriage keys create --key-file`` in the settings'
    state folder (recorded in its audit trail like any key); returns the key. DemoError when it cannot be made."""
    cmd = [sys.executable, "-m", "cxrtriage.cli.main", "keys", "create", "--role", "admin", "--name", "pacs-demo"]
    done = subprocess.run(  # noqa: S603 - this interpreter's own CLI, fixed arguments
        [*cmd, "--key-file", str(key_file)], env=_environment(settings), capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0 or not key_file.is_file():
        raise DemoError(f"cxrtriage keys create failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return key_file.read_text(encoding="ascii").strip()


class Processes:
    """The servers this demo started; all are stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.procs = workdir, []

    def start(self, name: str, cmd: list[str], settings: Settings | None = None) -> tuple[subprocess.Popen, Path]:
        """Start ``cmd``; a cxrtriage command gets ``settings`` as its ``CXRTRIAGE_*`` variables (and no other)."""
        log = self.workdir / f"{name}.log"
        env = _environment(settings)
        with open(log, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - the demo's own servers (Orthanc, cxrtriage), argument lists
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, env=env, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc, log

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f"pacs-demo: {name} did not stop in 60 s; killed", file=sys.stderr)
                proc.kill()
                proc.wait()


def orthanc_config(workdir: Path, ports: Ports) -> Path:
    """A temporary Orthanc configuration with storage in ``workdir``. Orthanc 1.10 cannot bind its ports to one
    interface, so access is closed instead: REST from loopback only, and DICOM only from the two known AE titles
    (the modality and the node) at 127.0.0.1 and addressed to Orthanc's own AE title."""
    storage = workdir / "orthanc-db"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "cxrtriage-demo",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": ports.orthanc_http,
        "DicomPort": ports.orthanc_dicom,
        "DicomAet": ORTHANC_AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "StorageCompression": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": False,
        "DicomCheckModalityHost": True,
        "DicomCheckCalledAet": True,
        "DicomModalities": {
            "cxrtriage": [NODE_AET, "127.0.0.1", ports.node],
            "modality": [MODALITY_AET, "127.0.0.1", 104],
        },
    }
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def _status(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def wait_answered(status_file: Path, n: int, timeout_s: float) -> dict:
    """Wait until the node or poller has answered ``n`` instances (triaged, not triaged or failed) and sent them."""

    def done() -> bool:
        s = _status(status_file)
        answered = s.get("triaged", 0) + s.get("not_triaged", 0) + s.get("failed", 0) + s.get("unreadable", 0)
        return answered >= n and not s.get("queue", 0)

    _wait(f"answers for {n} instances", done, timeout_s)
    return _status(status_file)


@dataclass
class Stack:
    """A running stack: where everything listens, what was sent and the node's (or poller's) counts once every
    instance was answered."""

    ports: Ports
    mode: str
    workdir: Path
    sent: list[Sent]
    status: dict
    #: where the web service's admin API key is (a 0600 file in the stack's state folder)
    key_file: Path | None = None
    #: that key, for the checks' requests (never printed; left out of the repr)
    api_key: str | None = field(default=None, repr=False)

    @property
    def orthanc_base(self) -> str:
        return f"http://127.0.0.1:{self.ports.orthanc_http}"

    @property
    def ui_base(self) -> str:
        return f"http://127.0.0.1:{self.ports.ui}"


@contextlib.contextmanager
def pacs_stack(
    data_dir: Path,
    ports: Ports,
    *,
    pull: bool = False,
    timeout_s: float = 300.0,
    keep: bool = False,
    settings: Settings | None = None,
) -> Iterator[Stack]:
    """Start Orthanc, the node (or the poller) and the UI, send the demo instances, wait until every one is answered
    and yield the running :class:`Stack`; stop everything on exit. Raises :class:`DemoError` with one sentence.
    ``settings``: the caller's (``cxrtriage pacs-demo``'s); None reads them from the environment here."""
    settings = settings if settings is not None else Settings()
    workdir = Path(tempfile.mkdtemp(prefix="cxrtriage-pacs-demo-"))
    procs = Processes(workdir)
    python = sys.executable
    worklist, status_file = workdir / "worklist.sqlite", workdir / "status.json"
    # one worklist for the node (or poller) and the service; the service on loopback, with this stack's folders
    settings = settings.model_copy(
        update={
            "worklist_path": worklist,
            "crops_dir": workdir / "crops",
            "data_dir": data_dir,
            "host": "127.0.0.1",
            "port": ports.ui,
            # this stack's own audit trail (with its keys, beside its worklist), never the caller's
            "audit_path": workdir / "audit.jsonl",
        }
    )
    key_file = workdir / "admin-api-key"
    orthanc_base, ui_base = f"http://127.0.0.1:{ports.orthanc_http}", f"http://127.0.0.1:{ports.ui}"
    try:
        orthanc, log = procs.start("orthanc", [find_tool("Orthanc", "/usr/sbin"), str(orthanc_config(workdir, ports))])
        _wait("Orthanc", lambda: http_get(orthanc_base + "/system"), 60, orthanc, log)
        common = ["--worklist", str(worklist), "--status-file", str(status_file)]
        if pull:
            proc, log = procs.start(
                "orthanc-pull",
                [
                    python,
                    "-m",
                    "cxrtriage.cli.main",
                    "orthanc-pull",
                    "--url",
                    orthanc_base,
                    "--interval",
                    "1",
                    "--state-file",
                    str(workdir / "pull-state.json"),
                    *common,
                ],
                settings,
            )
            _wait("cxrtriage orthanc-pull", lambda: "polling" in log.read_text(), 120, proc, log)
        else:
            proc, log = procs.start(
                "dicom-node",
                [
                    python,
                    "-m",
                    "cxrtriage.cli.main",
                    "dicom-node",
                    "--port",
                    str(ports.node),
                    "--destination",
                    f"{ORTHANC_AET}@127.0.0.1:{ports.orthanc_dicom}",
                    *common,
                ],
                settings,
            )
            _wait("cxrtriage dicom-node", lambda: _status(status_file).get("listening"), 120, proc, log)
        api_key = create_api_key(settings, key_file)
        print(f"pacs-demo: the web service requires an API key; an admin key is in {key_file}", flush=True)
        serve, log = procs.start(
            "serve", [python, "-m", "cxrtriage.cli.main", "serve", "--port", str(ports.ui)], settings
        )
        _wait("cxrtriage serve", lambda: http_get(ui_base + "/ready"), 180, serve, log)
        sent = demo_inputs(data_dir, workdir / "inputs")
        print(f"pacs-demo: sending {len(sent)} instances with storescu", flush=True)
        storescu([s.path for s in sent], ORTHANC_AET, ports.orthanc_dicom, workdir / "storescu.log")
        if not pull:
            storescu([s.path for s in sent], NODE_AET, ports.node, workdir / "storescu.log")
        status = wait_answered(status_file, len(sent), timeout_s)
        yield Stack(ports, "pull" if pull else "push", workdir, sent, status, key_file, api_key)
    finally:
        procs.stop_all()
        if keep:
            print(f"pacs-demo: logs and data kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
