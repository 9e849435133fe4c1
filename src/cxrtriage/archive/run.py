"""``cxrtriage batch``'s run: start (or join) Ray, stream every input through a pool of :class:`TriageWorker`
actors, follow them, summarise.

Sizing (the 2-CPU deadlock, /work/shared/PLATFORM.md): an actor holds its CPUs for the whole run; if the actors
took every CPU, any task of Ray Data's (a read, a split) would wait forever. The inputs are put into the object store
by the driver (:func:`~cxrtriage.archive.sources.input_dataset`), so today no such task is planned, but the actors
still share the cluster's CPUs less :data:`RESERVED_CPUS`, and each actor's onnxruntime gets as many threads as it
has whole CPUs (:func:`~cxrtriage.archive.worker.with_threads`). The plan is
read -> map: no shuffle, no sort, no all-to-all step, so any number of machines can share the inputs and the driver
never holds them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cxrtriage.archive import progress, summary
from cxrtriage.archive.resume import check_same_model
from cxrtriage.archive.rows import predict_line
from cxrtriage.archive.sources import input_dataset, sort_sources
from cxrtriage.archive.storage import Location, locate, part_files
from cxrtriage.archive.worker import DONE, SKIPPED, TriageWorker, WorkerJob, with_threads
from cxrtriage.config import Settings
from cxrtriage.files import replace_atomically
from cxrtriage.interop.outputs import Outputs

#: CPUs never given to the actors: room for any task of Ray Data's (the plan has none today; a reader would)
RESERVED_CPUS = 0.5


@dataclass(frozen=True)
class BatchOptions:
    """One ``cxrtriage batch`` run (the command's options)."""

    sources: list[str]
    out: str
    settings: Settings
    workers: int | None = None  # None: one per CPU of the cluster
    address: str | None = None  # None: a local Ray started for this run (or the one already running in-process)
    num_cpus: int | None = None  # the local cluster's CPUs (None: this machine's)
    resume: bool = False
    batch_size: int = 64
    jsonl: str | None = None
    save_crops: bool = False
    outputs: Outputs = field(default_factory=list)
    prior_report: str | None = None
    progress: bool = True


def actor_cpus(cluster_cpus: float, workers: int) -> float:
    """The CPUs each of ``workers`` actors asks for, so that actors and read tasks together fit the cluster."""
    return max(0.05, (cluster_cpus - RESERVED_CPUS) / workers)


def start_ray(address: str | None, num_cpus: int | None = None) -> Any:
    """Ray, imported here only (``pip install 'cxrtriage[batch]'`` when missing), connected to ``address`` or to a
    local cluster of this machine's CPUs, with no dashboard and nothing to set up; an already initialised Ray (a
    test session's) is used as it is."""
    from cxrtriage.optional import require

    ray = require("ray", extra="batch", purpose="cxrtriage batch")
    require("ray.data", extra="batch", purpose="cxrtriage batch")
    if not ray.is_initialized():
        # Ray's C++ core logs at ERROR, on every run, that Ray Data's actors have "constructor arguments in the
        # object store" (ray-project/ray#53727; harmless here: an actor rebuilds itself from the job); failures
        # still reach this process as Python exceptions. RAY_BACKEND_LOG_LEVEL=error shows those lines again.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # a local cluster listens on loopback only: Ray's token authentication adds nothing there
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            cpus = num_cpus or os.cpu_count() or 1
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its start/finish lines and the note on progress bars
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours (tqdm) counts images, not blocks
    context.print_on_execution_start = False
    return ray


def run_batch(options: BatchOptions) -> dict[str, Any]:
    """Triage every input of ``options.sources`` into ``options.out``; the summary (also written beside it).
    Raises :class:`~cxrtriage.archive.sources.SourceError` / FileExistsError before any work for a bad source or
    an output that exists without ``--resume``."""
    out = locate(options.out)
    existing = part_files(out)
    if existing and not options.resume:
        raise FileExistsError(
            f"{options.out} already holds results: add --resume to finish it, or choose another --out"
        )
    sources = sort_sources(options.sources)
    if existing:
        check_same_model(out, options.settings, options.out)
    out.fs.create_dir(out.path, recursive=True)
    ray = start_ray(options.address, options.num_cpus)
    cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    workers = options.workers or max(1, int(cluster_cpus))
    if not sources.manifests:  # no more actors than files: an idle one only costs its start (and Ray warns)
        workers = min(workers, len(sources.files))
    dataset, total = input_dataset(ray, sources, options.batch_size, workers)
    cpus = actor_cpus(cluster_cpus, workers)
    settings = with_threads(options.settings, cpus)
    job = WorkerJob(settings, options.out, options.save_crops, options.outputs, options.prior_report, options.resume)
    statuses = dataset.map_batches(
        TriageWorker,
        fn_constructor_kwargs={"job": job},
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        batch_size=None,  # a batch is one block: Ray would otherwise merge small blocks and idle a worker
        batch_format="pyarrow",
    )
    started = time.perf_counter()
    counts = progress.follow(statuses, total, enabled=options.progress)
    wall = time.perf_counter() - started
    run = {
        "inputs": total,
        "triaged": counts[DONE],
        "skipped": counts[SKIPPED],
        "failed": sum(n for k, n in counts.items() if k.startswith("error:")),
        "wall_s": round(wall, 2),
        "workers": workers,
        "cpus_per_worker": round(cpus, 3),
        "threads_per_worker": settings.threads,
        "batch_size": options.batch_size,
        "cluster_cpus": cluster_cpus,
        "address": options.address or "local",
    }
    result = summary.summarise(out, run)
    result["summary_file"] = summary.write_summary(out, result)
    if options.jsonl:
        write_jsonl(out, Path(options.jsonl))
    return result


def write_jsonl(out: Location, target: Path) -> None:
    """Every row of the output as the line ``cxrtriage predict`` prints for it, one part at a time (atomic)."""

    def write(fh: Any) -> None:
        for part in part_files(out):
            with out.fs.open_input_file(part) as src:
                for row in pq.read_table(src).to_pylist():
                    fh.write((json.dumps(predict_line(row), ensure_ascii=False) + "\n").encode())

    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, write, mode=0o600)


def print_summary(result: dict[str, Any]) -> None:
    print(summary.format_summary(result), file=sys.stderr)
    print(f"results: {result['summary_file']} (summary)", file=sys.stderr)
