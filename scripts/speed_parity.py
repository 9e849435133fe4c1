#!/usr/bin/env python3
"""Same predictions in less time: this tree's exposed-field stage and ``predict`` against a baseline commit's.

Issue 24's budget is end-to-end ``predict`` p50 <= 60 ms on a 1024 px PNG; a speed-up may not change any result.
This script checks both, with the baseline's ``src/`` unpacked from git (``git archive``):

1. **field**: every test-split film of NIH, pediatric, Shenzhen and JSRT, in every acquisition variant of
   ``cxrtriage.imaging.acquisition.VARIANTS``, goes through the baseline's ``find_field`` and this tree's, both loaded
   in this process: the rectangles must be the same.
2. **predict**: the same films, as they are and on the two canvas variants, and the shared DICOM files, through
   ``Triage.predict`` of each tree (one process per tree, the bundled model and segmentation): label, score, review
   flag, warnings, explanation, image facts (exposed field, layout residual, similarity), anatomy, findings and
   crops (boxes, and the sha256 of each thumbnail's PNG) must be equal; a refusal must be the same refusal. Where
   anything differs, the label and review agreement and the largest score difference say how much.
3. **timing**: the field stage of both trees on the 1024 px bench image (and on it placed on a canvas), calls
   interleaved in this process; then end-to-end ``predict`` of both trees on that image, one call at a time,
   alternating between the two trees' worker processes, so both see the same machine load (``--one-core``: both
   pinned to one CPU with one ONNX thread; :mod:`cxrtriage.evaluation.trees`).

    python scripts/speed_parity.py --baseline a41a028 [--repeats 60] [--out prototype/eval/speed_parity.json]
    python scripts/speed_parity.py --baseline bbadd9b --one-core --out prototype/eval/speed_parity_26.json

No image leaves the machine: thumbnails go to a temporary folder that is removed, and the output holds counts,
file names of mismatches (none expected) and timings only.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
#: the variants every film also goes through ``predict`` in (the field alone is checked in all of them)
PREDICT_VARIANTS = ("original", "canvas", "canvas_noise_marker")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _films(data_dir: Path) -> dict[str, list[Path]]:
    """Every test-split film per source (gate_robustness.py's selection, all of them)."""
    return _load(REPO / "scripts/gate_robustness.py", "_gate_robustness")._films(data_dir, None)


def _dicoms(data_dir: Path) -> list[Path]:
    """The shared DICOM files (data/README.md: ``dicom/``)."""
    return sorted((data_dir / "dicom").glob("*.dcm"))


def _digest(prediction: object, refused: str | None) -> dict:
    """What a result says, without its timings and with each thumbnail's bytes as a hash (the files differ in name)."""
    if refused is not None:
        return {"refused": refused}
    out = prediction.model_dump(mode="json")  # type: ignore[attr-defined]
    out.pop("timings_ms", None)
    for crop in out.get("crops") or []:
        thumb = Path(crop.pop("thumb_path"))
        crop["thumb_sha256"] = hashlib.sha256(thumb.read_bytes()).hexdigest()
        thumb.unlink()
    return out


def worker_parity(data_dir: Path) -> dict:
    """This process's tree (PYTHONPATH): the digest of every film in each of PREDICT_VARIANTS."""
    from cxrtriage.errors import NotAChestXrayError
    from cxrtriage.imaging.load import load_image
    from cxrtriage.pipeline import Triage

    variants = _load(REPO / "src/cxrtriage/imaging/acquisition.py", "_acquisition").VARIANTS
    crops = Path(tempfile.mkdtemp(prefix="speed-parity-"))
    try:
        engine = Triage(crops_dir=crops)
        out: dict = {}
        for source, paths in _films(data_dir).items():
            for path in paths:
                pixels = load_image(path).pixels
                for name in PREDICT_VARIANTS:
                    try:
                        pred, refused = engine.predict(variants[name](pixels)), None
                    except NotAChestXrayError as exc:
                        pred, refused = None, str(exc)
                    out[f"{source}/{path.name}/{name}"] = _digest(pred, refused)
        for path in _dicoms(data_dir):  # as files: their headers (MONOCHROME1, modality) take part
            try:
                pred, refused = engine.predict(path), None
            except NotAChestXrayError as exc:
                pred, refused = None, str(exc)
            out[f"dicom/{path.name}/original"] = _digest(pred, refused)
        return out
    finally:
        shutil.rmtree(crops, ignore_errors=True)


def _worker(src: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", *args], {**os.environ, "PYTHONPATH": str(src)}


def _rect(field: object) -> tuple:
    """A field as plain values (the two trees' ExposedField are different classes)."""
    return tuple(getattr(field, k) for k in ("x0", "y0", "x1", "y1", "shape"))


def check_fields(before: ModuleType, after: ModuleType, data_dir: Path) -> dict:
    """Part 1: the two trees' field rectangles on every film and variant."""
    from cxrtriage.imaging.acquisition import VARIANTS
    from cxrtriage.imaging.load import load_image

    counts = {"images": 0, "same": 0, "not_whole": 0}
    differ: list[str] = []
    for source, paths in _films(data_dir).items():
        for path in paths:
            pixels = load_image(path).pixels
            for name, make in VARIANTS.items():
                image = make(pixels)
                old, new = before.find_field(image), after.find_field(image)
                counts["images"] += 1
                counts["same"] += _rect(old) == _rect(new)
                counts["not_whole"] += not new.is_whole
                if _rect(old) != _rect(new):
                    differ.append(f"{name}: {source}/{path.name} {old} -> {new}")
    return {**counts, "differ": differ, "variants": list(VARIANTS)}


def _no_thumbs(digest: dict) -> dict:
    """A digest without its thumbnails' hashes: the answer (label, score, boxes, ...) alone."""
    return {**digest, "crops": [{k: v for k, v in c.items() if k != "thumb_sha256"} for c in digest.get("crops") or []]}


def _by_source(before: dict, after: dict) -> dict:
    """Per dataset and variant (the key's first and last parts): results, answers identical apart from the
    thumbnails, same label (or refusal), and the largest score difference."""
    out: dict[str, dict] = {}
    for key in sorted(before.keys() & after.keys()):
        parts = key.split("/")
        b, a = before[key], after[key]
        row = out.setdefault(f"{parts[0]}/{parts[-1]}", {"results": 0, "same_answer": 0, "same_label": 0,
                                                         "max_abs_score_delta": 0.0})  # fmt: skip
        row["results"] += 1
        row["same_answer"] += _no_thumbs(b) == _no_thumbs(a)
        row["same_label"] += b.get("label", b.get("refused")) == a.get("label", a.get("refused"))
        if "score" in a and "score" in b:
            row["max_abs_score_delta"] = round(max(row["max_abs_score_delta"], abs(a["score"] - b["score"])), 4)
    return out


def check_predictions(baseline_src: Path, data_dir: Path) -> dict:
    """Part 2: every digest of this tree against the baseline's."""
    procs = {}
    for label, src in (("before", baseline_src), ("after", REPO / "src")):  # side by side: results, not timings
        cmd, env = _worker(src, "parity", "--data", str(data_dir))
        procs[label] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own script
    runs = {label: proc.communicate()[0] for label, proc in procs.items()}
    if any(proc.returncode for proc in procs.values()):
        raise RuntimeError("a parity worker failed")
    before, after = json.loads(runs["before"]), json.loads(runs["after"])
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    refused = sum("refused" in v for v in after.values())
    crops = sum(len(v.get("crops") or []) for v in after.values())
    both = [(before[k], after[k]) for k in before.keys() & after.keys()]
    deltas = [abs(a["score"] - b["score"]) for b, a in both if "score" in a and "score" in b]
    return {"results": len(after), "identical": len(after) - len(differ), "refused": refused, "crops": crops,
            "identical_apart_from_thumbnails": sum(_no_thumbs(before[k]) == _no_thumbs(after[k])
                                                   for k in before.keys() & after.keys()),
            "by_source": _by_source(before, after),
            "same_label_or_refusal": sum(b.get("label", b.get("refused")) == a.get("label", a.get("refused"))
                                         for b, a in both),
            "same_needs_review": sum(b.get("needs_review") == a.get("needs_review") for b, a in both),
            "max_abs_score_delta": max(deltas, default=0.0),
            "variants": list(PREDICT_VARIANTS), "differ": differ}  # fmt: skip


def _stats(ms: list[float]) -> dict:
    from cxrtriage.evaluation.bench import _stats as bench_stats

    return {**bench_stats(ms), "mean_ms": round(statistics.fmean(ms), 2)}


def time_fields(before: ModuleType, after: ModuleType, image: Path, repeats: int) -> dict:
    """Part 3a: the field stage of both trees, calls interleaved, on the bench image and on it on a canvas."""
    from cxrtriage.evaluation.bench import interleaved_ms
    from cxrtriage.imaging.acquisition import on_canvas
    from cxrtriage.imaging.load import load_image

    pixels = load_image(image).pixels
    out = {}
    for name, x in (("film_1024", pixels), ("canvas_2400", on_canvas(pixels))):
        new, old = interleaved_ms([lambda x=x: after.find_field(x), lambda x=x: before.find_field(x)], repeats * 4)
        out[name] = {"shape": list(x.shape), "before": _stats(old), "after": _stats(new)}
    return out


def time_predict(baseline_src: Path, image: Path, repeats: int, cpu: int | None) -> dict:
    """Part 3b: end-to-end predict of both trees, alternating one call at a time between their worker processes
    (:func:`cxrtriage.evaluation.trees.time_trees`; ``cpu``: both pinned to it with one ONNX thread)."""
    from cxrtriage.evaluation.trees import time_trees

    timed = time_trees({"before": baseline_src, "after": REPO / "src"}, image, repeats, cpu)
    return {label: t["end_to_end"] for label, t in timed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--repeats", type=int, default=60, help="predict calls per tree (the field stage: 4x)")
    parser.add_argument("--out", type=Path, default=REPO / "prototype/eval/speed_parity.json")
    parser.add_argument("--skip-parity", action="store_true", help="timings only (parts 1 and 2 skipped)")
    parser.add_argument("--data", type=Path, help="data directory (default: the configured one)")
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one-core", action="store_true", help="time predict pinned to one CPU, one ONNX thread")
    parser.add_argument("--worker", choices=("parity",), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "parity":
        print(json.dumps(worker_parity(args.data)))
        return
    sys.path.insert(0, str(REPO / "src"))
    from cxrtriage.config import Settings
    from cxrtriage.evaluation.bench import _bench_image
    from cxrtriage.evaluation.trees import pick_cpu, unpack_src

    data_dir = args.data or Settings().find_data_dir(required=True)
    tmp = Path(tempfile.mkdtemp(prefix="speed-parity-"))
    try:
        baseline_src = unpack_src(args.baseline, tmp, REPO)
        before = _load(baseline_src / "cxrtriage/imaging/exposed_field.py", "_field_before")
        after = _load(REPO / "src/cxrtriage/imaging/exposed_field.py", "_field_after")
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)  # noqa: S607
        base = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO, capture_output=True, text=True)  # noqa: S603,S607
        result: dict = {
            "what": "this tree's exposed-field stage and predict against the baseline's: same results, and the "
            "time of each (field stage interleaved in one process; predict alternating call by call between the "
            "two trees' processes) on a 1024 px NIH test film upsampled (cxrtriage bench's image)",
            "command": " ".join(["python", "scripts/speed_parity.py", *sys.argv[1:]]),
            "commit": head.stdout.strip(),
            "baseline": base.stdout.strip(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        }
        if not args.skip_parity:
            result["field_parity"] = check_fields(before, after, data_dir)
            result["predict_parity"] = check_predictions(baseline_src, data_dir)
        image = _bench_image(tmp)
        result["field_stage_ms"] = time_fields(before, after, image, args.repeats)
        cpu = pick_cpu() if args.one_core else None
        result["predict_ms"] = time_predict(baseline_src, image, args.repeats, cpu)
        result["predict_pinned_cpu"] = cpu
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "what"}, indent=1))


if __name__ == "__main__":
    main()
