"""``cxrtriage serve --ssl-certfile/--ssl-keyfile``: the service speaks HTTPS (uvicorn's TLS), checked against a
self-signed certificate made here with cryptography, and refuses plain HTTP on that port."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_over_https_with_the_given_certificate(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "CXRTRIAGE_UI": "false",
        "CXRTRIAGE_WARMUP": "false",
        "CXRTRIAGE_CROPS_DIR": str(tmp_path / "crops"),
        "CXRTRIAGE_WORKLIST_PATH": str(tmp_path / "state" / "worklist.sqlite"),
    }
    command = [sys.executable, "-m", "cxrtriage.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/health", context=context, timeout=5) as r:
                    assert r.status == 200 and b'"ok"' in r.read()
                    break
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # not plain HTTP on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"https://127.0.0.1:{port}/ui" in output
