"""What the batch tests share: the bundled sample radiographs and a run that fails instead of hanging."""

from __future__ import annotations

import threading
from pathlib import Path

from cxrtriage.archive.run import BatchOptions, run_batch

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cxrtriage" / "samples"
#: a run of a few dozen small inputs takes well under a minute on 2 busy cores; far past it, actors and read tasks
#: deadlocked (all CPUs reserved by the actors, the read task waiting forever: /work/shared/PLATFORM.md)
DEADLOCK_S = 240


def sample_files() -> list[Path]:
    """The bundled samples: two NIH PNGs, a pediatric JPEG, a DICOM."""
    return sorted(p for p in SAMPLES.rglob("*") if p.suffix in {".png", ".jpeg", ".dcm"})


def run_with_timeout(options: BatchOptions) -> dict:
    """``run_batch`` in a thread: a run still going after DEADLOCK_S fails the test instead of hanging it."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = run_batch(options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLOCK_S)
    assert not thread.is_alive(), f"cxrtriage batch did not finish in {DEADLOCK_S} s (actors and reads deadlocked?)"
    if "error" in box:
        raise box["error"]
    return box["result"]
