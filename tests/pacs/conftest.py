"""Shared by the DICOM node's tests: a throwaway PKI for DICOM over TLS, made with ``cryptography`` in the test's own
temporary folder (a CA, a server certificate for 127.0.0.1/localhost, a client certificate the CA signed, and a
client certificate from a second, untrusted CA). Nothing leaves the folder; the keys are never reused."""

from __future__ import annotations

import datetime as _dt
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(folder: Path, name: str, cert, key) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _certificate(subject: str, key, issuer=None, issuer_key=None, *, ca: bool = False, server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _dt.datetime.now(_dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``ca``; ``server_cert``/``server_key`` (127.0.0.1, localhost); ``client_cert``/``client_key`` (signed by
    ``ca``); ``rogue_cert``/``rogue_key`` (signed by another CA); ``rogue_ca``."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = _key(), _key()
    ca = _certificate("cxrtriage test CA", ca_key, ca=True)
    rogue_ca = _certificate("someone else's CA", rogue_ca_key, ca=True)
    ca_path, _ = _write(folder, "ca", ca, ca_key)
    rogue_ca_path, _ = _write(folder, "rogue-ca", rogue_ca, rogue_ca_key)
    server_key, client_key, rogue_key = _key(), _key(), _key()
    server = _write(folder, "server", _certificate("localhost", server_key, ca, ca_key, server=True), server_key)
    client = _write(folder, "client", _certificate("MODALITY", client_key, ca, ca_key), client_key)
    rogue = _write(folder, "rogue", _certificate("MODALITY", rogue_key, rogue_ca, rogue_ca_key), rogue_key)
    return SimpleNamespace(
        ca=ca_path,
        rogue_ca=rogue_ca_path,
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_cert=rogue[0],
        rogue_key=rogue[1],
    )


@pytest.fixture(autouse=True)
def _pydicom_reading_restored():
    """A node or poller started in the test process calls ``quiet_header_validation``, which changes pydicom's
    process-wide validation mode and logger level; restore both, so that a later test sees pydicom's defaults
    (``test_node_promises`` failed when ``test_pacs_node`` ran first)."""
    import logging

    from pydicom import config as pydicom_config

    mode = pydicom_config.settings.reading_validation_mode
    logger = logging.getLogger("pydicom")
    level = logger.level
    yield
    pydicom_config.settings.reading_validation_mode = mode
    logger.setLevel(level)
