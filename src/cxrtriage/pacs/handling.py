"""What the DICOM node and the Orthanc poller do with each instance after it arrives: triage it
(:func:`cxrtriage.pacs.instance.process_instance`), send its DICOM outputs back (the registry's DICOM-encoded formats:
the SR, and the Secondary Capture unless turned off), POST the registry's ``fhir`` report when an endpoint is
configured, file the result on the reading worklist (its crops named by their URLs, as the service files them:
:mod:`cxrtriage.crop_urls`), count, and record the result or refusal for drift monitoring
(:mod:`cxrtriage.monitoring`; a failed record is logged and changes nothing else). One line is logged per instance
with the running counts; it names the outcome and the instance's hashed id, never a patient identifier, and any text
from the header in it (a modality in a reason) is escaped (:func:`cxrtriage.log_text.loggable`), so a header cannot
forge a log line."""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrtriage.crop_urls import with_crop_urls
from cxrtriage.errors import InputError
from cxrtriage.log_text import loggable
from cxrtriage.monitoring.record import refusal_record, run_record, site_name
from cxrtriage.pacs.delivery import post_fhir
from cxrtriage.pacs.instance import Outcome, process_instance
from cxrtriage.pacs.outbox import Outbox

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

    from cxrtriage.monitoring.store import MonitorStore
    from cxrtriage.pipeline import Triage
    from cxrtriage.worklist import Worklist

log = logging.getLogger("cxrtriage.pacs")

#: sends a list of pydicom datasets back to the PACS; True when all were stored
Sender = Callable[[list[Any]], bool]


@dataclass
class Counts:
    """Running totals since start, logged after every instance and written to the status file."""

    received: int = 0
    triaged: int = 0
    urgent: int = 0
    needs_review: int = 0
    not_triaged: int = 0
    skipped_own_results: int = 0
    unreadable: int = 0
    failed: int = 0
    refused_busy: int = 0
    refused_too_large: int = 0  # answered 0xA700: over --max-instance-mb
    associations_refused: int = 0  # a calling AE title not allowed, a failed TLS handshake
    results_sent: int = 0
    results_send_failed: int = 0  # attempts that failed; what they held waits in the outbox (results_waiting)
    results_waiting: int = 0
    fhir_sent: int = 0
    fhir_failed: int = 0
    worklist_failed: int = 0

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items() if v or k in ("received", "triaged"))


