"""``cxrtriage dicom-node``: a DICOM Storage SCP (pynetdicom) that triages every chest radiograph it receives and
sends the results to a configured destination with C-STORE.

Each C-STORE is acknowledged as soon as the instance is queued (a bounded queue: when it is full the sender gets
0xA700 "out of resources" and retries later, nothing is dropped silently); one worker thread triages the queue in
arrival order through :class:`cxrtriage.pacs.handling.InstanceHandler`. What is queued is the dataset pynetdicom
parsed, with the file meta of its presentation context: it is neither re-encoded nor parsed again, and the worker
decodes its pixels once. An instance whose header cannot even be parsed is answered 0xC210 ("cannot understand");
anything else it cannot triage (another modality, a lateral view, unreadable pixels) is acknowledged, logged without
identifiers and answered with an SR that says why. Shutdown (SIGINT/SIGTERM) stops accepting associations, then
finishes the queue before exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxrtriage.pacs.delivery import Destination, send_datasets

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

    from cxrtriage.pacs.handling import InstanceHandler, Sender

log = logging.getLogger("cxrtriage.pacs")

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC210


@dataclass(frozen=True)
class NodeConfig:
    """Where the node listens and whom it accepts."""

    ae_title: str = "CXRTRIAGE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_callers: tuple[str, ...] = ()  # empty: any calling AE title
    queue_size: int = 32
    retry_s: float = 30.0  # how often undelivered results are re-sent while no instance arrives


def destination_sender(destination: Destination | None, calling_ae: str) -> Sender | None:
    """The node's way of sending results: C-STORE to ``destination``; None (results only logged and filed on the
    worklist) when none is configured."""
    if destination is None:
        return None
    return lambda datasets: send_datasets(datasets, destination, calling_ae)


class DicomNode:
    """The Storage SCP, its bounded queue and its worker thread."""

    def __init__(self, config: NodeConfig, handler: InstanceHandler) -> None:
        self.config, self.handler = config, handler
        self._queue: queue.Queue[Dataset | None] = queue.Queue(maxsize=config.queue_size)
        self._server: Any = None
        self._worker = threading.Thread(target=self._work, name="cxrtriage-dicom-node", daemon=True)
        handler.status_fields = lambda: {"queue": self._queue.qsize(), "listening": self._server is not None}

    def start(self) -> None:
        """Start the worker and listen (returns at once; the server runs in pynetdicom's threads)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.config.ae_title)
        for context in StoragePresentationContexts:  # accept every storage class: a CT is answered, not rejected
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)  # C-ECHO, for the PACS administrator's connection test
        if self.config.allowed_callers:
            ae.require_calling_aet = list(self.config.allowed_callers)
        ae.require_called_aet = True
        self._worker.start()
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.on_store)]
        )
        self.handler.write_status()
        log.info(
            "dicom-node %s listening on %s:%d (callers: %s)",
            self.config.ae_title,
            self.config.host,
            self.config.port,
            ", ".join(self.config.allowed_callers) or "any",
        )

    def on_store(self, event: Any) -> int:
        """C-STORE handler (pynetdicom's thread): parse the instance (values stay lazy until read), check its header,
        queue the dataset, acknowledge."""
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta  # the transfer syntax the pixels are encoded in
            _ = ds.SOPInstanceUID
        except Exception as exc:  # noqa: BLE001 - garbage from the network: the sender learns it was not understood
            self.handler.count("unreadable")
            log.warning("instance not understood (%s); %s", type(exc).__name__, self.handler.counts.line())
            return CANNOT_UNDERSTAND
        try:
            self._queue.put_nowait(ds)
        except queue.Full:
            self.handler.count("refused_busy")
            log.warning(
                "queue full (%d): sender asked to retry; %s", self.config.queue_size, self.handler.counts.line()
            )
            return OUT_OF_RESOURCES
        self.handler.count("received")
        return SUCCESS

    def _work(self) -> None:
        while True:
            try:
                instance = self._queue.get(timeout=self.config.retry_s)
            except queue.Empty:  # idle: a moment to re-send what the destination refused earlier
                if self.handler.retry():
                    self.handler.write_status()
                continue
            if instance is None:
                return
            self.handler.handle(instance)  # writes the status file, queue length included

    def stop(self, timeout_s: float = 120.0) -> bool:
        """Stop accepting, finish what is queued, stop the worker; True when the queue was drained in time."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._queue.put(None)  # after everything already queued
        self._worker.join(timeout_s)
        drained = not self._worker.is_alive()
        self.handler.write_status()
        log.info(
            "dicom-node stopped (%s); %s",
            "queue drained" if drained else "queue NOT drained",
            self.handler.counts.line(),
        )
        return drained
