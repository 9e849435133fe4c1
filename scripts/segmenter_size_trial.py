#!/usr/bin/env python3
"""Would a smaller lung-and-heart segmentation network buy issue 26's speed, and what would it cost?

The segmentation network is the largest cost of ``predict`` after the PNG decode (``predict_profile.json``). This
trial trains the same U-Net (same widths, data, split, seed, epochs and int8 export) at a smaller input size, builds
a copy of the bundled weights with it in place of ``segment.onnx`` (its graphs rebuilt, as ``make export`` does) and
measures, against the bundled generation, in one run:

* **accuracy**: the test Dice of each structure on the held-out JSRT test part, at the network's resolution and at
  the films' own size (int8, as exported: ``segment.json`` of each);
* **speed**: the segmentation network alone, and end-to-end ``predict`` on the 1024 px bench image (``cxrtriage
  bench``'s), both engines' calls interleaved, pinned to one CPU with one ONNX Runtime thread;
* **answers**: the first ``--n`` test films of NIH, pediatric, Shenzhen and JSRT and the shared DICOMs through both
  engines: label, review flag and refusal agreement, the largest score difference, and how far the cardiothoracic
  ratio and the lung areas move. The view probe and the frontal checks read the anatomy; they are *not* refitted
  here, so disagreements show what a refit would have to absorb.

    python scripts/segmenter_size_trial.py --size 128 [--epochs 60] [--n 60]
        [--checkpoint runs/segment-128/checkpoint.pt] [--out prototype/eval/segmenter_size_trial.json]

Nothing is adopted: the bundled weights are untouched, and the trial bundle lives in a temporary folder that is
removed. Only numbers and file counts are written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def checkpoint_for(size: int, epochs: int, data_dir: Path, given: Path | None) -> tuple[Path, float | None]:
    """The trained checkpoint (``given``, or a new training run into ``runs/segment-<size>``) and the training's
    wall time in seconds (None when reused)."""
    if given is not None:
        return given, None
    from cxrtriage.train.segmentation import SegTrainConfig, train

    t = time.perf_counter()
    path = train(SegTrainConfig(data_dir=str(data_dir), out_dir=f"runs/segment-{size}", input_size=size, epochs=epochs))
    return path, round(time.perf_counter() - t, 1)


def trial_bundle(checkpoint: Path, data_dir: Path, folder: Path) -> Path:
    """A copy of the bundled weights with the trial's segmentation network and the graphs rebuilt from it."""
    from cxrtriage import config
    from cxrtriage.train.browser_graphs import write_graphs
    from cxrtriage.train.segmentation_export import export_segmenter

    weights = folder / "weights"
    shutil.copytree(config.BUNDLED_WEIGHTS_DIR, weights)
    log = checkpoint.parent / "train_log.json"
    export_segmenter(checkpoint, weights, data_dir=data_dir, train_log=log if log.is_file() else None)
    write_graphs(weights, weights)
    return weights


