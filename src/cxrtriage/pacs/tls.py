"""DICOM over TLS for the node (Storage SCP) and for its results (C-STORE to the PACS), with Python's ``ssl`` and
pynetdicom's own TLS support (``ssl_context`` on ``AE.start_server``, ``tls_args`` on ``AE.associate``); no
cryptography of our own.

Both directions speak TLS 1.2 or newer only. The node presents ``--tls-cert``/``--tls-key``; with ``--tls-ca`` it
requires a client certificate signed by that CA (mutual TLS, the DICOM Basic TLS Secure Transport profile), without
it it asks for none and encrypts only. Calling AE titles (``--allow-caller``) stay a second check on top. A
handshake that fails (a plain DICOM peer on the TLS port, a client certificate the CA did not sign, an old protocol)
is logged with its address and reason, never silently dropped: pynetdicom handshakes inside its accept loop and
drops failures without a word, so :func:`log_tls_failures` moves the handshake into the connection's own thread,
with a time limit, where it can be logged (and where a peer that never speaks cannot hold the accept loop).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtriage.log_text import loggable

log = logging.getLogger("cxrtriage.pacs")

#: seconds a peer has to finish the TLS handshake
HANDSHAKE_TIMEOUT_S = 30.0


class TlsConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the option and the file."""


@dataclass(frozen=True)
class TlsFiles:
    """Certificate files as given on the command line (paths); :meth:`server_context` / :meth:`client_context`
    turn them into an ``ssl.SSLContext``."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        """The node's context: its certificate and key; client certificates required and checked against ``ca``
        when given, not asked for otherwise."""
        if self.cert is None or self.key is None:
            raise TlsConfigError("DICOM over TLS needs both --tls-cert and --tls-key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_chain(context, self.cert, self.key, "--tls-cert", "--tls-key")
        if self.ca is not None:
            _load_ca(context, self.ca, "--tls-ca")
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, option: str = "--destination-ca") -> ssl.SSLContext:
        """A context for sending to a TLS destination: its certificate verified (against ``ca``, else the system's
        trust store) and its host name checked; our own certificate presented when ``cert`` and ``key`` are given
        (a PACS that requires client certificates)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is not None:
            _load_ca(context, self.ca, option)
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError("a client certificate needs both --destination-cert and --destination-key")
        if self.cert is not None and self.key is not None:
            _load_chain(context, self.cert, self.key, "--destination-cert", "--destination-key")
        return context


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path, cert_option: str, key_option: str) -> None:
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise TlsConfigError(f"{cert_option}/{key_option}: no such file {exc.filename or cert}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"{cert_option} {cert} and {key_option} {key} are not a PEM certificate and its private key "
            f"({getattr(exc, 'reason', None) or type(exc).__name__})"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path, option: str) -> None:
    try:
        context.load_verify_locations(cafile=str(ca))
    except FileNotFoundError:
        raise TlsConfigError(f"{option}: no such file {ca}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"{option} {ca} is not a PEM CA certificate ({getattr(exc, 'reason', None) or type(exc).__name__})"
        ) from None


def describe_tls_error(exc: BaseException) -> str:
    """A short reason for a failed handshake (OpenSSL's reason code, e.g. ``WRONG_VERSION_NUMBER`` for a plain DICOM
    peer, ``CERTIFICATE_VERIFY_FAILED`` or ``PEER_DID_NOT_RETURN_A_CERTIFICATE`` for a refused client)."""
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or getattr(exc, "verify_message", None) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return f"no handshake within {HANDSHAKE_TIMEOUT_S:.0f} s"
    return type(exc).__name__


def log_tls_failures(server: Any, context: ssl.SSLContext, on_refused: Any = None) -> None:
    """Make a pynetdicom ``AssociationServer`` started with ``ssl_context=context`` handshake in each connection's
    thread, log every failed handshake (peer address and reason) and call ``on_refused()`` for it.

    The server keeps ``ssl_context`` set, so a connection accepted before this runs is still TLS (only not logged);
    afterwards each accepted socket is wrapped without a handshake in the accept loop, and the handshake runs, with
    :data:`HANDSHAKE_TIMEOUT_S`, before pynetdicom reads the association request from it."""
    original_finish = server.finish_request

    def get_request() -> tuple[ssl.SSLSocket, tuple[str, int]]:
        client, address = server.socket.accept()
        return context.wrap_socket(client, server_side=True, do_handshake_on_connect=False), address

    def finish_request(request: ssl.SSLSocket, address: tuple[str, int]) -> None:
        before = request.gettimeout()
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            request.do_handshake()
            request.settimeout(before)
        except (ssl.SSLError, OSError) as exc:
            log.warning(
                "association refused: TLS handshake from %s failed (%s)",
                loggable(address[0] if isinstance(address, tuple) else address),
                loggable(describe_tls_error(exc)),
            )
            if on_refused is not None:
                on_refused()
            request.close()
            return
        original_finish(request, address)

    server.get_request = get_request
    server.finish_request = finish_request
