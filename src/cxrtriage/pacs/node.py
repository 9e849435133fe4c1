"""``cxrtriage dicom-node``: a DICOM Storage SCP (pynetdicom) that triages every chest radiograph it receives and
sends the results to a configured destination with C-STORE.

What the sender is told (the promises docs/INTEGRATION.md lists): 0x0000 only once the instance is queued to be
triaged, so an acknowledged instance is always answered; 0xA700 ("out of resources", the sender keeps it and
retries) when the queue is full or the instance is larger than ``max_instance_mb`` (the resource it exceeds is the
node's per-instance budget: the sender's administrator can raise it, and nothing about the instance is wrong);
0xC210 ("cannot understand") when the header cannot be parsed or lacks a UID the node needs to file and answer it
(SOP Class, SOP Instance, Study Instance UID). Memory stays bounded whatever senders do: pynetdicom writes each
incoming instance to a temporary file as it arrives (``STORE_RECV_CHUNKED_DATASET``), its size is checked before
anything is read, only its header is read to check it, and what is queued is that file, moved into the node's
private spool folder (mode 0700), not the dataset; one worker thread parses and triages one file at a time in
arrival order through :class:`cxrtriage.pacs.handling.InstanceHandler` (its pixels decoded once), then deletes it.
Files left in the spool by an unclean stop were acknowledged, so they are triaged first at the next start.

Anything it cannot triage (another modality, a lateral view, unreadable pixels) is acknowledged, logged without
identifiers and answered with an SR that says why. Refused associations (a calling AE title not allowed, a failed
TLS handshake) are logged with the reason, the peer's address and AE titles (escaped: :func:`cxrtriage.log_text.
loggable`), never a patient identifier. With ``tls`` the node speaks DICOM over TLS only (:mod:`cxrtriage.pacs.tls`).
Shutdown (SIGINT/SIGTERM) stops accepting associations, then finishes the queue before exiting.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrtriage.log_text import loggable
from cxrtriage.pacs.delivery import Destination, send_datasets
from cxrtriage.pacs.instance import instance_log_id, unfileable_reason

if TYPE_CHECKING:  # pragma: no cover
    from cxrtriage.pacs.handling import InstanceHandler, Sender

log = logging.getLogger("cxrtriage.pacs")

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC210
MB = 1024 * 1024


@dataclass(frozen=True)
class NodeConfig:
    """Where the node listens, whom it accepts and what it takes."""

    ae_title: str = "CXRTRIAGE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_callers: tuple[str, ...] = ()  # empty: any calling AE title
    queue_size: int = 32
    retry_s: float = 30.0  # how often undelivered results are re-sent while no instance arrives
    max_instance_mb: float = 64.0  # larger instances are answered 0xA700 (a CR/DX is 5-35 MB uncompressed)
    spool_dir: Path | None = None  # received instances wait here (mode 0700); None: a private temporary folder
    tls: ssl.SSLContext | None = None  # DICOM over TLS only (cxrtriage.pacs.tls.TlsFiles.server_context)


def destination_sender(
    destination: Destination | None, calling_ae: str, tls: ssl.SSLContext | None = None
) -> Sender | None:
    """The node's way of sending results: C-STORE to ``destination`` (over TLS with ``tls``); None (results only
    logged and filed on the worklist) when none is configured."""
    if destination is None:
        return None
    return lambda datasets: send_datasets(datasets, destination, calling_ae, tls=tls)


class DicomNode:
    """The Storage SCP, its bounded queue of spooled instances and its worker thread."""

    def __init__(self, config: NodeConfig, handler: InstanceHandler) -> None:
        self.config, self.handler = config, handler
        self._queue: queue.Queue[Path | None] = queue.Queue(maxsize=config.queue_size)
        self._server: Any = None
        self._leftovers: list[Path] = []
        self._own_spool = config.spool_dir is None
        self.spool = Path(config.spool_dir) if config.spool_dir is not None else Path()
        self._worker = threading.Thread(target=self._work, name="cxrtriage-dicom-node", daemon=True)
        handler.status_fields = lambda: {"queue": self._queue.qsize(), "listening": self._server is not None}

    @property
    def max_instance_bytes(self) -> int:
        return int(self.config.max_instance_mb * MB)

    def start(self) -> None:
        """Start the worker and listen (returns at once; the server runs in pynetdicom's threads)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, _config, evt
        from pynetdicom.sop_class import Verification

        from cxrtriage.pacs.tls import log_tls_failures

        # each incoming instance goes to a temporary file as it arrives, never whole into memory (process-wide: the
        # node is its own process)
        _config.STORE_RECV_CHUNKED_DATASET = True
        self._open_spool()
        ae = AE(ae_title=self.config.ae_title)
        for context in StoragePresentationContexts:  # accept every storage class: a CT is answered, not rejected
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)  # C-ECHO, for the PACS administrator's connection test
        if self.config.allowed_callers:
            ae.require_calling_aet = list(self.config.allowed_callers)
        ae.require_called_aet = True
        self._worker.start()
        handlers = [(evt.EVT_C_STORE, self.on_store), (evt.EVT_REJECTED, self.on_rejected)]
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers, ssl_context=self.config.tls
        )
        if self.config.tls is not None:
            log_tls_failures(self._server, self.config.tls, lambda: self.handler.count("associations_refused"))
        self.handler.write_status()
        transport = "DICOM"
        if self.config.tls is not None:
            certificates = "required" if self.config.tls.verify_mode == ssl.CERT_REQUIRED else "not asked for"
            transport = f"DICOM over TLS (client certificates {certificates})"
        log.info(
            "dicom-node %s listening on %s:%d, %s (callers: %s; instances up to %g MB)",
            self.config.ae_title,
            self.config.host,
            self.config.port,
            transport,
            ", ".join(self.config.allowed_callers) or "any",
            self.config.max_instance_mb,
        )

    def _open_spool(self) -> None:
        if self._own_spool:
            self.spool = Path(tempfile.mkdtemp(prefix="cxrtriage-incoming-"))  # mode 0700
            return
        self.spool.mkdir(parents=True, exist_ok=True)
        self.spool.chmod(0o700)  # received instances carry the patient's attributes
        self._leftovers = sorted(self.spool.glob("*.dcm"))
        if self._leftovers:
            log.warning("%d instance(s) acknowledged before an unclean stop are triaged first", len(self._leftovers))

    def on_rejected(self, event: Any) -> None:
        """EVT_REJECTED: say which association was refused and why (pynetdicom only logs that it rejected one)."""
        requestor = event.assoc.requestor
        calling = str(requestor.ae_title or "").strip()
        called = str(getattr(requestor.primitive, "called_ae_title", "") or "").strip()
        if self.config.allowed_callers and calling not in self.config.allowed_callers:
            reason = "calling AE title not allowed (--allow-caller)"
        elif called != self.config.ae_title:
            reason = f"called AE title is not {self.config.ae_title}"
        else:
            reason = "too many associations at once"
        self.handler.count("associations_refused")
        self.handler.write_status()
        log.warning(
            "association refused: %s (calling AE %s, called AE %s, from %s)",
            reason,
            loggable(calling, 16),
            loggable(called, 16),
            loggable(getattr(requestor, "address", "?")),
        )

    def on_store(self, event: Any) -> int:
        """C-STORE handler (pynetdicom's thread): the instance is in a temporary file; check its size and header,
        spool it and queue it, then acknowledge; or answer why not. The status file follows each answer."""
        try:
            return self._answer(event)
        finally:
            self.handler.write_status()

    def _answer(self, event: Any) -> int:
        import pydicom

        path = Path(event.dataset_path)
        size = path.stat().st_size
        if size > self.max_instance_bytes:
            self.handler.count("refused_too_large")
            log.warning(
                "instance refused (0xA700): %.1f MB, over the limit of %g MB (--max-instance-mb); %s",
                size / MB,
                self.config.max_instance_mb,
                self.handler.counts.line(),
            )
            return OUT_OF_RESOURCES
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            problem, log_id = unfileable_reason(header), instance_log_id(header)
        except Exception as exc:  # noqa: BLE001 - garbage from the network: the sender learns it was not understood
            problem, log_id = f"the instance's DICOM header cannot be read ({type(exc).__name__})", "-"
        if problem:
            self.handler.count("unreadable")
            log.warning("instance %s refused (0xC210): %s; %s", log_id, loggable(problem), self.handler.counts.line())
            return CANNOT_UNDERSTAND
        if self._queue.full() or not self._enqueue(path):
            self.handler.count("refused_busy")
            log.warning(
                "queue full (%d): sender asked to retry; %s", self.config.queue_size, self.handler.counts.line()
            )
            return OUT_OF_RESOURCES
        self.handler.count("received")
        return SUCCESS

    def _enqueue(self, path: Path) -> bool:
        """Move pynetdicom's temporary file into the spool (it deletes its own name after this handler) and queue
        it; False when the queue filled meanwhile."""
        spooled = self.spool / f"{time.time_ns():020d}-{secrets.token_hex(4)}.dcm"
        shutil.move(path, spooled)  # a rename on one file system
        spooled.chmod(0o600)
        try:
            self._queue.put_nowait(spooled)
        except queue.Full:
            spooled.unlink(missing_ok=True)
            return False
        return True

    def _work(self) -> None:
        for path in self._leftovers:
            self._handle_file(path)
        while True:
            try:
                item = self._queue.get(timeout=self.config.retry_s)
            except queue.Empty:  # idle: a moment to re-send what the destination refused earlier
                if self.handler.retry():
                    self.handler.write_status()
                continue
            if item is None:
                return
            self._handle_file(item)

    def _handle_file(self, path: Path) -> None:
        """Parse one spooled instance (the one whole parse), triage it, delete the file."""
        import pydicom

        try:
            instance = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - its header was read on arrival; what follows the pixels was not
            self.handler.count("unreadable")
            log.error("spooled instance unreadable (%s); %s", type(exc).__name__, self.handler.counts.line())
            self.handler.write_status()
        else:
            self.handler.handle(instance)  # writes the status file, queue length included
            del instance
        finally:
            path.unlink(missing_ok=True)

    def stop(self, timeout_s: float = 120.0) -> bool:
        """Stop accepting, finish what is queued, stop the worker; True when the queue was drained in time."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._queue.put(None)  # after everything already queued
        self._worker.join(timeout_s)
        drained = not self._worker.is_alive()
        if drained and self._own_spool:
            shutil.rmtree(self.spool, ignore_errors=True)
        self.handler.write_status()
        log.info(
            "dicom-node stopped (%s); %s",
            "queue drained" if drained else "queue NOT drained",
            self.handler.counts.line(),
        )
        return drained
