"""``make bench-batch``: images per second of the sequential ``cxrtriage predict`` and of ``cxrtriage batch`` with 1
and 2 Ray workers, on the same inputs, in one run, with the scaling efficiency (ips2 / (2 * ips1)) and the peak
resident memory of the driver and of each worker.

The inputs are real NIH test radiographs upsampled to 1024 x 1024 (their native size; the shared copies are 512 px),
written to a temporary folder (never into the repository), repeated through a CSV manifest to ``--inputs`` rows.
Every configuration is run as a user runs it, a fresh command in a subprocess, and does the same work: predict
saves crop thumbnails, so batch is given ``--crops`` too. ``images_per_s`` is over the command's whole wall time
(model loading and, for Ray, starting the cluster included); ``in_run_images_per_s`` is batch's own figure from its
summary (from the first input sent to the last row written: the cluster's start left out). Memory is sampled every
0.2 s with psutil: the driver (the command's own process) and the actors (``ray::MapWorker`` processes). On a
shared 2-core machine one run of each swung the 2-worker efficiency between 0.69 and 0.97, so the three
configurations run in ``--rounds`` interleaved rounds (default 3), and each is reported by its median round.

    python -m cxrtriage.archive.bench --out prototype/eval/batch_bench.json [--inputs 2000] [--images 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrtriage.config import Settings
from cxrtriage.data import load_split_records
from cxrtriage.imaging.load import load_image

SIZE = 1024
#: what an actor's process is called (its title), as ``ps`` shows it
ACTOR_TITLE = "MapWorker"


def prepare_inputs(tmp: Path, images: int, inputs: int) -> tuple[Path, list[str]]:
    """``images`` NIH test films at 1024 px in ``tmp/images``, and a manifest of ``inputs`` rows cycling them."""
    data = Settings().find_data_dir(required=True)
    assert data is not None  # noqa: S101 - required=True raises instead
    records = load_split_records(data, ("nih",))["test"][:images]
    folder = tmp / "images"
    folder.mkdir(parents=True)
    files = []
    for rec in records:
        pixels = load_image(rec.path).pixels
        img = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        target = folder / Path(rec.path).name
        img.save(target)
        files.append(str(target))
    paths = [files[i % len(files)] for i in range(inputs)]
    manifest = tmp / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path"])
        writer.writerows([p] for p in paths)
    return manifest, paths


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` to the end; its wall time and the peak RSS (MiB) of its own process and of any Ray actor."""
    import psutil

    started = time.perf_counter()
    # stderr to a file, not a pipe: a pipe nobody reads until the end can fill and stall the command
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)  # noqa: S603
        me = psutil.Process(proc.pid)
        driver = worker = 0.0
        while proc.poll() is None:
            try:
                driver = max(driver, me.memory_info().rss / 2**20)
                for child in psutil.process_iter(["cmdline", "memory_info"]):
                    if ACTOR_TITLE in " ".join(child.info["cmdline"] or []) and child.info["memory_info"] is not None:
                        worker = max(worker, child.info["memory_info"].rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - started
        err.seek(0)
        stderr = err.read()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd[:5])}... exited {proc.returncode}: {stderr[-2000:]}")
    out = {"wall_s": round(wall, 2), "driver_peak_rss_mb": round(driver, 1)}
    return out | ({"worker_peak_rss_mb": round(worker, 1)} if worker else {})


def _median_round(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median images per second (its own figures, so they belong together), and every round's."""
    ranked = sorted(rows, key=lambda row: row["images_per_s"])
    return ranked[(len(ranked) - 1) // 2] | {"rounds_images_per_s": [row["images_per_s"] for row in rows]}


def run_bench(out: Path, inputs: int, images: int, memory_inputs: int | None, rounds: int = 3) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cxrtriage-bench-batch-"))
    try:
        manifest, paths = prepare_inputs(tmp, images, inputs)
        env = {**os.environ, "CXRTRIAGE_CROPS_DIR": str(tmp / "crops-predict"), "RAY_AUTH_MODE": "disabled"}
        cli = [sys.executable, "-m", "cxrtriage.cli.main"]
        runs: dict[str, list[dict[str, Any]]] = {}
        load = {"before": _load()}
        for r in range(rounds):  # the configurations interleaved, so that a burst of load hits them alike
            seq = measured([*cli, "predict", *paths, "--out", str(tmp / f"predict-{r}.jsonl")], env)
            runs.setdefault("sequential_predict", []).append(seq | {"images_per_s": round(inputs / seq["wall_s"], 2)})
            for workers in (1, 2):
                results = tmp / f"ray{workers}-{r}.parquet"
                cmd = [*cli, "batch", str(manifest), "--out", str(results), "--workers", str(workers), "--no-progress"]
                cmd += ["--num-cpus", str(os.cpu_count() or 2), "--crops", str(tmp / f"crops-{workers}")]
                run = measured(cmd, env)
                summary = json.loads((tmp / f"ray{workers}-{r}.summary.json").read_text())
                runs.setdefault(f"ray_{workers}_worker{'s' if workers > 1 else ''}", []).append(
                    run
                    | {
                        "images_per_s": round(inputs / run["wall_s"], 2),
                        "in_run_images_per_s": summary["run"]["images_per_s"],
                        "in_run_wall_s": summary["run"]["wall_s"],
                        "threads_per_worker": summary["run"]["threads_per_worker"],
                        "rows": summary["rows"],
                    }
                )
        load["after"] = _load()
        configs = {name: _median_round(rows) for name, rows in runs.items()}
        one, two = configs["ray_1_worker"], configs["ray_2_workers"]
        result: dict[str, Any] = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": f"python -m cxrtriage.archive.bench --inputs {inputs} --images {images} --rounds {rounds}"
            + (f" --memory-inputs {memory_inputs}" if memory_inputs else "")
            + f" --out {out}",
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_average_1_5_15": load,
            },
            "inputs": f"{inputs} rows of a CSV manifest cycling {images} NIH test films upsampled to {SIZE}x{SIZE} PNG",
            "configs": configs,
            "scaling_efficiency": round(two["images_per_s"] / (2 * one["images_per_s"]), 3),
            "scaling_efficiency_in_run": round(two["in_run_images_per_s"] / (2 * one["in_run_images_per_s"]), 3),
        }
        if memory_inputs:
            result["memory_check"] = memory_check(tmp, cli, env, paths, memory_inputs)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def memory_check(tmp: Path, cli: list[str], env: dict[str, str], paths: list[str], n: int) -> dict[str, Any]:
    """The driver's and the actors' peak RSS for ``n`` inputs (2 workers, no crops), beside the figures of the
    2-worker run above: a streamed run's memory does not grow with the number of inputs."""
    manifest = tmp / "manifest-large.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path"])
        writer.writerows([paths[i % len(paths)]] for i in range(n))
    cmd = [*cli, "batch", str(manifest), "--out", str(tmp / "large.parquet"), "--workers", "2", "--no-progress"]
    return {"inputs": n} | measured(cmd, env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="prototype/eval/batch_bench.json")
    p.add_argument("--inputs", type=int, default=2000, help="inputs per configuration (default 2000)")
    p.add_argument("--images", type=int, default=50, help="distinct NIH test films they cycle (default 50)")
    p.add_argument("--memory-inputs", type=int, help="also measure memory on a 2-worker run of this many inputs")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three configurations; medians (default 3)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    result = run_bench(Path(args.out), args.inputs, args.images, args.memory_inputs, args.rounds)
    print(json.dumps({k: result[k] for k in ("configs", "scaling_efficiency", "scaling_efficiency_in_run")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
