"""``cxrtriage browser-build --out DIR`` (``make browser``): the static page of ``demo_app/browser/`` as a plain
folder that any static file server (or ``cxrtriage serve`` at ``/local``) can serve, and that works offline.

What goes in, and why each piece:

* the page itself (HTML, ES modules, CSS) from ``demo_app/browser/``;
* ``vendor/``: onnxruntime-web's WebAssembly build (``ort.wasm.min.mjs`` plus the ``.mjs``/``.wasm`` pair it loads)
  and dicom-parser, copied from ``node_modules`` (``npm ci`` from the committed lock file when they are missing),
  so nothing is fetched from outside the folder at run time;
* ``models/``: ``classify_full.onnx`` and ``segment_full.onnx``, copied from the bundled weights (built by
  :mod:`cxrtriage.train.browser_graphs`, so this build needs no ``onnx``): the bundled ``model.onnx`` and
  ``segment.onnx`` with their resize, 8-bit quantization, percentile window, normalisation, calibration, sigmoid and
  activation map inside the graph. They are the graphs the Python engine runs too, so the page and ``cxrtriage
  predict`` share that arithmetic; each is checked against ``graphs.json`` first (its own sha256, and the sha256 of
  the model file and metadata it was built from: :func:`cxrtriage.graph_manifest.stale_reason`);
* ``models/index.f32``: the similar-case index the engine ships (``index.npz``: the training films' centred,
  L2-normalised embeddings, as little-endian float32 rows), so the page runs the same similarity check against the
  training films (refuse a film without a typical pair of lungs that resembles none of them, doubt one with) and
  names the same similar cases; its keys, labels, centre, k and threshold go in ``config.json``;
* ``config.json``: what the page decides with, written from ``model.json`` / ``segment.json`` and the Python
  modules' own constants (:func:`browser_config`), so the threshold, review band and the rules' numbers have one
  home each, in Python, plus each graph's file, sha256 and size.
"""

from __future__ import annotations

import json
import shutil
import subprocess  # noqa: S404 - npm ci, a fixed argument list, no shell
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage import config
from cxrtriage.anatomy import frontal, measure
from cxrtriage.backends.bundle_config import META_FILE
from cxrtriage.explain import evidence, provenance
from cxrtriage.files import sha256_file
from cxrtriage.graph_manifest import CLASSIFY_FULL_FILE, SEGMENT_FULL_FILE, stale_reason
from cxrtriage.imaging import analysis_size, exposed_field, gate, polarity
from cxrtriage.pipeline import MIN_BOX_LUNG_SHARE, N_NEIGHBOURS
from cxrtriage.schema import DISCLAIMER, MAX_CROPS

#: the page's own files (relative to demo_app/browser/)
PAGE_SUFFIXES = (".html", ".js", ".css")
#: vendored run-time files: node_modules path -> name under vendor/
VENDOR_FILES = {
    "onnxruntime-web/dist/ort.wasm.min.mjs": "ort.wasm.min.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
    "dicom-parser/dist/dicomParser.min.js": "dicomParser.min.js",
    "dicom-parser/LICENSE": "dicom-parser.LICENSE",
}
MODEL_FILES = ("model.onnx", "segment.onnx")
SEGMENT_META = "segment.json"
#: the graphs the page runs, under models/ (the bundled ones, as cxrtriage.train.browser_graphs writes them)
GRAPH_FILES = {"classifier": CLASSIFY_FULL_FILE, "segmenter": SEGMENT_FULL_FILE}
#: the similar-case index's embeddings, under models/
INDEX_FILE = "index.f32"


class BrowserBuildError(RuntimeError):
    """The page cannot be built (no npm and no node_modules, a model file that does not match its sha256)."""


#: where ``make browser`` builds the page, relative to the checkout; ``cxrtriage serve`` serves it at /local
DEFAULT_OUT = Path("build") / "browser"


def built_page(start: Path | None = None) -> Path | None:
    """The built page ``cxrtriage serve`` mounts: ``build/browser`` of the working directory, else of the checkout
    this package runs from (src layout); None when neither holds one (the service then has no /local)."""
    checkout = Path(__file__).resolve().parents[3]
    for folder in ((start or Path.cwd()) / DEFAULT_OUT, checkout / DEFAULT_OUT):
        if (folder / "index.html").is_file() and (folder / "config.json").is_file():
            return folder
    return None


