"""Two source trees of cxrtriage timed against each other: an earlier commit's ``src/`` (unpacked from git) and this
one, each in its own worker process, calls alternating one at a time so both see the same machine load.

Used by ``cxrtriage bench --before REF`` (``make bench``: the before/after of one run) and by
``scripts/speed_parity.py``. A worker imports only the tree it was started with (``PYTHONPATH``), so the baseline
runs its own pipeline, not this one's. With ``cpu`` set, both workers are pinned to that one CPU
(``os.sched_setaffinity``) and their ONNX Runtime sessions get one thread (``CXRTRIAGE_THREADS=1``; inter-op work is
sequential by default): the "one core" figures of issue 26.

This file is also the workers' entry point (run by path, see :data:`_RUN_FILE`): at module level it imports the
standard library only, so that it runs against either tree.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: the commit before issue 26's per-image speed-up: what ``make bench`` compares this tree with by default
DEFAULT_BEFORE = "bbadd9b"
WARMUP = 3
#: runs a file by path as ``__main__`` without putting its folder first on ``sys.path`` (where the sibling modules
#: would shadow top-level names); ``python -P`` does that from Python 3.11 only
_RUN_FILE = (
    "import runpy, sys; sys.path.pop(0); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def repo_root() -> Path | None:
    """The git checkout this source file lies in (None for an installed package)."""
    here = Path(__file__).resolve()
    cmd = ["git", "rev-parse", "--show-toplevel"]
    top = subprocess.run(cmd, cwd=here.parent, capture_output=True, text=True)  # noqa: S603,S607 - fixed arguments
    return Path(top.stdout.strip()) if top.returncode == 0 and top.stdout.strip() else None


def short_commit(rev: str, repo: Path) -> str:
    """The abbreviated commit ``rev`` names (ValueError when git does not know it)."""
    out = subprocess.run(["git", "rev-parse", "--short", rev], cwd=repo, capture_output=True, text=True)  # noqa: S603,S607
    if out.returncode != 0:
        raise ValueError(f"git does not know the revision {rev!r}")
    return out.stdout.strip()


def unpack_src(rev: str, into: Path, repo: Path) -> Path:
    """The ``src/`` folder of commit ``rev``, unpacked from git into ``into``."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=repo, capture_output=True, check=True)  # noqa: S603,S607
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)  # noqa: S603,S607
    return into / "src"


def pick_cpu() -> int:
    """The CPU a one-core measurement pins to: the highest this process may run on (CPU 0 takes most interrupts)."""
    return max(os.sched_getaffinity(0))


def _stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(p95, 2), "n": len(ms)}


def summarise(calls: list[dict]) -> dict:
    """End-to-end stats and the per-stage p50 of the workers' answers (``{"ms": .., "timings": {..}}``)."""
    stages: dict[str, list[float]] = {}
    for call in calls:
        for k, v in call["timings"].items():
            stages.setdefault(k, []).append(v)
    return {
        "end_to_end": _stats([c["ms"] for c in calls]),
        "breakdown_p50_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
    }


def time_trees(trees: dict[str, Path], image: Path, repeats: int, cpu: int | None = None) -> dict[str, dict]:
    """``predict(image)`` of each tree (label -> its ``src``), one call at a time in turn, each tree's order
    alternating so that none always goes first; ``cpu``: pin every worker to it, with one ONNX thread."""
    env_extra = {"CXRTRIAGE_THREADS": "1"} if cpu is not None else {}
    args = ["bench", "--image", str(image), *(["--cpu", str(cpu)] if cpu is not None else [])]
    procs = {
        label: subprocess.Popen(  # noqa: S603 - this file, with fixed arguments
            [sys.executable, "-c", _RUN_FILE, str(Path(__file__).resolve()), *args],
            env={**os.environ, **env_extra, "PYTHONPATH": str(src)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for label, src in trees.items()
    }
    try:
        for label, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError(f"the {label} bench worker did not start")
        calls: dict[str, list[dict]] = {label: [] for label in procs}
        for i in range(repeats):
            order = list(procs) if i % 2 == 0 else list(procs)[::-1]
            for label in order:
                procs[label].stdin.write("go\n")  # type: ignore[union-attr]
                procs[label].stdin.flush()  # type: ignore[union-attr]
                calls[label].append(json.loads(procs[label].stdout.readline()))  # type: ignore[union-attr]
    finally:
        for proc in procs.values():
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=60)
    return {label: summarise(c) for label, c in calls.items()}


def worker_bench(image: Path, cpu: int | None) -> None:
    """Time one ``predict`` of ``image`` per line read from stdin; answer each with its total and stage timings."""
    import shutil
    import tempfile

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from cxrtriage.pipeline import Triage  # the tree on PYTHONPATH: this one or the baseline's

    crops = Path(tempfile.mkdtemp(prefix="cxrtriage-trees-"))
    try:
        engine = Triage(crops_dir=crops)
        for _ in range(WARMUP):
            engine.predict(image)
        print("ready", flush=True)
        for _ in sys.stdin:
            t = time.perf_counter()
            pred = engine.predict(image)
            ms = (time.perf_counter() - t) * 1e3
            for crop in pred.crops:  # the crops folder stays small over many calls
                Path(crop.thumb_path).unlink(missing_ok=True)
            print(json.dumps({"ms": round(ms, 3), "timings": pred.timings_ms}), flush=True)
    finally:
        shutil.rmtree(crops, ignore_errors=True)


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="a bench worker of cxrtriage.evaluation.trees")
    parser.add_argument("role", choices=("bench",))
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--cpu", type=int)
    args = parser.parse_args(argv)
    worker_bench(args.image, args.cpu)


if __name__ == "__main__":
    main(sys.argv[1:])
