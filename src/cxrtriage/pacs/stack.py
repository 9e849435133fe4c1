"""The hospital DICOM flow on loopback, as one context manager: a real Orthanc PACS (Debian package ``orthanc``) with
a temporary configuration, cxrtriage's DICOM node C-STOREing its results to it (or, in pull mode, ``cxrtriage
orthanc-pull`` following Orthanc's change log) and the web service with its UI, all sharing one worklist. Public PNGs
are converted to DICOM with synthetic identifiers and sent, with the shared DICOM files, by dcmtk's ``storescu`` (the
modality) to Orthanc (the archive) and to the node. :func:`check_results` then finds, through ``findscu`` (C-FIND)
and Orthanc's REST API, the SR of every instance sent, and checks the worklist's order. ``cxrtriage pacs-demo``,
its end-to-end test and the video all run this one path. Everything listens on 127.0.0.1 and is stopped, and its
temporary folder removed, on exit. The cxrtriage servers run with the caller's settings (its one
:class:`~cxrtriage.config.Settings`, with this stack's worklist, crops folder, data directory and port on top),
given to each child as its whole ``CXRTRIAGE_*`` environment.
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
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrtriage.config import ENV_PREFIX, Settings

ORTHANC_AET, NODE_AET, MODALITY_AET = "ORTHANC", "CXRTRIAGE", "MODALITY"


class DemoError(RuntimeError):
    """A step of the demo could not run (a tool missing, a server that did not start): one sentence for the user."""


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


@dataclass
class Sent:
    """One instance the modality sent: what it is (no identifier of a real patient: these are synthetic or the
    shared anonymised files) and its UIDs, to find its SR afterwards."""

    name: str
    path: Path
    sop_instance_uid: str
    study_instance_uid: str
    expect: str  # "triaged" or "not_triaged"


@dataclass
class Report:
    checks: list[dict[str, Any]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)


def _tool(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None)
    if path is None:
        raise DemoError(f"{name} is not installed: on Debian/Ubuntu run `sudo apt-get install orthanc dcmtk`")
    return path


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback servers this demo started
        return response.read()


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


class Processes:
    """The servers this demo started; all are stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.procs = workdir, []

    def start(self, name: str, cmd: list[str], settings: Settings | None = None) -> tuple[subprocess.Popen, Path]:
        """Start ``cmd``; a cxrtriage command gets ``settings`` as its ``CXRTRIAGE_*`` variables (and no other)."""
        log = self.workdir / f"{name}.log"
        env = dict(os.environ)
        if settings is not None:
            env = {k: v for k, v in env.items() if not k.startswith(ENV_PREFIX)} | settings.environment()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
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


def demo_inputs(data_dir: Path, folder: Path) -> list[Sent]:
    """The shared DICOM files as they are, plus public PNGs converted to DICOM with synthetic identifiers: an urgent
    and a non-urgent adult test film, a child's film, a lateral view (the node must refuse it) and an adult film
    labelled as another modality (OT: it must be answered "not triaged")."""
    import pydicom
    from pydicom.uid import generate_uid

    from cxrtriage.data import example_paths, lateral_paths, load_split_records
    from cxrtriage.pacs.synthetic import dicom_from_picture

    sent: list[Sent] = []
    for path in sorted((data_dir / "dicom").glob("*.dcm")):
        ds = pydicom.dcmread(path, force=True)
        if any(s.sop_instance_uid == str(ds.SOPInstanceUID) for s in sent):
            # the MONOCHROME1 twin of a shared file reuses its SOP Instance UID; a PACS would take it for the same
            # instance and drop it, so a copy with a fresh UID is sent instead
            ds.SOPInstanceUID = generate_uid()
            if "MediaStorageSOPInstanceUID" in ds.get("file_meta", {}):
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = folder / f"{path.stem}-new-uid.dcm"
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(path)
        sent.append(Sent(path.name, path, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), "triaged"))
    pictures = [p for p in example_paths(data_dir) if p.suffix.lower() != ".dcm"]
    names = ["adult-urgent", "adult-non-urgent", "child"][: len(pictures)]
    plan = [(n, p, "CR", "PA", "triaged") for n, p in zip(names, pictures)]
    laterals = lateral_paths(data_dir)
    if laterals:
        plan.append(("lateral", laterals[0], "CR", "LL", "not_triaged"))
    adults = [r.path for r in load_split_records(data_dir, ("nih",))["test"]]
    if adults:
        plan.append(("other-modality", adults[-1], "OT", "PA", "not_triaged"))
    for i, (name, picture, modality, view, expect) in enumerate(plan, start=1):
        out = folder / f"{name}.dcm"
        ds = dicom_from_picture(
            picture, out, patient_id=f"SYN{i:04d}", accession=f"DEMO{i:04d}", modality=modality, view_position=view
        )
        sent.append(Sent(name, out, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), expect))
    return sent


