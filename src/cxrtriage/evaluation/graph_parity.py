"""How far the wrapped graphs (``classify_full.onnx``, ``segment_full.onnx``) are from the engine's own numeric path.

For each held-out test image (NIH, pediatric, Shenzhen, JSRT test parts and the shared DICOMs) the image is decoded
and cropped to its exposed field as the engine does (``load_image`` with the engine's limits, ``find_field``, the
MONOCHROME1 polarity check); then

* the engine's path: the float squash to the model size (what ``Triage._gate`` hands the classifier),
  ``BundledOnnxBackend.analyze`` (``to_model_input`` + ``model.onnx`` + Platt + CAM + embedding) and
  ``Segmenter.segment`` (``to_model_input`` with the percentile window + ``segment.onnx`` + sigmoid);
* the graphs, on the same crop at its own size, built for each resize mode (Pillow's resample in plain ops, and
  ONNX ``Resize`` with antialias for comparison).

Reported per mode: score differences (max, p99), label agreement at the model's threshold, review-band agreement,
the model input's largest difference and how many images and pixels differ at all, the CAM's correlation, and for
the segmentation the probability difference and the Dice of the masks (``Segmentation.mask`` on both). No image
leaves the machine: the JSON holds counts, figures and file names only.

``python -m cxrtriage.evaluation.graph_parity`` writes ``prototype/eval/graph_parity.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cxrtriage.anatomy.segmenter import Segmentation, Segmenter
from cxrtriage.backends.bundled import BundledOnnxBackend
from cxrtriage.config import Settings
from cxrtriage.data import jsrt_records, jsrt_split, load_split_records
from cxrtriage.imaging.exposed_field import analysed_region
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.polarity import should_flip
from cxrtriage.imaging.preprocess import clip_unit, resize_square, to_model_input
from cxrtriage.train.browser_graphs import write_graphs
from cxrtriage.train.graph_ops import RESIZE_OP, RESIZE_PIL

DEFAULT_OUT = Path("prototype") / "eval" / "graph_parity.json"
#: pediatric test films taken (evenly spaced over the sorted list): the set has 480, the other sources far fewer
DEFAULT_PEDIATRIC = 100


def parity_images(data_dir: Path, pediatric: int = DEFAULT_PEDIATRIC) -> list[tuple[str, Path]]:
    """(source, path) of the held-out test films: every NIH, Shenzhen and JSRT test film, ``pediatric`` of the
    pediatric ones, and the DICOMs of ``<data>/dicom``."""
    parts = load_split_records(data_dir, datasets=("nih", "kermany", "shenzhen"))["test"]
    out = [(r.dataset, r.path) for r in sorted(parts, key=lambda r: (r.dataset, r.image_id)) if r.dataset != "kermany"]
    kids = sorted((r for r in parts if r.dataset == "kermany"), key=lambda r: r.image_id)
    step = max(1, len(kids) // max(pediatric, 1))
    out += [("kermany", r.path) for r in kids[::step][:pediatric]]
    out += [("jsrt", r.path) for r in jsrt_split(jsrt_records(data_dir))["test"]]
    out += [("dicom", p) for p in sorted((data_dir / "dicom").glob("*.dcm"))]
    return out


def engine_crop(path: Path, backend: BundledOnnxBackend, settings: Settings) -> np.ndarray:
    """The exposed field, box-averaged for analysis (``analysed_region``), in display polarity: what the engine's
    later stages analyse."""
    loaded = load_image(path, max_pixels=settings.max_pixels, max_working_pixels=settings.max_working_pixels)
    crop = analysed_region(loaded.pixels)
    layout = backend.layout
    mono1 = (loaded.meta.photometric_interpretation or "").upper() == "MONOCHROME1"
    if layout is not None and mono1 and should_flip(crop, layout):
        crop = (1.0 - crop).astype(np.float32)
    return np.ascontiguousarray(crop, dtype=np.float32)


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as the engine's sessions here: the timings compare like with like
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return 1.0 if np.array_equal(x, y) else 0.0
    return float(np.corrcoef(x, y)[0, 1])


def compare_one(crop: np.ndarray, backend: BundledOnnxBackend, segmenter: Segmenter, graphs: dict) -> dict:
    """One crop through the engine's path and through each mode's graphs: the per-image differences."""
    t = time.perf_counter()
    squashed = resize_square(clip_unit(crop), backend.preprocess_cfg.hw[0])
    out = backend.analyze(squashed)
    seg = segmenter.segment(crop)
    python_ms = (time.perf_counter() - t) * 1e3
    x_py = to_model_input(squashed, backend.preprocess_cfg)
    xs_py = to_model_input(crop, segmenter.preprocess_cfg)
    row: dict = {"python_ms": python_ms, "score": out.score}
    for mode, (cls, sgm) in graphs.items():
        t = time.perf_counter()
        g = dict(zip([o.name for o in cls.get_outputs()], cls.run(None, {"crop": crop[None, None]})))
        gs = dict(zip([o.name for o in sgm.get_outputs()], sgm.run(None, {"crop": crop[None, None]})))
        graph_ms = (time.perf_counter() - t) * 1e3
        gseg = Segmentation(probs=gs["probs"][0], structures=seg.structures, shape=seg.shape, threshold=seg.threshold)
        input_diff = np.abs(g["model_input"] - x_py)
        row[mode] = {
            "graph_ms": graph_ms,
            "score": float(g["score"][0]),
            "score_diff": abs(float(g["score"][0]) - out.score),
            "logit_diff": abs(float(g["logit"][0]) - out.logit),
            "input_max_diff": float(input_diff.max()),
            "input_pixels_differing": int((input_diff > 1e-6).sum()),
            "resized_max_diff": float(np.abs(g["resized"][0, 0] - squashed).max()),
            "cam_corr": _corr(g["cam"][0], out.cam) if out.cam is not None else None,
            "cam_max_diff": float(np.abs(g["cam"][0] - out.cam).max()) if out.cam is not None else None,
            "embedding_max_diff": float(np.abs(g["embedding"][0] - out.embedding).max())
            if out.embedding is not None
            else None,
            "seg_input_max_diff": float(np.abs(gs["model_input"] - xs_py).max()),
            "seg_prob_max_diff": float(np.abs(gs["probs"][0] - seg.probs).max()),
            "dice": {s: _dice(gseg.mask(s), seg.mask(s)) for s in seg.structures},
        }
    return row


def _in_band(score: float, band: Sequence[float] | None) -> bool:
    return band is not None and band[0] <= score < band[1]


def summarise(rows: list[dict], mode: str, threshold: float, band: Sequence[float] | None) -> dict:
    """The figures of one resize mode over every image."""
    m = [r[mode] for r in rows]
    sd = np.array([x["score_diff"] for x in m])
    same_label = [(r["score"] >= threshold) == (x["score"] >= threshold) for r, x in zip(rows, m)]
    same_band = [_in_band(r["score"], band) == _in_band(x["score"], band) for r, x in zip(rows, m)]
    cams = [x["cam_corr"] for x in m if x["cam_corr"] is not None]
    structures = list(m[0]["dice"]) if m else []
    worst = max(range(len(m)), key=lambda i: m[i]["score_diff"]) if m else None
    return {
        "n": len(m),
        "score_max_abs_diff": float(sd.max()),
        "score_p99_abs_diff": float(np.percentile(sd, 99)),
        "score_mean_abs_diff": float(sd.mean()),
        "images_score_identical": int((sd == 0).sum()),
        "logit_max_abs_diff": max(x["logit_diff"] for x in m),
        "label_agreement": float(np.mean(same_label)),
        "label_disagreements": int(len(same_label) - sum(same_label)),
        "review_band_agreement": float(np.mean(same_band)),
        "input_max_abs_diff": max(x["input_max_diff"] for x in m),
        "images_with_input_diff": sum(x["input_pixels_differing"] > 0 for x in m),
        "input_pixels_differing_max": max(x["input_pixels_differing"] for x in m),
        "resized_max_abs_diff": max(x["resized_max_diff"] for x in m),
        "cam_corr_min": float(min(cams)) if cams else None,
        "cam_corr_median": float(np.median(cams)) if cams else None,
        "cam_max_abs_diff": max((x["cam_max_diff"] or 0.0) for x in m),
        "embedding_max_abs_diff": max((x["embedding_max_diff"] or 0.0) for x in m),
        "segmentation": {
            "input_max_abs_diff": max(x["seg_input_max_diff"] for x in m),
            "prob_max_abs_diff": max(x["seg_prob_max_diff"] for x in m),
            "dice_min": {s: min(x["dice"][s] for x in m) for s in structures},
            "dice_mean": {s: float(np.mean([x["dice"][s] for x in m])) for s in structures},
        },
        "worst_score_image": rows[worst]["file"] if worst is not None else None,
        "graph_ms_median": float(np.median([x["graph_ms"] for x in m])),
        "python_ms_median": float(np.median([r["python_ms"] for r in rows])),
    }


def run(data_dir: Path, out: Path, pediatric: int = DEFAULT_PEDIATRIC, command: str = "") -> dict:
    settings = Settings()
    # the numpy path (graphs=False): by default the engine runs the bundled graphs and would compare them to themselves
    backend, segmenter = BundledOnnxBackend(threads=1, graphs=False), Segmenter(threads=1, graphs=False)
    images = parity_images(data_dir, pediatric)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        for mode in (RESIZE_PIL, RESIZE_OP):
            cls_path, seg_path = write_graphs(Path(tmp) / mode, resize=mode)
            graphs[mode] = (_session(cls_path), _session(seg_path))
        rows = []
        for source, path in images:
            row = compare_one(engine_crop(path, backend, settings), backend, segmenter, graphs)
            rows.append({"source": source, "file": path.name, **row})
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    threshold, band = backend.threshold, backend.review_band
    report = {
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "load_average_at_end": list(os.getloadavg()),
            "threads_per_session": 1,
        },
        "model": backend.info.sha256,
        "segmenter": segmenter.sha256,
        "threshold": threshold,
        "review_band": list(band) if band else None,
        "counts": {**counts, "total": len(rows)},
        "engine_path": (
            "find_field crop -> analysis_image -> resize_square to 256 -> BundledOnnxBackend.analyze; "
            "Segmenter.segment(crop)"
        ),
        "graph_path": "classify_full.onnx and segment_full.onnx on the crop at its own size",
        "python_ms_median": float(np.median([r["python_ms"] for r in rows])),
        "modes": {mode: summarise(rows, mode, threshold, band) for mode in (RESIZE_PIL, RESIZE_OP)},
        "by_source": {
            mode: {s: summarise([r for r in rows if r["source"] == s], mode, threshold, band) for s in counts}
            for mode in (RESIZE_PIL, RESIZE_OP)
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: CXRTRIAGE_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--pediatric", type=int, default=DEFAULT_PEDIATRIC, help="pediatric test films to take")
    args = parser.parse_args(argv)
    data_dir = args.data or Settings().find_data_dir(required=True)
    if data_dir is None:  # find_data_dir(required=True) raises instead; for the type checker
        raise SystemExit("no data directory")
    command = "python -m cxrtriage.evaluation.graph_parity " + " ".join(sys.argv[1:] if argv is None else argv)
    report = run(data_dir, args.out, args.pediatric, command.strip())
    for mode, s in report["modes"].items():
        print(
            f"{mode}: n={s['n']} score max {s['score_max_abs_diff']:.2e} p99 {s['score_p99_abs_diff']:.2e}, "
            f"labels agree {s['label_agreement']:.3f}, band agree {s['review_band_agreement']:.3f}, "
            f"input max {s['input_max_abs_diff']:.2e} ({s['images_with_input_diff']} images differ), "
            f"CAM corr min {s['cam_corr_min']}, Dice min {s['segmentation']['dice_min']}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
