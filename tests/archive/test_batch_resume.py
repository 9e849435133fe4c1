"""``--resume`` after a real kill: a ``cxrtriage batch`` subprocess (its own 2-CPU Ray, 2 actors) is SIGKILLed once
some part files are on disk, with its Ray processes; the rerun with ``--resume`` (on the session's cluster) finishes
the rest, and every input then appears exactly once, with the same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
from archive_helpers import run_with_timeout, sample_files

from cxrtriage.archive.run import BatchOptions
from cxrtriage.config import Settings

SRC = Path(__file__).resolve().parents[2] / "src"
COPIES = 10  # 4 samples x 10 = 40 inputs, 2 per part file


def comparable(prediction: str) -> dict:
    """A result without what differs from run to run: timings (and crop file names, none here)."""
    found = json.loads(prediction)
    found.pop("timings_ms")
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the batch process and every process it started (its Ray cluster): nothing gets to clean up."""
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def test_killed_run_resumes_to_the_uninterrupted_result(ray_cluster, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    for i in range(COPIES):
        (inputs / f"day{i}").mkdir(parents=True)
        for src in sample_files():
            shutil.copy(src, inputs / f"day{i}" / src.name)
    total = COPIES * len(sample_files())
    out = tmp_path / "killed.parquet"
    cmd = [sys.executable, "-m", "cxrtriage.cli.main", "batch", str(inputs), "--out", str(out)]
    cmd += ["--batch-size", "2", "--workers", "2", "--num-cpus", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(list(out.glob("part-*.parquet"))) < 3:
            assert proc.poll() is None, f"the batch run ended before it was killed: {proc.stderr.read()[-2000:]!r}"
            assert time.monotonic() < deadline, "no part files after 240 s"
            time.sleep(0.05)
    finally:
        _kill_tree(proc)
    written = len(pd.read_parquet(out))
    assert 0 < written < total, f"the kill came too late to test anything ({written} of {total} rows on disk)"

    def run(target: Path, resume: bool) -> pd.DataFrame:
        options = BatchOptions([str(inputs)], str(target), Settings(), workers=2, batch_size=4, resume=resume)
        result = run_with_timeout(options)
        assert result["rows"] == total
        return pd.read_parquet(target)

    resumed = run(out, resume=True)
    assert resumed.path.is_unique and len(resumed) == total  # each input exactly once: nothing twice, nothing lost
    whole = run(tmp_path / "whole.parquet", resume=False)
    got = resumed.set_index("path").prediction.map(comparable)
    want = whole.set_index("path").prediction.map(comparable)
    assert got.sort_index().to_dict() == want.sort_index().to_dict()
    summary = json.loads((tmp_path / "killed.summary.json").read_text())
    assert summary["run"]["skipped"] == written and summary["run"]["triaged"] == total - written
