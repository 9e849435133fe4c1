"""What the DICOM node promises a PACS administrator and a security reviewer (docs/INTEGRATION.md), each checked
through a real association: an instance it cannot file is answered 0xC210 and never acknowledged; an instance over
``--max-instance-mb`` is answered 0xA700 before it is read; a refused association is logged with the reason; header
text cannot forge a log line; results on the worklist name their crops by URL, never by a server path; what was
acknowledged before an unclean stop is triaged at the next start."""

from __future__ import annotations

import copy
import logging
import socket

import pydicom
import pytest

pytest.importorskip("pynetdicom", reason="the DICOM node needs the [interop] extra")

from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage  # noqa: E402

from cxrtriage.log_text import loggable  # noqa: E402
from cxrtriage.pacs.delivery import Destination  # noqa: E402
from cxrtriage.pacs.handling import InstanceHandler  # noqa: E402
from cxrtriage.pacs.instance import worklist_key  # noqa: E402
from cxrtriage.pacs.node import DicomNode, NodeConfig, destination_sender  # noqa: E402
from cxrtriage.pacs.synthetic import dicom_from_picture  # noqa: E402
from cxrtriage.worklist import Worklist  # noqa: E402

CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0xC210, 0xA700


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Archive:
    """A Storage SCP standing in for the PACS."""

    def __init__(self) -> None:
        self.port, self.received = _port(), []
        ae = AE(ae_title="ARCHIVE")
        ae.add_supported_context(ComprehensiveSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event) -> int:
        self.received.append(event.dataset)
        return 0x0000


def _send(port: int, items, calling: str = "MODALITY") -> list[int | None]:
    """C-STORE each item (a dataset, or a file path sent as it is) over one association; the statuses."""
    ae = AE(ae_title=calling)
    for item in items:
        ds = item if isinstance(item, pydicom.Dataset) else pydicom.dcmread(item)
        ae.add_requested_context(ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAGE")
    if not assoc.is_established:
        return [None] * len(items)
    statuses = [getattr(assoc.send_c_store(item), "Status", None) for item in items]
    assoc.release()
    return statuses


@pytest.fixture(scope="module")
def film(data_dir, tmp_path_factory):
    """A CR of a real NIH film (triaged Urgent, with evidence crops) under synthetic identifiers."""
    png = next(data_dir.joinpath("nih").rglob("*.png"))
    folder = tmp_path_factory.mktemp("promises")
    return dicom_from_picture(png, folder / "cr.dcm", patient_id="SYN0042", accession="ACC0042")


@pytest.fixture()
def node_with(engine, tmp_path):
    """``node_with(**config)``: a started node sending to a fresh archive and filing on a fresh worklist."""
    started = []

    def make(**config):
        archive = Archive()
        worklist = Worklist(tmp_path / "worklist.sqlite")
        handler = InstanceHandler(
            engine,
            destination_sender(Destination("127.0.0.1", archive.port, "ARCHIVE"), "CXRTRIAGE"),
            worklist=worklist,
            secondary_capture=False,
        )
        node = DicomNode(NodeConfig(port=_port(), **config), handler)
        node.start()
        started.append((node, archive))
        return node, archive, worklist

    yield make
    for node, archive in started:
        node.stop()
        archive.server.shutdown()


def test_an_instance_without_its_uids_is_refused_never_acknowledged(node_with, film, tmp_path, caplog, monkeypatch):
    from pynetdicom import _config

    caplog.set_level(logging.INFO, logger="cxrtriage")
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # a file is sent as it is, by its file meta
    node, archive, worklist = node_with()
    no_study = copy.deepcopy(film)
    del no_study.StudyInstanceUID
    no_sop = copy.deepcopy(film)
    del no_sop.SOPInstanceUID  # the file meta still names it, so a C-STORE can carry it
    no_sop.save_as(tmp_path / "no-sop.dcm", enforce_file_format=True)
    assert _send(node.config.port, [no_study, tmp_path / "no-sop.dcm"]) == [CANNOT_UNDERSTAND] * 2
    assert node.stop()
    assert node.handler.counts.received == 0 and node.handler.counts.unreadable == 2
    assert not archive.received and not worklist.items()  # nothing was taken, so nothing is answered or filed
    refusals = [r.getMessage() for r in caplog.records if "refused (0xC210)" in r.getMessage()]
    assert any("StudyInstanceUID" in m for m in refusals) and any("SOPInstanceUID" in m for m in refusals)
    assert not list(node.spool.glob("*")), "a refused instance must not stay in the spool"


def test_an_instance_over_the_size_limit_is_answered_out_of_resources(node_with, film, caplog):
    caplog.set_level(logging.INFO, logger="cxrtriage")
    node, archive, _ = node_with(max_instance_mb=0.1)  # the film is a 0.26 MB instance
    assert _send(node.config.port, [film]) == [OUT_OF_RESOURCES]
    assert node.stop()
    assert node.handler.counts.refused_too_large == 1 and node.handler.counts.received == 0 and not archive.received
    assert any("over the limit of 0.1 MB (--max-instance-mb)" in r.getMessage() for r in caplog.records)


def test_an_instance_under_the_limit_is_triaged_and_its_crops_are_filed_as_urls(node_with, film, tmp_path):
    node, archive, worklist = node_with(max_instance_mb=2)
    assert _send(node.config.port, [film]) == [0x0000]
    assert node.stop()
    assert node.handler.counts.triaged == 1 and len(archive.received) == 1
    stored = worklist.result(worklist_key(film))
    assert stored is not None and stored["crops"], "the film is triaged with evidence crops"
    for crop in stored["crops"]:  # as POST /predict and the UI file them: URLs the service serves, no server path
        assert crop["thumb_path"].startswith("/static/crops/") and crop["thumb_path"].count("/") == 3
        assert str(tmp_path) not in crop["thumb_path"]


def test_header_text_cannot_forge_a_log_line(node_with, film, caplog):
    caplog.set_level(logging.DEBUG, logger="cxrtriage")
    node, archive, _ = node_with()
    forged = copy.deepcopy(film)
    forged.SOPInstanceUID = pydicom.uid.generate_uid()
    forged.file_meta.MediaStorageSOPInstanceUID = forged.SOPInstanceUID
    with pytest.warns(UserWarning):  # pydicom's warning about a CS value with a newline
        forged.Modality = "OT\n2026-01-01 00:00:00,000 cxrtriage.pacs INFO instance 0: Non-Urgent 0.01"
    assert _send(node.config.port, [forged]) == [0x0000]
    assert node.stop()
    assert len(archive.received) == 1  # answered: "Not triaged", with the (escaped in the log) modality
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("cxrtriage")]
    assert not [m for m in lines if "\n" in m or "\r" in m], "a log record spans two lines"
    assert any("modality OT\\n2026-01-01" in m for m in lines), lines