class InstanceHandler:
    """Handles instances one at a time (the caller's worker thread) and keeps the counts."""

    def __init__(
        self,
        engine: Triage,
        send: Sender | None,
        *,
        worklist: Worklist | None = None,
        fhir_endpoint: str | None = None,
        secondary_capture: bool = True,
        formats: Sequence[str] | None = None,
        status_path: Path | None = None,
        outbox: Outbox | None = None,
        monitor: MonitorStore | None = None,
    ) -> None:
        from cxrtriage.interop.formats import dicom_formats, get_format

        self.engine, self.send, self.worklist, self.outbox = engine, send, worklist, outbox
        self.monitor = monitor  # drift monitoring: one record per triaged or refused instance (None: not recorded)
        self.fhir_endpoint = fhir_endpoint
        #: what goes back per triaged instance: the named DICOM formats (default: every one registered), in order;
        #: ``secondary_capture=False`` (``--no-secondary-capture``) leaves the burned-in picture out
        chosen = [get_format(name) for name in formats] if formats is not None else list(dicom_formats())
        self.formats = tuple(f for f in chosen if secondary_capture or f.name != "sc")
        self.status_path = status_path
        #: more fields for the status file from the caller (the node: its queue length and whether it listens)
        self.status_fields: Callable[[], dict[str, Any]] = dict
        self.counts = Counts()
        self._lock = threading.Lock()
        #: seconds from the start of triage to the results' delivery, recent instances (the "minutes, not hours")
        self._answer_s: deque[float] = deque(maxlen=500)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.counts, name, getattr(self.counts, name) + n)

    def handle(self, instance: Dataset | bytes) -> Outcome | None:
        """Triage one instance (a parsed dataset, or its encoded bytes) and deliver what it produced; None when its
        header was unreadable."""
        started = time.perf_counter()
        try:
            outcome = process_instance(self.engine, instance, formats=self.formats)
        except InputError as exc:
            self.count("unreadable")
            log.warning("instance not answered: %s; %s", loggable(exc), self.counts.line())
            self.write_status()
            return None
        except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the node; counted and logged
            self.count("failed")
            log.error("instance failed (%s); %s", type(exc).__name__, self.counts.line())
            self.write_status()
            return None
        if outcome.status == "skipped":
            self.count("skipped_own_results")
        else:
            self._record(outcome)
            self._deliver(outcome)
            with self._lock:
                self._answer_s.append(time.perf_counter() - started)
        self._log(outcome)
        self.write_status()
        return outcome

    def _deliver(self, outcome: Outcome) -> None:
        if outcome.status == "triaged":
            pred = outcome.prediction
            self.count("triaged")
            self.count("urgent", int(pred.label == "Urgent"))
            self.count("needs_review", int(pred.needs_review))
            self._file(outcome)
            if self.fhir_endpoint:
                self._post_fhir(outcome)
        else:
            self.count("not_triaged")
        if self.send is not None:  # None: no destination configured (results only logged and on the worklist)
            self.retry()  # what waits goes first, so results arrive in order when the destination is back
            if not self.counts.results_waiting and self.send(outcome.outputs):
                self.count("results_sent", len(outcome.outputs))
            else:  # the destination refused (just now, or the waiting results a moment ago): queue behind them
                self.count("results_send_failed", len(outcome.outputs))
                if self.outbox is not None:
                    self.outbox.put(outcome.outputs)
                    self._waiting()

    def retry(self) -> int:
        """Send what waits in the outbox (called before new results and by the node when idle); returns how many
        were delivered."""
        if self.send is None or self.outbox is None:
            return 0
        delivered = self.outbox.flush(self.send)  # 0 when nothing waits
        self.count("results_sent", delivered)
        self._waiting()
        return delivered

    def _waiting(self) -> None:
        with self._lock:
            self.counts.results_waiting = len(self.outbox.pending()) if self.outbox is not None else 0

    def _record(self, outcome: Outcome) -> None:
        """The monitor record of a triaged or refused instance; never raises (the results still go back)."""
        if self.monitor is None:
            return
        try:
            site = site_name(self.engine)
            if outcome.status == "triaged" and outcome.context is not None and outcome.context.image is not None:
                record = run_record(outcome.context, "node", site)
            else:
                record = refusal_record("node", site, self.engine.info.sha256)
        except Exception:  # noqa: BLE001 - monitoring never stops a result
            log.warning("monitor record not built for instance %s", outcome.log_id)
            return
        self.monitor.append_safely(record)

    def _file(self, outcome: Outcome) -> None:
        """On the worklist (the same filing as ``POST /predict`` and the UI); a failed write is counted, and the SR
        still goes back."""
        from cxrtriage.imaging.study import study_info
        from cxrtriage.worklist import file_on_worklist

        worklist, prediction = self.worklist, outcome.prediction
        if worklist is None or prediction is None:
            return
        study = study_info(outcome.context.image) if outcome.context and outcome.context.image else None
        stored = with_crop_urls(prediction)  # as the service files them: URLs, never server paths
        _, key = file_on_worklist(lambda: worklist, prediction, key=outcome.worklist_key, stored=stored, study=study)
        if key is None:
            self.count("worklist_failed")

    def _post_fhir(self, outcome: Outcome) -> None:
        from cxrtriage.interop.formats import get_format

        report = get_format("fhir").render(outcome.context)  # the study UID its decoder kept: no second parse
        self.count("fhir_sent" if post_fhir(report, self.fhir_endpoint) else "fhir_failed")

    def _log(self, outcome: Outcome) -> None:
        if outcome.status == "triaged":
            pred = outcome.prediction
            what = f"{pred.label} {pred.score:.2f}" + (", needs review" if pred.needs_review else "")
        elif outcome.status == "not_triaged":
            what = f"not triaged: {outcome.reason}"
        else:
            what = f"skipped: {outcome.reason}"
        log.info("instance %s: %s; %s", outcome.log_id, loggable(what), self.counts.line())  # reasons quote headers

    def write_status(self) -> None:
        """The counts as JSON in the status file (atomically replaced), for monitoring and the demo's wait."""
        if self.status_path is None:
            return
        with self._lock:
            answers = list(self._answer_s)
            payload = {**asdict(self.counts), **self.status_fields()}
        if answers:  # triage + SR/SC + delivery per instance, on this machine
            payload.update(answer_s_median=round(statistics.median(answers), 3), answer_s_max=round(max(answers), 3))
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.status_path.parent, prefix=".status-")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, self.status_path)