def page_source(root: Path) -> Path:
    return root / "demo_app" / "browser"


def ensure_node_modules(source: Path) -> Path:
    """``node_modules`` of the page, installed with ``npm ci`` (the lock file's exact versions, no install scripts)
    when a vendored file is missing."""
    modules = source / "node_modules"
    if all((modules / name).is_file() for name in VENDOR_FILES):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise BrowserBuildError(f"{modules} is incomplete and npm is not installed: install Node.js and npm")
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    missing = [name for name in VENDOR_FILES if not (modules / name).is_file()]
    if done.returncode != 0 or missing:
        detail = done.stderr.strip()[-600:] or f"missing after it: {', '.join(missing)}"
        raise BrowserBuildError(f"npm ci in {source} failed (exit {done.returncode}): {detail}")
    return modules


def _model_block(meta: dict[str, Any], graph: Path) -> dict[str, Any]:
    """Name, version and sha256 of the bundled model (what the API reports), and the graph the page runs."""
    return {
        "name": meta["name"],
        "version": meta["version"],
        "sha256": meta["sha256"],
        "preprocess": meta["preprocess"],
        "file": f"models/{graph.name}",
        "graph_sha256": sha256_file(graph),
        "size_bytes": graph.stat().st_size,
    }


def write_index(weights_dir: Path, models_dir: Path) -> dict[str, Any]:
    """``models/index.f32`` (the index's embeddings as the engine computes with them: float32, row-major) and what
    the page needs beside it: keys, labels, the population each key's snippet names, the centre, and the
    out-of-distribution rule (k and the threshold of ``model.json``'s ``ood`` block)."""
    model = json.loads((weights_dir / META_FILE).read_text(encoding="utf-8"))
    with np.load(weights_dir / "index.npz", allow_pickle=False) as z:
        embeddings = np.ascontiguousarray(z["embeddings"], dtype="<f4")
        keys, labels, centre = [str(k) for k in z["keys"]], z["labels"].astype(bool).tolist(), z["centre"]
    path = models_dir / INDEX_FILE
    path.write_bytes(embeddings.tobytes())
    return {
        "file": f"models/{INDEX_FILE}",
        "sha256": sha256_file(path),
        "rows": int(embeddings.shape[0]),
        "dims": int(embeddings.shape[1]),
        "keys": keys,
        "urgent": labels,
        "populations": {k.split("/", 1)[0]: provenance.population(k) for k in keys},
        "centre": centre.astype(np.float32).tolist(),
        "k": int(model["ood"]["k"]),
        "min_knn_similarity": model["ood"].get("min_knn_similarity"),
        "neighbours": N_NEIGHBOURS,
    }