def test_a_refused_association_is_logged_with_its_reason(node_with, film, caplog):
    caplog.set_level(logging.INFO, logger="cxrtriage")
    node, archive, _ = node_with(allowed_callers=("MODALITY",))
    assert _send(node.config.port, [film], calling="STRANGER") == [None]
    assert node.stop()
    assert node.handler.counts.associations_refused == 1 and not archive.received
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("association refused")]
    assert refused == [
        "association refused: calling AE title not allowed (--allow-caller) "
        "(calling AE STRANGER, called AE CXRTRIAGE, from 127.0.0.1)"
    ]
    assert "SYN0042" not in caplog.text and "ACC0042" not in caplog.text


def test_what_was_acknowledged_before_an_unclean_stop_is_triaged_at_the_next_start(node_with, film, tmp_path):
    spool = tmp_path / "incoming"
    spool.mkdir()
    film.save_as(spool / "00000000000000000001-abcd.dcm", enforce_file_format=True)  # as a crash left it
    node, archive, worklist = node_with(spool_dir=spool)
    assert node.stop()
    assert node.handler.counts.triaged == 1 and len(archive.received) == 1 and worklist.result(worklist_key(film))
    assert not list(spool.iterdir()) and (spool.stat().st_mode & 0o777) == 0o700


def test_loggable_escapes_every_control_character_and_caps_the_length():
    assert loggable("a\nb\r\tc\x1b[31m\x00\x7f\x85\u2028") == "a\\nb\\r\\tc\\x1b[31m\\x00\\x7f\\x85\\u2028"
    assert loggable("back\\nslash") == "back\\\\nslash"  # an escape cannot be faked by the sender
    assert loggable("Ünïcode fine") == "Ünïcode fine"
    assert loggable("x" * 1000, limit=10) == "x" * 10 + "..."


def test_cli_refuses_a_bad_limit_and_half_a_tls_configuration(capsys, tmp_path):
    from cxrtriage.cli.main import main

    assert main(["dicom-node", "--max-instance-mb", "0"]) == 2
    assert "--max-instance-mb must be a positive" in capsys.readouterr().err
    assert main(["dicom-node", "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "needs both --tls-cert and --tls-key" in capsys.readouterr().err
    assert main(["dicom-node", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["dicom-node", "--destination", "PACS@127.0.0.1:104", "--destination-ca", "ca.pem"]) == 2
    assert "need --destination-tls" in capsys.readouterr().err
    assert main(["dicom-node", "--destination-tls"]) == 2
    assert "--destination-tls needs a --destination" in capsys.readouterr().err


def test_the_node_process_does_not_let_pydicom_quote_header_values(film, tmp_path, monkeypatch, caplog, request):
    """pydicom's validation of what it reads logs the invalid value word for word (here a forged line); the node
    and poller processes turn that off (``quiet_header_validation``, called when they configure logging)."""
    import warnings

    from pydicom import config as pydicom_config

    from cxrtriage.cli.pacs import quiet_header_validation

    settings = pydicom_config.settings
    monkeypatch.setattr(settings, "reading_validation_mode", pydicom_config.WARN)  # pydicom's default
    pydicom_log = logging.getLogger("pydicom")
    request.addfinalizer(lambda level=pydicom_log.level: pydicom_log.setLevel(level))  # setLevel clears the cache
    pydicom_log.setLevel(logging.NOTSET)
    path = tmp_path / "forged.dcm"
    forged = copy.deepcopy(film)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forged.Modality = "CR\nDOE^JOHN forged line, longer than a CS"
    forged.save_as(path, enforce_file_format=True)
    caplog.set_level(logging.DEBUG)
    str(pydicom.dcmread(path).Modality)
    assert "DOE^JOHN forged line" in caplog.text  # the default: the value, newline and all, in the log
    caplog.clear()
    quiet_header_validation()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        str(pydicom.dcmread(path).Modality)
    assert not caught and "DOE^JOHN" not in caplog.text
