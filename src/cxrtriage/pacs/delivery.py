"""Sending results where they belong: DICOM datasets to a C-STORE destination (the PACS), a FHIR DiagnosticReport to
an EHR endpoint, and the result onto the reading worklist. Each returns whether it worked and logs failures by type
only, never with an identifier; the caller counts them."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import ssl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Destination:
    """A DICOM application entity results are sent to."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@host:port`` (e.g. ``ORTHANC@127.0.0.1:4242``) -> Destination; ValueError with the expected form."""
        try:
            ae_title, address = text.split("@", 1)
            host, port = address.rsplit(":", 1)
            destination = cls(host, int(port), ae_title)
        except ValueError:
            raise ValueError(
                f"destination must look like AE@host:port, e.g. ORTHANC@127.0.0.1:4242 (got {text!r})"
            ) from None
        if not 0 < destination.port < 65536 or not 0 < len(ae_title) <= 16:
            raise ValueError("destination port must be 1-65535 and its AE title 1-16 characters")
        return destination


def send_datasets(
    datasets: list[Any],
    destination: Destination,
    calling_ae: str,
    timeout_s: float = 30.0,
    *,
    tls: ssl.SSLContext | None = None,
) -> bool:
    """C-STORE every dataset to ``destination`` over one association (over TLS with ``tls``, the destination's
    certificate checked against its host name: :meth:`cxrtriage.pacs.tls.TlsFiles.client_context`); True when every
    store succeeded."""
    from pynetdicom import AE

    if not datasets:
        return True
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = min(timeout_s, 10.0)  # an unreachable host must not hold the queue for minutes
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    tls_args = (tls, destination.host) if tls is not None else None
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        log.error(
            "C-STORE destination %s refused or unreachable%s",
            destination.ae_title,
            " (over TLS: check --destination-ca and the PACS's certificate)" if tls is not None else "",
        )
        return False
    ok = True
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code != 0x0000:
                ok = False
                log.error(
                    "C-STORE to %s failed with status %s",
                    destination.ae_title,
                    "none (no response)" if code is None else f"0x{code:04X}",
                )
    finally:
        assoc.release()
    return ok


def post_fhir(report: dict, endpoint: str, timeout_s: float = 10.0) -> bool:
    """POST a DiagnosticReport to ``<endpoint>/DiagnosticReport``; True on a 2xx answer. Only an http(s) endpoint is
    posted to (urllib would also open a ``file:`` URL)."""
    if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        log.error("FHIR endpoint is not an http:// or https:// URL; the report was not sent")
        return False
    url = endpoint.rstrip("/") + "/DiagnosticReport"
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url,
        data=json.dumps(report).encode(),
        method="POST",
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only, checked above
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        log.error("FHIR endpoint did not take the report (%s)", type(exc).__name__)
        return False
