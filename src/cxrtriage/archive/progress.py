"""The driver's part of a run: take the few status fields each input sends back, as they stream in, and show a
progress bar with throughput and an ETA (tqdm on stderr). Nothing else reaches the driver, so its memory stays the
same for ten inputs or ten million."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from tqdm import tqdm

from cxrtriage.archive.worker import SKIPPED


def follow(dataset: Any, total: int, *, enabled: bool = True) -> Counter[str]:
    """Consume ``dataset`` (the actors' status rows), advancing the bar per batch; the counts by status
    (``done`` / ``skipped``) and by error type."""
    counts: Counter[str] = Counter()
    with tqdm(total=total, desc="triage", unit="image", file=sys.stderr, disable=not enabled, smoothing=0.1) as bar:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            status = batch.column("status").to_pylist()
            counts.update(status)
            counts.update(f"error:{e}" for e in batch.column("error_type").to_pylist() if e)
            bar.update(len(status))
            if counts[SKIPPED]:
                bar.set_postfix(already_done=counts[SKIPPED], refresh=False)
    return counts
