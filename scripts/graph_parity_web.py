"""Do the wrapped graphs give the engine's numbers under onnxruntime-web (WebAssembly), as they do under onnxruntime?

Builds ``classify_full.onnx`` and ``segment_full.onnx`` into a temporary folder, takes the exposed-field crops of a
few held-out test films of each source and the shared DICOMs (as ``cxrtriage.evaluation.graph_parity`` makes them),
runs both graphs on them with onnxruntime-web's WASM backend in Node (single thread), and compares with the engine's
Python path: score, model inputs, CAM, segmentation probabilities and masks. The crops stay in the temporary folder
(deleted at the end); the JSON holds file names and figures only.

    python scripts/graph_parity_web.py [--ort-web demo_app/browser/node_modules/onnxruntime-web] [--per-source 2]

Writes prototype/eval/graph_parity_web.json. Needs Node and an onnxruntime-web package folder (the browser page's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess  # noqa: S404 - runs the local Node binary on a script this file writes
import sys
import tempfile
from pathlib import Path

import numpy as np

from cxrtriage.anatomy.segmenter import Segmenter
from cxrtriage.backends.bundled import BundledOnnxBackend
from cxrtriage.config import Settings
from cxrtriage.evaluation.graph_parity import engine_crop, parity_images
from cxrtriage.imaging.preprocess import clip_unit, resize_square, to_model_input
from cxrtriage.train.browser_graphs import write_graphs

RUNNER = """
import * as ort from "%(ort)s";
import fs from "fs";
ort.env.wasm.numThreads = 1;
const dir = process.argv[2];
const meta = JSON.parse(fs.readFileSync(`${dir}/meta.json`));
const cls = await ort.InferenceSession.create(`${dir}/classify_full.onnx`, { executionProviders: ["wasm"] });
const seg = await ort.InferenceSession.create(`${dir}/segment_full.onnx`, { executionProviders: ["wasm"] });
const out = [];
for (let i = 0; i < meta.length; i++) {
  const buf = fs.readFileSync(`${dir}/in${i}.bin`);
  const t = new ort.Tensor("float32", new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4),
                           [1, 1, meta[i].h, meta[i].w]);
  const t0 = performance.now();
  const c = await cls.run({ crop: t });
  const s = await seg.run({ crop: t });
  const ms = performance.now() - t0;
  for (const [k, v] of [["mi", c.model_input], ["cam", c.cam], ["smi", s.model_input], ["probs", s.probs]])
    fs.writeFileSync(`${dir}/web_${k}${i}.bin`, Buffer.from(v.data.buffer));
  out.push({ score: c.score.data[0], ms });
}
fs.writeFileSync(`${dir}/web_out.json`, JSON.stringify(out));
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ort-web", type=Path, default=Path("demo_app/browser/node_modules/onnxruntime-web"))
    parser.add_argument("--per-source", type=int, default=2, help="test films per source (the DICOMs: all)")
    parser.add_argument("--out", type=Path, default=Path("prototype/eval/graph_parity_web.json"))
    args = parser.parse_args()
    node = shutil.which("node")
    module = (args.ort_web / "dist" / "ort.node.min.mjs").resolve()
    if node is None or not module.is_file():
        print(f"needs node on PATH and {module}", file=sys.stderr)
        return 2
    settings = Settings()
    backend, segmenter = BundledOnnxBackend(threads=1), Segmenter(threads=1)
    picked: dict[str, list[Path]] = {}
    for source, path in parity_images(settings.find_data_dir(required=True)):  # type: ignore[arg-type]
        if source == "dicom" or len(picked.get(source, [])) < args.per_source:
            picked.setdefault(source, []).append(path)
    files = [(s, p) for s, paths in picked.items() for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_graphs(folder)
        crops = [engine_crop(p, backend, settings) for _, p in files]
        for i, crop in enumerate(crops):
            crop.astype("<f4").tofile(folder / f"in{i}.bin")
        meta = [{"h": c.shape[0], "w": c.shape[1]} for c in crops]
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        (folder / "run.mjs").write_text(RUNNER % {"ort": module.as_posix()}, encoding="utf-8")
        subprocess.run([node, str(folder / "run.mjs"), str(folder)], check=True)  # noqa: S603 - our own script
        web = json.loads((folder / "web_out.json").read_text(encoding="utf-8"))
        rows = []
        for i, ((source, path), crop, w) in enumerate(zip(files, crops, web)):
            squashed = resize_square(clip_unit(crop), backend.preprocess_cfg.hw[0])
            out, seg = backend.analyze(squashed), segmenter.segment(crop)
            x, xs = to_model_input(squashed, backend.preprocess_cfg), to_model_input(crop, segmenter.preprocess_cfg)

            def read(key: str, like: np.ndarray, i: int = i) -> np.ndarray:
                return np.fromfile(folder / f"web_{key}{i}.bin", "<f4").reshape(like.shape)

            probs = read("probs", seg.probs)
            rows.append(
                {
                    "source": source,
                    "file": path.name,
                    "score_abs_diff": abs(float(w["score"]) - out.score),
                    "input_pixels_differing": int((read("mi", x) != x).sum()),
                    "segment_input_pixels_differing": int((read("smi", xs) != xs).sum()),
                    "cam_max_abs_diff": float(np.abs(read("cam", out.cam) - out.cam).max()),  # type: ignore[arg-type]
                    "prob_max_abs_diff": float(np.abs(probs - seg.probs).max()),
                    "masks_at_threshold_equal": bool(((probs >= seg.threshold) == (seg.probs >= seg.threshold)).all()),
                    "web_ms_both_graphs": float(w["ms"]),
                }
            )
    version = json.loads((args.ort_web / "package.json").read_text(encoding="utf-8"))["version"]
    report = {
        "command": "python scripts/graph_parity_web.py " + " ".join(sys.argv[1:]),
        "onnxruntime_web": version,
        "node": subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip(),  # noqa: S603
        "n": len(rows),
        "score_max_abs_diff": max(r["score_abs_diff"] for r in rows),
        "films_with_input_diff": sum(
            r["input_pixels_differing"] > 0 or r["segment_input_pixels_differing"] > 0 for r in rows
        ),
        "all_masks_equal": all(r["masks_at_threshold_equal"] for r in rows),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
