"""DICOM over TLS, as a hospital would run it: dcmtk's ``storescu +tls`` (the modality) against the node, with a CA,
server and client certificates made for the test (``tls_files`` in conftest). A client the CA signed gets its
instance triaged and answered; a plain DICOM peer on the TLS port and a client certificate from another CA are
refused and logged; without ``--tls-ca`` no client certificate is asked for. Results go to a PACS that speaks TLS
(a pynetdicom SCP with its own certificate) only when its certificate is trusted."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="the DICOM node needs the [interop] extra")

from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import ComprehensiveSRStorage, ComputedRadiographyImageStorage  # noqa: E402

from cxrtriage.pacs.delivery import Destination, send_datasets  # noqa: E402
from cxrtriage.pacs.handling import InstanceHandler  # noqa: E402
from cxrtriage.pacs.node import DicomNode, NodeConfig, destination_sender  # noqa: E402
from cxrtriage.pacs.synthetic import dicom_from_picture  # noqa: E402
from cxrtriage.pacs.tls import TlsConfigError, TlsFiles  # noqa: E402

STORESCU = shutil.which("storescu")
needs_dcmtk = pytest.mark.skipif(STORESCU is None, reason="needs dcmtk's storescu (apt-get install dcmtk)")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pacs:
    """A Storage SCP standing in for the PACS, over TLS when given a context."""

    def __init__(self, ssl_context=None) -> None:
        self.port, self.received = _port(), []
        ae = AE(ae_title="ARCHIVE")
        for sop_class in (ComprehensiveSRStorage, ComputedRadiographyImageStorage):
            ae.add_supported_context(sop_class)
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
            ssl_context=ssl_context,
        )

    def _store(self, event) -> int:
        self.received.append(event.dataset)
        return 0x0000


@pytest.fixture(scope="module")
def film_path(data_dir, tmp_path_factory) -> Path:
    png = next(data_dir.joinpath("nih").rglob("*.png"))
    path = tmp_path_factory.mktemp("tls") / "cr.dcm"
    dicom_from_picture(png, path, patient_id="SYN0042", accession="ACC0042")
    return path


@pytest.fixture()
def tls_node(engine, tls_files):
    """``tls_node(require_client_certificates)``: a started TLS node (callers: MODALITY) answering to a plain
    archive."""
    started = []

    def make(require: bool):
        archive = Pacs()
        handler = InstanceHandler(
            engine,
            destination_sender(Destination("127.0.0.1", archive.port, "ARCHIVE"), "CXRTRIAGE"),
            secondary_capture=False,
        )
        files = TlsFiles(tls_files.server_cert, tls_files.server_key, tls_files.ca if require else None)
        config = NodeConfig(port=_port(), allowed_callers=("MODALITY",), tls=files.server_context())
        node = DicomNode(config, handler)
        node.start()
        started.append((node, archive))
        return node, archive

    yield make
    for node, archive in started:
        node.stop()
        archive.server.shutdown()


def _storescu(port: int, path: Path, *tls: str) -> subprocess.CompletedProcess:
    command = [STORESCU, *tls, "-aet", "MODALITY", "-aec", "CXRTRIAGE", "127.0.0.1", str(port), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@needs_dcmtk
def test_storescu_over_tls_with_a_client_certificate_is_triaged_and_answered(tls_node, tls_files, film_path):
    node, archive = tls_node(require=True)
    tls = ("+tls", str(tls_files.client_key), str(tls_files.client_cert), "+cf", str(tls_files.ca))
    with socket.create_connection(("127.0.0.1", node.config.port)):  # a peer that connects and never speaks
        done = _storescu(node.config.port, film_path, *tls)  # is not waited for: handshakes run per connection
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while node.handler.counts.associations_refused < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.stop()
    assert node.handler.counts.received == 1 and node.handler.counts.triaged == 1
    assert [str(ds.Modality) for ds in archive.received] == ["SR"]
    assert node.handler.counts.associations_refused == 1  # the silent peer, once it hung up


@needs_dcmtk
def test_plain_dicom_on_the_tls_port_is_refused_and_logged(tls_node, film_path, caplog):
    caplog.set_level(logging.INFO, logger="cxrtriage")
    node, archive = tls_node(require=True)
    assert _storescu(node.config.port, film_path).returncode != 0
    assert node.stop()
    assert node.handler.counts.received == 0 and not archive.received
    assert node.handler.counts.associations_refused == 1
    refused = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(refused) == 1 and refused[0].startswith("association refused: TLS handshake from 127.0.0.1 failed (")


@needs_dcmtk
def test_a_client_certificate_the_ca_did_not_sign_is_refused(tls_node, tls_files, film_path, caplog):
    caplog.set_level(logging.INFO, logger="cxrtriage")
    node, archive = tls_node(require=True)
    rogue = ("+tls", str(tls_files.rogue_key), str(tls_files.rogue_cert), "+cf", str(tls_files.ca))
    assert _storescu(node.config.port, film_path, *rogue).returncode != 0
    anonymous = ("+tla", "+cf", str(tls_files.ca))  # no certificate at all
    assert _storescu(node.config.port, film_path, *anonymous).returncode != 0
    assert node.stop()
    assert node.handler.counts.received == 0 and not archive.received
    reasons = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(reasons) == 2 and node.handler.counts.associations_refused == 2
    assert "CERTIFICATE" in reasons[0].upper(), reasons  # OpenSSL's reason: the certificate failed verification


@needs_dcmtk
def test_without_a_ca_no_client_certificate_is_asked_for_and_ae_titles_still_count(tls_node, tls_files, film_path):
    node, archive = tls_node(require=False)
    anonymous = ("+tla", "+cf", str(tls_files.ca))
    assert _storescu(node.config.port, film_path, *anonymous).returncode == 0
    stranger = [STORESCU, *anonymous, "-aet", "STRANGER", "-aec", "CXRTRIAGE", "127.0.0.1", str(node.config.port)]
    assert subprocess.run([*stranger, str(film_path)], capture_output=True, timeout=120).returncode != 0
    assert node.stop()
    assert node.handler.counts.triaged == 1 and node.handler.counts.associations_refused == 1


def test_results_go_to_a_tls_pacs_only_when_its_certificate_is_trusted(tls_files, film_path):
    import pydicom

    pacs = Pacs(TlsFiles(tls_files.server_cert, tls_files.server_key, tls_files.ca).server_context())
    destination, dataset = Destination("127.0.0.1", pacs.port, "ARCHIVE"), pydicom.dcmread(film_path)
    try:
        trusted = TlsFiles(tls_files.client_cert, tls_files.client_key, tls_files.ca).client_context()
        assert send_datasets([dataset], destination, "CXRTRIAGE", tls=trusted)
        assert len(pacs.received) == 1
        untrusted = TlsFiles(tls_files.client_cert, tls_files.client_key, tls_files.rogue_ca).client_context()
        assert not send_datasets([dataset], destination, "CXRTRIAGE", timeout_s=5, tls=untrusted)
        no_client_certificate = TlsFiles(ca=tls_files.ca).client_context()
        assert not send_datasets([dataset], destination, "CXRTRIAGE", timeout_s=5, tls=no_client_certificate)
        assert not send_datasets([dataset], destination, "CXRTRIAGE", timeout_s=5)  # plain DICOM to a TLS PACS
        assert len(pacs.received) == 1
    finally:
        pacs.server.shutdown()


def test_bad_certificate_files_are_named(tls_files, tmp_path):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(TlsConfigError, match="--tls-cert .* and --tls-key .* are not a PEM certificate"):
        TlsFiles(not_pem, tls_files.server_key).server_context()
    with pytest.raises(TlsConfigError, match="--tls-ca .* is not a PEM CA certificate"):
        TlsFiles(tls_files.server_cert, tls_files.server_key, not_pem).server_context()
    with pytest.raises(TlsConfigError, match="both --destination-cert and --destination-key"):
        TlsFiles(cert=tls_files.client_cert).client_context()
    context = TlsFiles(tls_files.server_cert, tls_files.server_key).server_context()
    assert context.minimum_version.name == "TLSv1_2"


@needs_dcmtk
def test_the_cli_node_speaks_tls_from_its_options(tls_files, film_path, tmp_path):
    """``cxrtriage dicom-node --tls-cert --tls-key --tls-ca`` as an operator starts it: a trusted storescu is
    triaged, plain DICOM is refused, the log says so, SIGTERM stops it cleanly."""
    import json
    import os
    import signal
    import sys

    port, status = _port(), tmp_path / "status.json"
    command = [sys.executable, "-m", "cxrtriage.cli.main", "dicom-node", "--port", str(port), "--no-worklist"]
    command += ["--status-file", str(status), "--spool", str(tmp_path / "spool"), "--allow-caller", "MODALITY"]
    command += ["--tls-cert", str(tls_files.server_cert), "--tls-key", str(tls_files.server_key)]
    command += ["--tls-ca", str(tls_files.ca)]
    node = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=dict(os.environ))  # noqa: S603
    try:
        deadline = time.monotonic() + 120
        while not (status.is_file() and json.loads(status.read_text()).get("listening")):
            assert node.poll() is None and time.monotonic() < deadline, "the node did not start"
            time.sleep(0.2)
        tls = ("+tls", str(tls_files.client_key), str(tls_files.client_cert), "+cf", str(tls_files.ca))
        assert _storescu(port, film_path, *tls).returncode == 0
        assert _storescu(port, film_path).returncode != 0
    finally:
        node.send_signal(signal.SIGTERM)
        _, log = node.communicate(timeout=120)
    assert node.returncode == 0, log
    counts = json.loads(status.read_text())
    assert counts["triaged"] + counts["not_triaged"] == 1 and counts["associations_refused"] == 1
    assert "DICOM over TLS (client certificates required)" in log
    assert "association refused: TLS handshake from 127.0.0.1 failed (" in log
    assert "SYN0042" not in log and "ACC0042" not in log