def _engine(weights: Path, crops: Path):  # noqa: ANN202 - a Triage
    from cxrtriage.config import Settings
    from cxrtriage.pipeline import Triage

    settings = Settings(threads=1, segmenter_dir=weights)
    return Triage(model_dir=weights, crops_dir=crops, settings=settings)


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def timing(bundled: Path, trial: Path, image: Path, repeats: int, crops: Path) -> dict:
    """One-core p50s: each segmentation network alone (its own input size, random input), and ``predict``
    end to end with the stage the result reports as ``segment``, the two engines interleaved."""
    import numpy as np
    import onnxruntime as ort

    from cxrtriage.anatomy.segmenter import SEGMENT_META_FILE, SEGMENT_MODEL_FILE
    from cxrtriage.evaluation.bench import interleaved_ms

    def session(weights: Path):  # noqa: ANN202
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        size = json.loads((weights / SEGMENT_META_FILE).read_text())["preprocess"]["input_size"]
        s = ort.InferenceSession(str(weights / SEGMENT_MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        x = {s.get_inputs()[0].name: np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)}
        return lambda: s.run(None, x)

    network = interleaved_ms([session(bundled), session(trial)], repeats)
    engines = [_engine(bundled, crops), _engine(trial, crops)]
    stages: list[list[float]] = [[], []]

    def call(i: int):  # noqa: ANN202
        def run() -> None:
            stages[i].append(engines[i].predict(image).timings_ms["segment"])

        return run

    total = interleaved_ms([call(0), call(1)], repeats)
    names = ("bundled", "trial")
    return {
        "segmentation_network_ms": {n: _p50(t) for n, t in zip(names, network, strict=True)},
        "predict_ms": {n: _p50(t) for n, t in zip(names, total, strict=True)},
        "segment_stage_ms": {n: _p50(t[-repeats:]) for n, t in zip(names, stages, strict=True)},
        "repeats": repeats,
    }


def _answer(engine, path: Path) -> dict:  # noqa: ANN001 - a Triage
    from cxrtriage.errors import NotAChestXrayError

    try:
        p = engine.predict(path, save_crops=False)
    except NotAChestXrayError as exc:
        return {"refused": str(exc)}
    a = p.anatomy or {}
    return {
        "label": p.label,
        "score": p.score,
        "needs_review": p.needs_review,
        "ctr": a.get("cardiothoracic_ratio"),
        "areas": (a.get("right_lung_area_fraction", 0.0), a.get("left_lung_area_fraction", 0.0)),
    }


def agreement(bundled: Path, trial: Path, films: dict[str, list[Path]], crops: Path) -> dict:
    """Per source: how many films get the same label, review flag and refusal from both engines, the largest score
    difference, and the median and largest moves of the cardiothoracic ratio and the lung areas."""
    engines = (_engine(bundled, crops), _engine(trial, crops))
    out = {}
    for source, paths in films.items():
        pairs = [(_answer(engines[0], p), _answer(engines[1], p)) for p in paths]
        both = [(a, b) for a, b in pairs if "refused" not in a and "refused" not in b]
        ctr = [abs(a["ctr"] - b["ctr"]) for a, b in both if a["ctr"] is not None and b["ctr"] is not None]
        areas = [abs(x - y) for a, b in both for x, y in zip(a["areas"], b["areas"], strict=True)]
        out[source] = {
            "films": len(pairs),
            "same_refusal": sum(("refused" in a) == ("refused" in b) for a, b in pairs),
            "same_label": sum(a["label"] == b["label"] for a, b in both),
            "same_review_flag": sum(a["needs_review"] == b["needs_review"] for a, b in both),
            "triaged_by_both": len(both),
            "max_score_difference": round(max((abs(a["score"] - b["score"]) for a, b in both), default=0.0), 4),
            "ctr_difference_median_max": [round(statistics.median(ctr), 4), round(max(ctr), 4)] if ctr else None,
            "ctr_reported_by_one_only": sum((a["ctr"] is None) != (b["ctr"] is None) for a, b in both),
            "lung_area_difference_median_max": [round(statistics.median(areas), 4), round(max(areas), 4)]
            if areas
            else None,
        }
    return out


def _dice(weights: Path) -> dict:
    meta = json.loads((weights / "segment.json").read_text())
    dice = meta["test_dice"]
    return {
        "input_size": meta["preprocess"]["input_size"],
        "model_resolution_int8": dice["model_resolution_int8"],
        "original_size_int8_runtime": dice["original_size_int8_runtime"],
        "original_size_int8_runtime_min": dice["original_size_int8_runtime_min"],
        "training_wall_s": meta["training"]["wall_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="the trial network's input size (bundled: 192)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--checkpoint", type=Path, default=None, help="reuse a trained checkpoint instead")
    parser.add_argument("--n", type=int, default=60, help="test films per source for the answers")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--cpu", type=int, default=1, help="the CPU the timings are pinned to")
    parser.add_argument("--out", type=Path, default=REPO / "prototype/eval/segmenter_size_trial.json")
    args = parser.parse_args()

    from gate_robustness import _films

    from cxrtriage import config
    from cxrtriage.evaluation.bench import _bench_image

    data_dir = config.Settings().find_data_dir(required=True)
    checkpoint, train_s = checkpoint_for(args.size, args.epochs, data_dir, args.checkpoint)
    os.sched_setaffinity(0, {args.cpu})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cxrtriage-segtrial-") as tmp:
        folder = Path(tmp)
        trial = trial_bundle(checkpoint, data_dir, folder)
        bundled = config.BUNDLED_WEIGHTS_DIR
        films = _films(data_dir, args.n)
        films["dicom"] = sorted((data_dir / "dicom").glob("*.dcm"))
        result = {
            "what": "the bundled lung-and-heart U-Net against the same network trained and exported at a smaller "
            "input size: test Dice, one-core speed, and the answers of the whole pipeline with each (view probe "
            "not refitted); nothing adopted",
            "command": "python scripts/segmenter_size_trial.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), timings pinned to CPU {args.cpu}",
            "load_average_at_start": [round(x, 2) for x in load_before],
            "trial_training_wall_s_this_run": train_s,
            "dice": {"bundled": _dice(bundled), "trial": _dice(trial)},
            "timing": timing(bundled, trial, _bench_image(folder), args.repeats, folder / "crops"),
            "answers": agreement(bundled, trial, films, folder / "crops"),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("dice", "timing")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
