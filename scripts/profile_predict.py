#!/usr/bin/env python3
"""Where ``Triage.predict`` spends its time on one core: per stage and per function, for the three kinds of input.

Issue 26 asks for end-to-end p50 <= 20 ms for a 1024 px PNG on one core. Before cutting, this measures, with the
process pinned to one CPU (``os.sched_setaffinity``) and ONNX Runtime at one thread (``CXRTRIAGE_THREADS=1``):

* **inputs**: the bench image (a NIH test film upsampled to 1024 px, 8-bit PNG, ``cxrtriage bench``'s), the shared
  DICOM files (data/README.md: ``dicom/``) and the first pediatric (Kermany) test-split JPEGs;
* per input kind: end-to-end p50 and the p50 of each stage the result reports (``timings_ms``), and the functions
  that take the most time (cProfile, own time per predict);
* **floors**: what no cut outside the models and the decoder can go below: the PNG decode alone (Pillow) and each
  ONNX model alone (the classifier and the segmentation network), at one thread.

    python scripts/profile_predict.py [--repeats 40] [--out prototype/eval/predict_profile.json]
    python scripts/profile_predict.py --before bbadd9b --out prototype/eval/predict_profile_before.json

``--before REF`` profiles that commit's ``src/`` (unpacked with git archive) instead of this tree's.

Only timings and function names are written; no pixel leaves the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_FUNCTIONS = 12
N_JPEGS = 5


def _ms(fn, repeats: int) -> float:  # noqa: ANN001 - any callable
    from cxrtriage.evaluation.bench import times_ms

    return round(statistics.median(times_ms(fn, repeats)), 2)


def _top(profile: cProfile.Profile, calls: int) -> list[dict]:
    """The functions with the most own time, in ms per predict (paths shortened to the package or library)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:TOP_FUNCTIONS]
    out = []
    for (path, line, name), (_, ncalls, tottime, cumtime, _) in rows:
        short = path.split("site-packages/")[-1].split("src/")[-1]
        where = f"{short}:{line}" if path != "~" else "built-in"
        out.append(
            {
                "function": f"{where}({name})",
                "own_ms": round(tottime * 1e3 / calls, 2),
                "cumulative_ms": round(cumtime * 1e3 / calls, 2),
                "calls_per_predict": round(ncalls / calls, 1),
            }
        )
    return out


def profile_inputs(engine, paths: list[Path], repeats: int) -> dict:  # noqa: ANN001 - a Triage
    """End-to-end and per-stage p50 over ``repeats`` rounds of ``paths``, then the cProfile of as many more."""
    for path in paths:
        engine.predict(path)
    total, stages = [], {}
    rounds = max(1, repeats // len(paths))
    for _ in range(rounds):
        for path in paths:
            t = time.perf_counter()
            pred = engine.predict(path)
            total.append((time.perf_counter() - t) * 1e3)
            for k, v in pred.timings_ms.items():
                stages.setdefault(k, []).append(v)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(rounds):
        for path in paths:
            engine.predict(path)
    profile.disable()
    return {
        "files": [p.name for p in paths],
        "predicts": len(total),
        "end_to_end_p50_ms": round(statistics.median(total), 2),
        "stages_p50_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "top_functions": _top(profile, rounds * len(paths)),
    }


def floors(engine, image: Path, repeats: int) -> dict:  # noqa: ANN001 - a Triage
    """The PNG decode alone and each ONNX model alone on its preprocessed input, one thread."""
    from cxrtriage.anatomy.segmenter import Segmenter
    from cxrtriage.imaging.preprocess import to_model_input

    pixels = engine.load(image).pixels  # the engine's limits, as predict decodes (no settings read per call)
    x_cls = to_model_input(pixels, engine.backend.preprocess_cfg)
    # the network alone: the engine's segmenter session may be segment_full.onnx (preprocessing inside the graph)
    seg = Segmenter(engine.segmenter.model_dir, threads=1, graphs=False) if engine.segmenter is not None else None
    out = {
        "decode_png_1024_ms": _ms(lambda: engine.load(image), repeats),
        "classifier_onnx_ms": _ms(lambda: engine.backend.run(x_cls), repeats),
    }
    if seg is not None:
        x_seg = to_model_input(pixels, seg.preprocess_cfg)
        out["segmentation_onnx_ms"] = _ms(lambda: seg.session.run(None, {seg.input_name: x_seg}), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="predicts per input kind (and as many profiled)")
    parser.add_argument("--out", type=Path, default=REPO / "prototype/eval/predict_profile.json")
    parser.add_argument("--data", type=Path, help="data directory (default: the configured one)")
    parser.add_argument("--before", metavar="GIT_REF", help="profile this commit's src/ instead of this tree's")
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)  # the tree to import (set by --before)
    args = parser.parse_args()
    if args.before:  # run again against the unpacked tree, so that nothing of this one is imported
        import subprocess

        sys.path.insert(0, str(REPO / "src"))
        from cxrtriage.evaluation.trees import short_commit, unpack_src

        with tempfile.TemporaryDirectory(prefix="profile-before-") as tmp:
            src = unpack_src(args.before, Path(tmp), REPO)
            rest = [a for a in sys.argv[1:] if a not in ("--before", args.before)]
            cmd = [sys.executable, str(Path(__file__).resolve()), *rest, "--src", str(src)]
            env = {**os.environ, "PYTHONPATH": str(src), "PROFILE_COMMIT": short_commit(args.before, REPO),
                   "PROFILE_COMMAND": " ".join(["python", "scripts/profile_predict.py", *sys.argv[1:]])}  # fmt: skip
            raise SystemExit(subprocess.run(cmd, env=env).returncode)  # noqa: S603 - this script
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    os.environ["CXRTRIAGE_THREADS"] = "1"
    sys.path.insert(0, str(args.src or REPO / "src"))
    from cxrtriage.config import Settings
    from cxrtriage.data import load_split_records
    from cxrtriage.evaluation.bench import _bench_image
    from cxrtriage.pipeline import Triage

    data = args.data or Settings().find_data_dir(required=True)
    tmp = Path(tempfile.mkdtemp(prefix="profile-predict-"))
    try:
        engine = Triage(crops_dir=tmp / "crops")
        image = _bench_image(tmp)
        test = sorted(load_split_records(data, ("kermany",))["test"], key=lambda r: r.key)
        kinds = {
            "png_1024": [image],
            "dicom": sorted((data / "dicom").glob("*.dcm")),
            "pediatric_jpeg": [r.path for r in test[:N_JPEGS]],
        }
        load = [round(v, 2) for v in os.getloadavg()]
        result = {
            "what": "Triage.predict pinned to one CPU with one ONNX Runtime thread: per-stage p50 (the result's "
            "timings_ms) and the functions with the most own time (cProfile, ms per predict), per input kind; "
            "floors: the PNG decode and each ONNX model alone",
            "command": os.environ.get("PROFILE_COMMAND")
            or " ".join(["python", "scripts/profile_predict.py", *sys.argv[1:]]),
            "tree": os.environ.get("PROFILE_COMMIT") or "this working tree",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), pinned to CPU {cpu}",
            "load_average_at_start": load,
            "inputs": {k: profile_inputs(engine, v, args.repeats) for k, v in kinds.items() if v},
            "floors": floors(engine, image, args.repeats),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "what"}, indent=1))


if __name__ == "__main__":
    main()
