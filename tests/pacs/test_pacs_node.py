"""The DICOM node in process: a real pynetdicom association as the modality, a real Storage SCP as the destination
(what the node C-STOREs back), a real HTTP server as the FHIR endpoint. What a PACS administrator relies on: every
instance is answered, a refused one with an SR that says why; only allowed callers get in; a full queue asks the
sender to retry; shutdown finishes the queue; no log line holds an identifier."""

from __future__ import annotations

import copy
import http.server
import json
import logging
import socket
import threading
import time

import pydicom
import pytest

pytest.importorskip("pynetdicom", reason="the DICOM node needs the [interop] extra")
hd = pytest.importorskip("highdicom", reason="the DICOM node needs the [interop] extra")

from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage  # noqa: E402

from cxrtriage.pacs.delivery import Destination  # noqa: E402
from cxrtriage.pacs.handling import InstanceHandler  # noqa: E402
from cxrtriage.pacs.instance import worklist_key  # noqa: E402
from cxrtriage.pacs.node import DicomNode, NodeConfig, destination_sender  # noqa: E402
from cxrtriage.pacs.synthetic import dicom_from_picture  # noqa: E402
from cxrtriage.worklist import Worklist  # noqa: E402

IDENTIFIERS = ("SYNTHETIC", "SYN0042", "ACC0042")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Archive:
    """A Storage SCP standing in for the PACS: keeps every dataset the node sends back."""

    def __init__(self, port: int | None = None) -> None:
        self.port, self.received = port or _port(), []
        ae = AE(ae_title="ARCHIVE")
        ae.add_supported_context(ComprehensiveSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000


class FhirReceiver(http.server.BaseHTTPRequestHandler):
    reports: list[tuple[str, str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.reports.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory):
    """A synthetic-identifier CR of a real NIH film, the same film claimed as OT, a lateral, and the shared JPEG
    DICOM."""
    from cxrtriage.data import lateral_paths

    folder = tmp_path_factory.mktemp("pacs-inputs")
    png = next(data_dir.joinpath("nih").rglob("*.png"))
    broken = dicom_from_picture(png, folder / "broken.dcm", patient_id="SYN0042", accession="ACC0042")
    broken.PixelData = broken.PixelData[:1000]  # a truncated transfer: the header is fine, the pixels are not
    return {
        "broken": broken,
        "cr": dicom_from_picture(png, folder / "cr.dcm", patient_id="SYN0042", accession="ACC0042"),
        "ot": dicom_from_picture(png, folder / "ot.dcm", patient_id="SYN0042", accession="ACC0042", modality="OT"),
        "lateral": dicom_from_picture(
            lateral_paths(data_dir)[0],
            folder / "lat.dcm",
            patient_id="SYN0042",
            accession="ACC0042",
            view_position="LL",
        ),
        "jpeg": pydicom.dcmread(data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"),
    }


@pytest.fixture()
def running(engine, tmp_path):
    """A node sending to a fresh archive and a fresh FHIR receiver; stopped after the test."""
    archive = Archive()
    fhir = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FhirReceiver)
    FhirReceiver.reports = []
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    worklist = Worklist(tmp_path / "worklist.sqlite")
    handler = InstanceHandler(
        engine,
        destination_sender(Destination("127.0.0.1", archive.port, "ARCHIVE"), "CXRTRIAGE"),
        worklist=worklist,
        fhir_endpoint=f"http://127.0.0.1:{fhir.server_port}/fhir",
        status_path=tmp_path / "status.json",
    )
    node = DicomNode(NodeConfig(port=_port(), allowed_callers=("MODALITY",), queue_size=4), handler)
    node.start()
    yield node, archive, worklist
    node.stop()
    archive.server.shutdown()
    fhir.shutdown()


def _send(port: int, datasets, calling: str = "MODALITY") -> list[int | None]:
    ae = AE(ae_title=calling)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAGE")
    if not assoc.is_established:
        return [None] * len(datasets)
    statuses = [getattr(assoc.send_c_store(ds), "Status", None) for ds in datasets]
    assoc.release()
    return statuses


def test_every_instance_is_answered_and_refusals_say_why(running, inputs, caplog, dciodvfy_errors, tmp_path):
    node, archive, worklist = running
    caplog.set_level(logging.DEBUG)
    sent = [inputs["cr"], inputs["ot"], inputs["lateral"], inputs["jpeg"], inputs["broken"]]
    assert _send(node.config.port, sent) == [0x0000] * 5  # each acknowledged on arrival
    assert node.stop()  # drains the queue before returning
    by_source = {}
    for ds in archive.received:
        ref = ds.get("CurrentRequestedProcedureEvidenceSequence") or ds.get("SourceImageSequence")
        assert str(ds.StudyInstanceUID) in {str(s.StudyInstanceUID) for s in sent}  # files with its study
        by_source.setdefault((ds.SOPClassUID, ds.Modality), []).append(ds)
        assert ref is not None
    srs = [ds for ds in archive.received if ds.Modality == "SR"]
    assert len(srs) == 5  # one SR per instance, refused ones included
    texts = {}
    for sr in srs:
        report = (
            hd.sr.srread_dataset(sr) if hasattr(hd.sr, "srread_dataset") else hd.sr.ComprehensiveSR.from_dataset(sr)
        )
        source = (
            report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        )
        texts[source.ReferencedSOPInstanceUID] = _texts(report)
        path = tmp_path / f"{sr.SOPInstanceUID}.dcm"
        sr.save_as(path, enforce_file_format=True)
        assert not dciodvfy_errors(path)
    assert any("modality OT" in t for t in texts[str(inputs["ot"].SOPInstanceUID)])
    assert any("lateral" in t for t in texts[str(inputs["lateral"].SOPInstanceUID)])
    assert any("pixel" in t.lower() for t in texts[str(inputs["broken"].SOPInstanceUID)]), texts[
        str(inputs["broken"].SOPInstanceUID)
    ]
    assert any("decision support" in t.lower() for t in texts[str(inputs["cr"].SOPInstanceUID)])
    # the two triaged instances also get a Secondary Capture with the boxes burned in, and a worklist row
    assert sum(ds.Modality != "SR" for ds in archive.received) == 2
    rows = {item["key"]: item for item in worklist.items()}
    assert worklist_key(inputs["cr"]) in rows and len(rows) == 2
    cr = rows[worklist_key(inputs["cr"])]  # the columns a reader knows, from the header the node received
    when = (str(inputs["cr"].StudyDate), str(inputs["cr"].StudyTime))
    assert (cr["accession"], cr["view"], cr["modality"], cr["state"]) == ("ACC0042", "PA", "CR", "new")
    assert (cr["study_date"].replace("-", ""), cr["study_time"].replace(":", "")) == (when[0], when[1][:4])
    assert node.handler.counts.triaged == 2 and node.handler.counts.not_triaged == 3
    assert node.handler.counts.fhir_sent == 2 and len(FhirReceiver.reports) == 2
    path, content_type, report = FhirReceiver.reports[0]
    assert path == "/fhir/DiagnosticReport" and content_type == "application/fhir+json"
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "preliminary"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["triaged"] == 2 and status["results_sent"] == 7 and status["listening"] is False
    # cxrtriage's own lines (the CLI also turns pynetdicom's and highdicom's chatty loggers down to warnings)
    log_text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cxrtriage")) + json.dumps(status)
    assert "instance " in log_text
    assert not [i for i in IDENTIFIERS if i in log_text]
    assert str(inputs["cr"].SOPInstanceUID) not in log_text and str(inputs["jpeg"].PatientID or "x") not in log_text


def _texts(report) -> list[str]:
    """Every TEXT value anywhere in an SR's content tree."""
    out, stack = [], list(report.ContentSequence)
    while stack:
        item = stack.pop()
        if item.ValueType == "TEXT":
            out.append(str(item.TextValue))
        stack.extend(item.get("ContentSequence", []))
    return out


def test_only_allowed_callers_get_in(running, inputs):
    node, archive, _ = running
    assert _send(node.config.port, [inputs["cr"]], calling="STRANGER") == [None]  # association rejected
    node.stop()
    assert node.handler.counts.received == 0 and not archive.received


def test_a_full_queue_asks_the_sender_to_retry_and_loses_nothing_it_accepted(engine, inputs, tmp_path):
    archive = Archive()
    handler = InstanceHandler(
        engine,
        destination_sender(Destination("127.0.0.1", archive.port, "ARCHIVE"), "CXRTRIAGE"),
        secondary_capture=False,
    )
    gate = threading.Event()
    original = handler.handle
    handler.handle = lambda data: (gate.wait(30), original(data))[1]  # hold the worker so the queue fills
    node = DicomNode(NodeConfig(port=_port(), queue_size=2), handler)
    node.start()
    statuses = _send(node.config.port, [inputs["cr"]] * 5)
    gate.set()
    assert node.stop()
    accepted = statuses.count(0x0000)
    assert 0xA700 in statuses and accepted >= 2  # out of resources: the modality keeps the rest and retries
    assert handler.counts.refused_busy == statuses.count(0xA700)
    assert handler.counts.triaged == accepted and len(archive.received) == accepted  # every accepted one answered
    archive.server.shutdown()


def test_destination_is_parsed_or_refused_with_the_form():
    assert Destination.parse("ORTHANC@127.0.0.1:4242") == Destination("127.0.0.1", 4242, "ORTHANC")
    for bad in ("ORTHANC", "ORTHANC@host", "@h:1", "A@h:0", "WAY_TOO_LONG_AE_TITLE@h:1"):
        with pytest.raises(ValueError, match="AE"):
            Destination.parse(bad)


def test_worklist_key_uses_the_accession_and_never_the_patient(inputs):
    key = worklist_key(inputs["cr"])
    assert key.startswith("ACC0042-") and "SYN" not in key
    no_accession = copy.deepcopy(inputs["cr"])  # a shallow copy would change the shared dataset's element
    no_accession.AccessionNumber = "a name, with spaces"
    assert worklist_key(no_accession).startswith("instance-")


def test_cli_errors_are_one_sentence(capsys):
    from cxrtriage.cli.main import main

    assert main(["dicom-node", "--destination", "nonsense"]) == 2
    assert "AE@host:port" in capsys.readouterr().err
    assert main(["orthanc-pull", "--url", f"http://127.0.0.1:{_port()}", "--once", "--no-worklist"]) == 2
    assert "unreachable" in capsys.readouterr().err


def test_an_unwritable_worklist_is_a_configuration_error(capsys):
    from cxrtriage.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["dicom-node", "--worklist", "/proc/not-here/worklist.sqlite", "--port", str(_port())])
    assert exited.value.code == 2 and "--no-worklist" in capsys.readouterr().err


def test_results_the_pacs_refused_wait_in_the_outbox_and_go_when_it_is_back(engine, inputs, tmp_path):
    """The archive is down when the instance arrives: the SR waits on disk (mode 0700), nothing is lost, and it is
    delivered once the archive listens again."""
    from cxrtriage.pacs.outbox import Outbox

    port = _port()  # nothing listens here yet
    outbox = Outbox(tmp_path / "outbox")
    handler = InstanceHandler(
        engine,
        destination_sender(Destination("127.0.0.1", port, "ARCHIVE"), "CXRTRIAGE"),
        secondary_capture=False,
        outbox=outbox,
    )
    node = DicomNode(NodeConfig(port=_port(), retry_s=0.5), handler)
    node.start()
    assert _send(node.config.port, [inputs["cr"], inputs["ot"]]) == [0x0000, 0x0000]
    deadline = time.monotonic() + 60
    while handler.counts.results_waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert handler.counts.results_waiting == 2 and handler.counts.results_sent == 0
    assert (outbox.folder.stat().st_mode & 0o777) == 0o700
    archive = Archive(port)  # the archive comes back on the same port
    while len(archive.received) < 2 and time.monotonic() < deadline:  # re-sent by the idle worker
        time.sleep(0.2)
    assert node.stop()
    archive.server.shutdown()
    assert sorted(str(ds.SOPClassUID) for ds in archive.received) == [str(ComprehensiveSRStorage)] * 2
    assert handler.counts.results_waiting == 0 and handler.counts.results_sent == 2 and not outbox.pending()