def browser_config(weights_dir: Path, models_dir: Path) -> dict[str, Any]:
    """Everything the page decides with, from the model metadata and the Python modules' constants; ``models_dir``
    holds the built graphs (:data:`GRAPH_FILES`)."""
    model = json.loads((weights_dir / META_FILE).read_text(encoding="utf-8"))
    segment = json.loads((weights_dir / SEGMENT_META).read_text(encoding="utf-8"))
    with np.load(weights_dir / "index.npz", allow_pickle=False) as z:
        layout = {
            "mean": z["layout_mean"].astype(np.float32).tolist(),
            "components": z["layout_components"].astype(np.float32).tolist(),
        }
    probe = model.get("view_probe") or {}
    return {
        "disclaimer": DISCLAIMER,
        "classifier": {
            **_model_block(model, models_dir / GRAPH_FILES["classifier"]),
            "labels": model["labels"],
            "threshold": model["threshold"],
            "review_band": model["review_band"],
            "max_layout_residual": model["ood"]["max_layout_residual"],
            "view_probe": {
                k: probe[k]
                for k in (
                    "mean",
                    "scale",
                    "coef",
                    "intercept",
                    "reject_above",
                    "review_above",
                    "reject_with_lungs_above",
                )
                if k in probe
            },
        },
        "segmenter": {
            **_model_block(segment, models_dir / GRAPH_FILES["segmenter"]),
            "structures": segment["structures"],
            "threshold": segment.get("threshold", 0.5),
        },
        "layout": {**layout, "thumb": 32},
        "rules": {
            "analysis": {
                "ANALYSIS_SIDE": analysis_size.ANALYSIS_SIDE,
                # a DICOM above it is box-averaged before its LUTs, as imaging/dicom.py does with the default setting
                "MAX_WORKING_PIXELS": config.DEFAULT_MAX_WORKING_PIXELS,
            },
            "field": {
                k: getattr(exposed_field, k)
                for k in (
                    "WORK_SIDE",
                    "DARK_TOL",
                    "FLAT_TOL",
                    "MIN_CONTENT_SHARE",
                    "MAX_AREA_SHARE",
                    "MIN_AREA_SHARE",
                    "MIN_SIDE",
                )
            },
            "gate": {
                k: getattr(gate, k)
                for k in (
                    "MIN_SIDE",
                    "MAX_ASPECT",
                    "MIN_STD",
                    "MIN_LOW_CONTRAST_SPREAD",
                    "MAX_COLOURFULNESS",
                    "MAX_ROUGHNESS",
                    "MIN_ROUGHNESS",
                )
            },
            "polarity": {"INVERSION_MARGIN": polarity.INVERSION_MARGIN, "FLIP_MARGIN": polarity.FLIP_MARGIN},
            "frontal": {"HARD_LAYOUT_FACTOR": frontal.HARD_LAYOUT_FACTOR},
            "anatomy": {
                k: getattr(measure, k)
                for k in (
                    "MIN_LUNG_FRACTION",
                    "MIN_CONFIDENCE",
                    "MIN_HEART_FRACTION",
                    "MIN_AREA_RATIO",
                    "EVIDENCE_MARGIN",
                )
            },
            "evidence": {
                "UPSAMPLE": evidence.UPSAMPLE,
                "MIN_STRENGTH": evidence.MIN_STRENGTH,
                "NON_URGENT_MIN_STRENGTH": evidence.NON_URGENT_MIN_STRENGTH,
                "NON_URGENT_MIN_PROMINENCE": evidence.NON_URGENT_MIN_PROMINENCE,
                "MIN_BOX_LUNG_SHARE": MIN_BOX_LUNG_SHARE,
                "MAX_CROPS": MAX_CROPS,
                "THUMB_SIZE": evidence.THUMB_SIZE,
                "THUMB_MARGIN": evidence.THUMB_MARGIN,
            },
        },
    }


def build(out: Path, root: Path, weights_dir: Path | None = None) -> Path:
    """Build the page into ``out`` (replaced if it exists); returns ``out``."""
    weights_dir = weights_dir or config.BUNDLED_WEIGHTS_DIR
    source = page_source(root)
    modules = ensure_node_modules(source)
    if out.exists():
        shutil.rmtree(out)
    (out / "vendor").mkdir(parents=True)
    (out / "models").mkdir()
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in PAGE_SUFFIXES:
            shutil.copy2(path, out / path.name)
    for name, target in VENDOR_FILES.items():
        shutil.copy2(modules / name, out / "vendor" / target)
    for name, meta, graph in zip(MODEL_FILES, (META_FILE, SEGMENT_META), GRAPH_FILES.values(), strict=True):
        expected = json.loads((weights_dir / meta).read_text(encoding="utf-8"))["sha256"]
        if sha256_file(weights_dir / name) != expected:
            raise BrowserBuildError(f"{weights_dir / name} does not match the sha256 in its metadata")
        stale = stale_reason(weights_dir / graph, [weights_dir / name, weights_dir / meta])
        if stale is not None:
            raise BrowserBuildError(f"the page would run a graph that is not the bundled model's: {stale}")
        shutil.copy2(weights_dir / graph, out / "models" / graph)
    cfg = {**browser_config(weights_dir, out / "models"), "similarity": write_index(weights_dir, out / "models")}
    (out / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return out
