"""The actor: one engine per Ray actor, loaded once in ``__init__``; each batch of input rows is read, hashed,
decoded and triaged here (never on the driver), written as one atomic Parquet part, and only a few fields per input
go back to the driver for the progress bar.

A failed input is a row with its error, never a failed job: anything raised for one input (an unreadable file, a
refused image, a bug) becomes that input's ``error_type`` and ``error``. ``--resume``: each actor reads the finished
inputs from the output's part files itself (:func:`~cxrtriage.archive.resume.done_keys`, two columns), so nothing
the size of the archive is shipped from the driver; an input whose (path, content hash) is there is hashed and
skipped, not triaged again.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from cxrtriage.archive import rows as result_rows
from cxrtriage.archive.resume import done_keys, key
from cxrtriage.archive.sources import resolve
from cxrtriage.archive.storage import is_uri, locate, read_bytes, write_part
from cxrtriage.config import Settings
from cxrtriage.errors import InvalidImageError
from cxrtriage.files import sha256_file
from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.outputs import Outputs, write_outputs

#: what each input sends back to the driver: enough to count, nothing of the result itself
STATUS_SCHEMA = pa.schema([("status", pa.string()), ("error_type", pa.string())])
DONE, SKIPPED = "done", "skipped"


@dataclass(frozen=True)
class WorkerJob:
    """What every actor needs, pickled to it once: the engine's settings (``threads`` already set to the actor's
    CPUs), where results go, whether crops are saved, which formats are written, and the prior report for every
    input without its own."""

    settings: Settings
    out: str
    save_crops: bool = False
    outputs: Outputs | None = None
    prior_report: str | None = None
    resume: bool = False


class TriageWorker:
    """The callable class of ``map_batches``: Ray builds one per actor, so the model loads once per actor."""

    def __init__(self, job: WorkerJob) -> None:
        from cxrtriage.pipeline import Triage

        self.job = job
        self.engine = Triage.from_config(job.settings)
        self.out = locate(job.out)
        self.done = done_keys(self.out) if job.resume else frozenset()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        for folder in {folder for _, folder in job.outputs or []}:
            folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows, status = [], []
        for item in batch.to_pylist():
            row = self.triage(item)
            if row is None:
                status.append({"status": SKIPPED, "error_type": None})
                continue
            rows.append(row)
            status.append({"status": DONE, "error_type": row["error_type"]})
        if rows:
            write_part(self.out, result_rows.to_table(rows))
        return pa.Table.from_pylist(status, schema=STATUS_SCHEMA)

    def triage(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """One input's row, or None when ``--resume`` finds it done already."""
        path, accession = item["path"], item.get("accession")
        where = resolve(path, item.get("root"))
        sha256 = None
        try:
            data = None
            if is_uri(where):
                data = read_bytes(where)
                sha256 = _sha256(data)
            else:
                sha256 = _sha256_local(where)
            if sha256 is not None and key(path, sha256) in self.done:
                return None
            prior = item.get("prior_report") or self.job.prior_report
            # a local file is read by the loader itself, as `cxrtriage predict` reads it (same checks, same messages)
            loaded = self.engine.load(data if data is not None else where)
            triaged = self.engine.run(loaded, prior, save_crops=self.job.save_crops)
            prediction = triaged.prediction.model_dump(mode="json")
            outputs: dict[str, str] = {}
            if self.job.outputs:
                stem = f"{Path(path).stem}-{sha256[:8]}" if sha256 else Path(path).stem
                write_outputs(outputs, self.job.outputs, OutputContext.of(triaged), stem)
            return result_rows.result_row(path, sha256, accession, prediction, outputs, self.worker)
        except Exception as exc:  # noqa: BLE001 - a failed input is a row with its error, never a failed job
            if isinstance(exc, OSError):  # a URI's read: the loader's words, without the path
                exc = InvalidImageError(
                    "file not found" if isinstance(exc, FileNotFoundError) else "the file cannot be read"
                )
            return result_rows.error_row(path, sha256, accession, exc, self.worker)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_local(path: str) -> str | None:
    """The file's hash, or None when it cannot be read (the loader then says why, in its own words)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def with_threads(settings: Settings, cpus: float) -> Settings:
    """The settings an actor of ``cpus`` CPUs builds its engine with: onnxruntime's intra-op threads set to its
    whole CPUs (at least one), so that actors sharing a machine do not oversubscribe it."""
    return settings.model_copy(update={"threads": max(1, int(cpus))})
