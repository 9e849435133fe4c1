"""The bundled int8 ONNX CNN: numpy + onnxruntime only (no torch)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from cxrtriage import config
from cxrtriage.backends.base import BackendOutput
from cxrtriage.calibration import platt
from cxrtriage.embedding_index import EmbeddingIndex
from cxrtriage.errors import ModelError
from cxrtriage.evidence import class_activation_map
from cxrtriage.layout import ChestLayoutModel
from cxrtriage.preprocess import to_model_input
from cxrtriage.schema import ModelInfo

MODEL_FILE = "model.onnx"
META_FILE = "model.json"
INDEX_FILE = "index.npz"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_metadata(model_dir: Path) -> dict:
    path = model_dir / META_FILE
    if not path.is_file():
        raise ModelError(f"model metadata {path} not found: run `cxrtriage export` or reinstall the package")
    return json.loads(path.read_text(encoding="utf-8"))


def load_layout(index_path: Path, input_size: int) -> ChestLayoutModel | None:
    with np.load(index_path, allow_pickle=False) as z:
        if "layout_mean" not in z.files:
            return None
        return ChestLayoutModel(mean=z["layout_mean"].astype(np.float64), components=z["layout_components"].astype(np.float64),
                                input_size=input_size)


class BundledOnnxBackend:
    """Runs ``model.onnx`` with the preprocessing, calibration and operating point from ``model.json``."""

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = None, verify: bool = True) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir) if model_dir else config.model_dir()
        self.meta = read_metadata(self.model_dir)
        self.model_path = self.model_dir / MODEL_FILE
        if not self.model_path.is_file():
            raise ModelError(f"model file {self.model_path} not found")
        sha = _sha256(self.model_path)
        if verify and sha != self.meta["sha256"]:
            raise ModelError(f"{self.model_path} does not match the sha256 in {META_FILE}: the model file is corrupt or was replaced")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or int(os.environ.get("CXRTRIAGE_THREADS", "0") or 0)
        opts.log_severity_level = 3
        # No busy-waiting after a run: on small CPUs the spinning threads slowed the Python steps that follow
        # (CAM, neighbours, thumbnails) more than the model itself takes.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])
        self.preprocess_cfg = self.meta["preprocess"]
        self.head_weight = np.asarray(self.meta["head"]["weight"], dtype=np.float32)
        cal = self.meta["calibration"]
        self._a, self._b = float(cal["a"]), float(cal["b"])
        self.threshold = float(self.meta["threshold"])
        self.review_band = (float(self.meta["review_band"][0]), float(self.meta["review_band"][1]))
        index_path = self.model_dir / INDEX_FILE
        self.index = EmbeddingIndex.load(index_path) if index_path.is_file() else None
        self.layout = load_layout(index_path, int(self.preprocess_cfg["input_size"])) if index_path.is_file() else None
        ood = self.meta.get("ood", {})
        self.max_layout_residual = ood.get("max_layout_residual")
        self.min_knn_similarity = ood.get("min_knn_similarity")
        self.knn_k = int(ood.get("k", 5))
        self.info = ModelInfo(name=self.meta["name"], version=self.meta["version"], sha256=sha, backend="bundled")

    def calibrate(self, logit: float | np.ndarray) -> float | np.ndarray:
        return platt(logit, self._a, self._b)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ONNX outputs for a preprocessed batch: (logits [N], feature maps [N, C, h, w])."""
        logit, fmap = self.session.run(None, {"image": x})
        return logit[:, 0], fmap

    def analyze(self, pixels: np.ndarray) -> BackendOutput:
        t0 = time.perf_counter()
        x = to_model_input(pixels, self.preprocess_cfg)
        t1 = time.perf_counter()
        logits, fmaps = self.run(x)
        t2 = time.perf_counter()
        fmap = fmaps[0]
        cam = class_activation_map(fmap, self.head_weight)
        logit = float(logits[0])
        return BackendOutput(
            logit=logit, score=float(self.calibrate(logit)), cam=cam, embedding=fmap.mean(axis=(1, 2)),
            timings_ms={"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "cam": (time.perf_counter() - t2) * 1e3},
        )

    def footprint_mb(self) -> float:
        return self.model_path.stat().st_size / 1e6
