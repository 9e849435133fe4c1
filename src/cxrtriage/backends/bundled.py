"""ONNX model bundles (``model.onnx`` + ``model.json``): numpy + onnxruntime only (no torch, no transformers).

One runtime class, :class:`BundledOnnxBackend`, serves every bundle; everything model-specific comes from
``model.json`` (like timm's ``pretrained_cfg``), read once through the typed
:class:`~cxrtriage.backends.bundle_config.BundleConfig` (the type the exporters write with):

* ``preprocess``: input size, channels, per-channel mean/std and the resize mode (:mod:`cxrtriage.imaging.preprocess`);
* ``output_roles``: which ONNX output is the urgency ``logit``, which (if any) the ``feature_map`` for the CAM
  (needs ``head.weight``), and which (if any) the ``embedding`` for similar cases / the OOD gate. Without
  ``output_roles`` the bundled CNN's layout is assumed: ``urgency_logit`` [N,1] and ``feature_map`` [N,C,h,w],
  embedding = the feature map's global average;
* ``calibration`` (Platt a, b), ``threshold``, ``review_band``, ``ood`` and ``backend`` (the name every
  Prediction reports; default "bundled").

Measured results about the model (test metrics, benchmarks...) are in ``card.json`` beside it, which this module
never opens.

Bundles: the shipped CNN (:mod:`cxrtriage.train.export`, backend "bundled") and the MedSigLIP vision tower + linear
probe (:func:`cxrtriage.hai_def.onnx_export.export_medsiglip_bundle`, backend "medsiglip-onnx": outputs
``image_embedding`` and ``urgency_logit``, no CAM).

The shipped CNN also comes as ``classify_full.onnx`` (:mod:`cxrtriage.train.browser_graphs`): the model with its
resize, 8-bit step, normalisation, Platt calibration, CAM and embedding inside the graph, the one the browser page
runs. When ``graphs.json`` says it was built from this ``model.onnx`` and ``model.json``
(:func:`cxrtriage.graph_manifest.current_graph`), :meth:`BundledOnnxBackend.analyze` runs it on the field as it is;
otherwise (another bundle, a stale or missing graph) the numpy path below, which gives the same answers
(``prototype/eval/graph_parity.json``). ``model.onnx`` stays loaded for batch callers (:meth:`run`: evaluation,
commissioning, the bench).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cxrtriage import config
from cxrtriage.backends.base import BackendOutput, OperatingPointNotes
from cxrtriage.backends.bundle_config import META_FILE, BundleConfig
from cxrtriage.backends.calibration import platt
from cxrtriage.backends.cam import class_activation_map
from cxrtriage.backends.embedding_index import EmbeddingIndex
from cxrtriage.backends.finding_probe import load_finding_probes
from cxrtriage.backends.view_probe import ViewProbe
from cxrtriage.errors import ModelError
from cxrtriage.files import sha256_file
from cxrtriage.graph_manifest import CLASSIFY_FULL_FILE, current_graph
from cxrtriage.imaging.layout import ChestLayoutModel
from cxrtriage.imaging.preprocess import SQUASH_BILINEAR, to_model_input
from cxrtriage.schema import ModelInfo

MODEL_FILE = "model.onnx"
INDEX_FILE = "index.npz"
#: the fp32 reference of the bundled model, kept by `cxrtriage export` next to its checkpoint (bench, evaluate)
FP32_FILE = "model.fp32.onnx"
DEFAULT_FP32_PATH = Path("runs") / "bundled" / FP32_FILE
#: output_roles assumed when model.json has none: the bundled CNN's outputs
DEFAULT_LOGIT_OUTPUT = "urgency_logit"
DEFAULT_FEATURE_MAP_OUTPUT = "feature_map"
#: what :meth:`BundledOnnxBackend.analyze` reads from ``classify_full.onnx``, in this order
GRAPH_OUTPUTS = ("score", "logit", "cam", "embedding", "resized")


def load_layout(index_path: Path, input_size: int) -> ChestLayoutModel | None:
    with np.load(index_path, allow_pickle=False) as z:
        if "layout_mean" not in z.files:
            return None
        return ChestLayoutModel(
            mean=z["layout_mean"].astype(np.float64),
            components=z["layout_components"].astype(np.float64),
            input_size=input_size,
        )


class BundledOnnxBackend:
    """Runs ``model.onnx`` with the preprocessing, output roles, calibration and operating point from ``model.json``."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        threads: int | None = None,
        verify: bool = True,
        graphs: bool = True,
    ) -> None:
        """``graphs=False``: the numpy path even when a current ``classify_full.onnx`` is there (what
        ``evaluation/graph_parity`` compares the graph with)."""
        import onnxruntime as ort

        self.model_dir = Path(model_dir) if model_dir else config.BUNDLED_WEIGHTS_DIR
        self.warnings: list[str] = []
        self.config = BundleConfig.load(self.model_dir / META_FILE)
        cfg = self.config
        self.model_path = self.model_dir / MODEL_FILE
        if not self.model_path.is_file():
            raise ModelError(f"model file {self.model_path} not found")
        sha = sha256_file(self.model_path)
        if verify and sha != cfg.sha256:
            raise ModelError(
                f"{self.model_path} does not match the sha256 in {META_FILE}: the model file is corrupt or was replaced"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0: onnxruntime's default (Settings.threads)
        opts.log_severity_level = 3
        # No busy-waiting after a run: on small CPUs the spinning threads slowed the Python steps that follow
        # (CAM, neighbours, thumbnails) more than the model itself takes.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])
        # the graph wraps only the bundled CNN's layout (no output_roles, a linear head): anything else never has one
        graph = (
            current_graph(self.model_dir / CLASSIFY_FULL_FILE, [self.model_path, self.model_dir / META_FILE])
            if graphs and cfg.output_roles is None and cfg.head is not None
            else None
        )
        self.graph = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"]) if graph else None
        self.preprocess_cfg = cfg.preprocess_config  # parsed once into frozen values; every inference uses them
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.logit_output, self.feature_map_output, self.embedding_output = self._output_roles()
        self.head_weight = np.asarray(cfg.head.weight, dtype=np.float32) if cfg.head else None
        self._a, self._b = cfg.calibration.a, cfg.calibration.b
        if cfg.calibration.warning:
            self.warnings.append(cfg.calibration.warning)
        for why in (cfg.calibration.left_out_of_fit or {}).values():  # an ablation bundle, never the shipped one
            self.warnings.append(
                f"this model is not fit for such films ({why}): its scores for them are unreliable "
                "and most are labelled Urgent"
            )
        self.threshold = cfg.threshold
        self.review_band = cfg.review_band
        index_path = self.model_dir / INDEX_FILE
        self.index = EmbeddingIndex.load(index_path) if index_path.is_file() else None
        self.layout = load_layout(index_path, self.preprocess_cfg.hw[0]) if index_path.is_file() else None
        ood = cfg.ood_settings
        self.max_layout_residual = ood.max_layout_residual
        self.min_knn_similarity = ood.min_knn_similarity
        self.knn_k = ood.k
        self.view_probe = ViewProbe.from_config(cfg.view_probe) if cfg.view_probe else None
        self.finding_probes = load_finding_probes(cfg.finding_probes)
        self.operating_point_notes = OperatingPointNotes(
            calibration=cfg.calibration.fit_on,
            threshold_rule=cfg.provenance.threshold_rule,
            review_band_rule=cfg.provenance.review_band_rule,
        )
        self.info = ModelInfo(name=cfg.name, version=cfg.version, sha256=sha, backend=cfg.backend)

    def _output_roles(self) -> tuple[str, str | None, str | None]:
        """(logit, feature map or None, embedding or None) output names, from ``output_roles`` or the CNN default."""
        roles = self.config.output_roles
        if roles is None:
            logit = DEFAULT_LOGIT_OUTPUT if DEFAULT_LOGIT_OUTPUT in self.output_names else self.output_names[0]
            fmap = DEFAULT_FEATURE_MAP_OUTPUT if DEFAULT_FEATURE_MAP_OUTPUT in self.output_names else None
            return logit, fmap, None
        logit, fmap, emb = roles.logit, roles.feature_map, roles.embedding
        for role, name in (("logit", logit), ("feature_map", fmap), ("embedding", emb)):
            if name is not None and name not in self.output_names:
                raise ModelError(
                    f"{self.model_dir / META_FILE}: key 'output_roles.{role}': {name!r} is not an output "
                    f"of {self.model_path} (outputs: {', '.join(self.output_names)})"
                )
        if logit is None:  # BundleConfig refuses output_roles without a logit; an assert would vanish under -O
            raise ModelError(f"{self.model_dir / META_FILE}: key 'output_roles' names no logit output")
        return logit, fmap, emb

    def accepts_squashed(self, size: int) -> bool:
        """True when ``analyze`` of an image already squashed to size x size gives exactly the result for the
        original (the float squash-bilinear resize to the same size is an identity copy), so the pipeline may hand
        over the layout gate's copy instead of resizing twice."""
        if self.graph is not None:  # the graph resizes the field itself (returns_resized)
            return False
        return self.preprocess_cfg.resize == SQUASH_BILINEAR and self.preprocess_cfg.hw == (size, size)

    def returns_resized(self, size: int) -> bool:
        """True when ``classify_full.onnx`` runs: it hands back the field squashed to the model size (``resized``,
        the float image before the 8-bit step), which the layout gate reads."""
        return self.graph is not None and self.preprocess_cfg.hw == (size, size)

    def calibrate(self, logit: float | np.ndarray) -> float | np.ndarray:
        return platt(logit, self._a, self._b)

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every ONNX output for a preprocessed batch, by name."""
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: x})))

    def _logits(self, outs: dict[str, np.ndarray]) -> np.ndarray:
        logit = outs[self.logit_output]
        return logit.reshape(logit.shape[0], -1)[:, 0]  # [N, 1] (CNN) or [N] (MedSigLIP probe) -> [N]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw outputs for a preprocessed batch: (logits [N], feature maps [N, C, h, w], or None when the model has
        no feature-map output, e.g. a MedSigLIP bundle)."""
        outs = self.run_outputs(x)
        return self._logits(outs), (outs[self.feature_map_output] if self.feature_map_output else None)

    def analyze(self, pixels: np.ndarray) -> BackendOutput:
        """Score a (H, W) float [0, 1] grey image: through ``classify_full.onnx`` when it runs, else the numpy path.
        ``timings_ms``: ``preprocess`` (numpy path: the resize, 8-bit step and normalisation; graph: only the copy
        into the graph's float32 [1, 1, H, W] input, since the resize runs inside it), ``model`` (graph: everything
        from the resize to the score, CAM and embedding) and, on the numpy path, ``cam`` (or ``head``)."""
        if self.graph is not None:
            return self._analyze_graph(pixels)
        t0 = time.perf_counter()
        x = to_model_input(pixels, self.preprocess_cfg)
        t1 = time.perf_counter()
        outs = self.run_outputs(x)
        t2 = time.perf_counter()
        logit = float(self._logits(outs)[0])
        fmap = outs[self.feature_map_output][0] if self.feature_map_output else None
        cam = (
            class_activation_map(fmap, self.head_weight) if fmap is not None and self.head_weight is not None else None
        )
        if self.embedding_output:
            embedding = outs[self.embedding_output][0]
        else:
            embedding = fmap.mean(axis=(1, 2)) if fmap is not None else None
        timings = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3}
        timings["cam" if cam is not None else "head"] = (time.perf_counter() - t2) * 1e3
        return BackendOutput(
            logit=logit, score=float(self.calibrate(logit)), cam=cam, embedding=embedding, timings_ms=timings
        )

    def _analyze_graph(self, pixels: np.ndarray) -> BackendOutput:
        t0 = time.perf_counter()
        crop = np.ascontiguousarray(pixels, dtype=np.float32)[None, None]
        t1 = time.perf_counter()
        score, logit, cam, embedding, resized = self.graph.run(GRAPH_OUTPUTS, {"crop": crop})  # type: ignore[union-attr]
        timings = {"preprocess": (t1 - t0) * 1e3, "model": (time.perf_counter() - t1) * 1e3}
        return BackendOutput(
            logit=float(logit[0]),
            score=float(score[0]),
            cam=cam[0],
            embedding=embedding[0],
            timings_ms=timings,
            resized=resized[0, 0],
        )

    def footprint_mb(self) -> float:
        return self.model_path.stat().st_size / 1e6