def storescu(files: list[Path], aec: str, port: int, log: Path) -> None:
    """Send ``files`` like a modality (``-xy``: JPEG baseline files go as they are, others uncompressed)."""
    cmd = [_tool("storescu"), "-xy", "-aet", MODALITY_AET, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
    with open(log, "ab") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode
    if code != 0:
        raise DemoError(f"storescu to {aec} failed with exit code {code} (see {log})")


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


def orthanc_srs(base: str) -> list[Any]:
    """Every SR instance in Orthanc, read back with pydicom."""
    import io

    import pydicom

    request = urllib.request.Request(
        base + "/tools/find",
        data=json.dumps({"Level": "Instance", "Query": {"Modality": "SR"}}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        ids = json.loads(response.read())
    return [pydicom.dcmread(io.BytesIO(_get(f"{base}/instances/{i}/file")), force=True) for i in ids]


def findscu_sr_series(study_uid: str, port: int) -> int:
    """How many SR series Orthanc reports for a study over C-FIND (what a viewer or RIS would ask)."""
    cmd = [
        _tool("findscu"),
        "-S",
        "-aet",
        MODALITY_AET,
        "-aec",
        ORTHANC_AET,
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "-k",
        "Modality=SR",
        "-k",
        "SeriesInstanceUID",
        "127.0.0.1",
        str(port),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return sum(1 for line in (out.stdout + out.stderr).splitlines() if "(0020,000e)" in line and "UI [" in line)


def _category(sr: Any) -> str:
    """The triage category coded in an SR (Urgent, Non-urgent or Not triaged)."""

    def walk(items):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""
            if name == "CATEGORY" and "ConceptCodeSequence" in item:
                return item.ConceptCodeSequence[0].CodeMeaning
            found = walk(item.get("ContentSequence", []))
            if found:
                return found
        return None

    return walk(sr.get("ContentSequence", [])) or "?"


def _referenced(sr: Any) -> set[str]:
    return {
        ref.ReferencedSOPInstanceUID
        for study in sr.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }


@dataclass
class Stack:
    """A running stack: where everything listens, what was sent and the node's (or poller's) counts once every
    instance was answered."""

    ports: Ports
    mode: str
    workdir: Path
    sent: list[Sent]
    status: dict

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
        }
    )
    orthanc_base, ui_base = f"http://127.0.0.1:{ports.orthanc_http}", f"http://127.0.0.1:{ports.ui}"
    try:
        orthanc, log = procs.start("orthanc", [_tool("Orthanc", "/usr/sbin"), str(orthanc_config(workdir, ports))])
        _wait("Orthanc", lambda: _get(orthanc_base + "/system"), 60, orthanc, log)
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
        serve, log = procs.start(
            "serve", [python, "-m", "cxrtriage.cli.main", "serve", "--port", str(ports.ui)], settings
        )
        _wait("cxrtriage serve", lambda: _get(ui_base + "/ready"), 180, serve, log)
        sent = demo_inputs(data_dir, workdir / "inputs")
        print(f"pacs-demo: sending {len(sent)} instances with storescu", flush=True)
        storescu([s.path for s in sent], ORTHANC_AET, ports.orthanc_dicom, workdir / "storescu.log")
        if not pull:
            storescu([s.path for s in sent], NODE_AET, ports.node, workdir / "storescu.log")
        status = wait_answered(status_file, len(sent), timeout_s)
        yield Stack(ports, "pull" if pull else "push", workdir, sent, status)
    finally:
        procs.stop_all()
        if keep:
            print(f"pacs-demo: logs and data kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def study_with_results(orthanc_base: str) -> tuple[str, str]:
    """An Orthanc study holding a radiograph and both cxrtriage series (SR and Secondary Capture): its ID and the
    Secondary Capture instance's ID."""

    def get(path: str):
        return json.loads(_get(orthanc_base + path, timeout=10))

    for study in get("/studies?expand"):
        series = get(f"/studies/{study['ID']}/series")
        described = {x["MainDicomTags"].get("SeriesDescription", ""): x for x in series}
        sc = next((x for d, x in described.items() if d.startswith("cxrtriage AI evidence")), None)
        if sc is not None and any(d.startswith("cxrtriage AI triage (") for d in described):
            return study["ID"], sc["Instances"][0]
    raise RuntimeError("no study in Orthanc holds both cxrtriage series")


def validate_srs(srs: list[Any], folder: Path) -> tuple[int, list[str]]:
    """How many SRs read back as a highdicom Comprehensive SR (and pass dciodvfy with no Error line, where dicom3tools
    is installed); the first problems found, without identifiers."""
    import highdicom as hd

    folder.mkdir(parents=True, exist_ok=True)
    dciodvfy = shutil.which("dciodvfy")
    valid, problems = 0, []
    for i, sr in enumerate(srs):
        try:
            hd.sr.ComprehensiveSR.from_dataset(sr)
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            problems.append(f"SR {i}: highdicom cannot read it ({type(exc).__name__})")
            continue
        if dciodvfy:
            path = folder / f"sr-{i}.dcm"
            sr.save_as(path, enforce_file_format=True)
            out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
            errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
            if errors:
                # the count only: dciodvfy may quote attribute values, and this line is printed
                problems.append(f"SR {i}: {len(errors)} Error line(s) from dciodvfy (run it on the SR to see them)")
                continue
        valid += 1
    return valid, problems


def check_results(stack: Stack) -> Report:
    """Every instance sent has an SR in Orthanc, in its own study, with the expected category; C-FIND finds an SR
    series in every study; the counts add up; the worklist holds every triaged instance in reading order."""
    report = Report()
    sent, ports, status = stack.sent, stack.ports, stack.status
    srs = orthanc_srs(stack.orthanc_base)
    print(f"pacs-demo: {len(srs)} SR instances in Orthanc for {len(sent)} instances sent", flush=True)
    for item in sent:
        mine = [sr for sr in srs if item.sop_instance_uid in _referenced(sr)]
        same_study = all(str(sr.StudyInstanceUID) == item.study_instance_uid for sr in mine)
        categories = sorted({_category(sr) for sr in mine})
        expected = (
            categories == ["Not triaged"]
            if item.expect == "not_triaged"
            else (bool(categories) and "Not triaged" not in categories)
        )
        report.check(
            f"{item.name}: SR in Orthanc references it, in its study ({item.expect})",
            bool(mine) and same_study and expected,
            f"{len(mine)} SR, category {', '.join(categories) or '-'}",
        )
    valid, problems = validate_srs(srs, stack.workdir / "sr-check")
    report.check(
        "every SR in Orthanc reads back with highdicom"
        + (" and passes dciodvfy" if shutil.which("dciodvfy") else " (dciodvfy not installed)"),
        valid == len(srs) and bool(srs),
        f"{valid} of {len(srs)}" + (f"; {problems[0]}" if problems else ""),
    )
    studies = sorted({i.study_instance_uid for i in sent})
    found = sum(findscu_sr_series(uid, ports.orthanc_dicom) > 0 for uid in studies)
    report.check(
        "findscu (C-FIND) finds an SR series in every study sent",
        found == len(studies),
        f"{found} of {len(studies)} studies",
    )
    triaged = sum(i.expect == "triaged" for i in sent)
    report.check(
        "node counts: every instance answered, every result stored",
        status.get("triaged") == triaged
        and status.get("not_triaged") == len(sent) - triaged
        and not status.get("results_send_failed")
        and not status.get("failed"),
        ", ".join(f"{k}={v}" for k, v in status.items() if isinstance(v, int) and v),
    )
    items = json.loads(_get(f"{stack.ui_base}/worklist"))["items"]
    ranks = ["overdue", "urgent", "routine"]
    in_order = all(ranks.index(a["priority"]) <= ranks.index(b["priority"]) for a, b in zip(items, items[1:]))
    report.check(
        "worklist (GET /worklist): every triaged instance, in reading order",
        len(items) == triaged and in_order,
        " > ".join(f"{i['label']}{' (review)' if i['needs_review'] else ''}" for i in items),
    )
    return report
