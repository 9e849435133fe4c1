"""MedSigLIP (google/medsiglip-448) backend: image embeddings + a small linear probe for the urgency score.

Why a linear probe: MedSigLIP is an embedding model, not a triage classifier. A logistic-regression head on its
L2-normalised image embeddings, Platt-calibrated and thresholded with the same rules as the bundled model, gives a
score with a known operating point. Without a probe the backend falls back to zero-shot prompts, which are NOT
calibrated: it says so in ``warnings``.

Inference needs torch + transformers only (no sklearn); training lives in :mod:`cxrtriage.hai_def.probe`.

ONNX bundle: :func:`cxrtriage.hai_def.onnx_export.export_medsiglip_bundle` exports the vision tower + probe head to
``model.onnx`` (dynamic int8) + ``model.json``. ``load_backend("medsiglip", dir)`` (``CXRTRIAGE_BACKEND=medsiglip
CXRTRIAGE_MODEL=dir``) on such a directory serves it with :class:`cxrtriage.backends.bundled.BundledOnnxBackend`:
numpy + onnxruntime only, torch and transformers are never imported (see :func:`from_settings`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import ValidationError

from cxrtriage.backends.base import Backend, BackendOutput, OperatingPointNotes
from cxrtriage.backends.bundle_blocks import PROBE_FILE, OodSettings, ProbeFile, validation_message
from cxrtriage.backends.bundled import INDEX_FILE
from cxrtriage.backends.calibration import platt
from cxrtriage.backends.embedding_index import EmbeddingIndex
from cxrtriage.backends.model_source import pick_device_dtype, resolve_model, weight_files
from cxrtriage.config import Settings
from cxrtriage.errors import ModelError
from cxrtriage.files import sha256_files
from cxrtriage.imaging.preprocess import resize_uint8
from cxrtriage.schema import ModelInfo

DEFAULT_MODEL = "google/medsiglip-448"

URGENT_PROMPTS = ["chest x-ray with an urgent finding such as pneumothorax, consolidation, effusion, edema"]
NORMAL_PROMPTS = ["normal chest x-ray"]
ZERO_SHOT_WARNING = (
    "no linear probe given (CXRTRIAGE_CLASSIFIER): the urgency score comes from zero-shot prompts and "
    "is UNCALIBRATED; threshold 0.5 and review band 0.4-0.6 are placeholders, not a validated operating point"
)


@dataclass(frozen=True)
class LinearProbe:
    """Logistic-regression head on L2-normalised image embeddings, Platt calibration and operating point.

    Stored as a small JSON file (``probe.json``) so it is reviewable and needs no pickle; read and checked through
    the typed :class:`~cxrtriage.backends.bundle_blocks.ProbeFile` (whose defaults, for a file that omits a key, are
    these), parsed once, when the backend loads, into these frozen values.
    """

    weight: tuple[float, ...]
    bias: float
    platt_a: float = 1.0
    platt_b: float = 0.0
    threshold: float = 0.5
    review_band: tuple[float, float] = (0.4, 0.6)
    meta: dict[str, Any] = field(default_factory=dict)  # model id, training sizes, rules, validation numbers

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", tuple(float(w) for w in self.weight))

    def logit(self, embedding: np.ndarray) -> np.ndarray:
        return np.asarray(embedding, dtype=np.float64) @ np.asarray(self.weight, dtype=np.float64) + self.bias

    def calibrate(self, logit: float | np.ndarray) -> np.ndarray:
        return platt(np.asarray(logit, dtype=np.float64), self.platt_a, self.platt_b)

    def score(self, embedding: np.ndarray) -> np.ndarray:
        return self.calibrate(self.logit(embedding))

    def fingerprint(self) -> str:
        """sha256 of what decides the score (weights, bias, Platt, operating point), independent of file layout."""
        d = {
            "weight": [float(w) for w in self.weight],
            "bias": float(self.bias),
            "platt_a": float(self.platt_a),
            "platt_b": float(self.platt_b),
            "threshold": float(self.threshold),
            "review_band": [float(self.review_band[0]), float(self.review_band[1])],
        }
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / PROBE_FILE
        d = asdict(self)
        d["weight"], d["review_band"] = list(self.weight), list(self.review_band)
        text = json.dumps(d, indent=1)
        try:  # what the reader would refuse is never written
            ProbeFile.model_validate_json(text)
        except ValidationError as exc:
            raise ModelError(validation_message(path, exc)) from exc
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        """Read ``probe.json`` (or ``<dir>/probe.json``); ModelError naming the file and the key when it is bad."""
        path = Path(path)
        if path.is_dir():
            path = path / PROBE_FILE
        d = ProbeFile.load(path)
        return cls(
            weight=d.weight,
            bias=d.bias,
            platt_a=d.platt_a,
            platt_b=d.platt_b,
            threshold=d.threshold,
            review_band=d.review_band,
            meta=d.meta.as_json_dict(),
        )


def processor_image_size(image_processor: Any, fallback: int) -> tuple[int, int]:
    """(height, width) the checkpoint's image processor produces; ``fallback`` when it only states an edge or
    nothing (shared by the torch backend and the ONNX embedder so both resize to the same size)."""
    size = getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
    h, w = get("height"), get("width")
    if not h or not w:
        h = w = get("shortest_edge") or fallback
    return int(h), int(w)


class MedSigLIPBackend:
    """Backend protocol over a MedSigLIP (or any SigLIP) checkpoint plus an optional linear probe."""

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        classifier: str | Path | None = None,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 16,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        model = str(model)
        self.model_dir = Path(resolve_model(model, kind="MedSigLIP"))
        self.device, default_dtype = pick_device_dtype(device, large=False)
        self.dtype = dtype or default_dtype
        self.batch_size = batch_size
        try:
            self.model = AutoModel.from_pretrained(self.model_dir, dtype=self.dtype).to(self.device).eval()
            self.processor = AutoProcessor.from_pretrained(self.model_dir)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load MedSigLIP from {self.model_dir}: {exc}") from exc
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise ModelError(f"{self.model_dir} is not a SigLIP image-text model")
        self._torch = torch
        self.image_size = self._processor_size()
        self.warnings: list[str] = []

        probe_path = Path(classifier) if classifier else self.model_dir / PROBE_FILE
        if classifier or probe_path.is_file():
            self.probe: LinearProbe | None = LinearProbe.load(probe_path)
            probe_path = probe_path / PROBE_FILE if probe_path.is_dir() else probe_path
            self.threshold = self.probe.threshold
            self.review_band = self.probe.review_band
            dim = self._embedding_dim()
            if len(self.probe.weight) != dim:
                raise ModelError(
                    f"linear probe {probe_path} expects {len(self.probe.weight)}-d embeddings, the model gives {dim}"
                )
            index_path = probe_path.parent / INDEX_FILE
            self.index: EmbeddingIndex | None = EmbeddingIndex.load(index_path) if index_path.is_file() else None
            ood = OodSettings.from_block(self.probe.meta.get("ood"), source=probe_path)
            self.min_knn_similarity: float | None = ood.min_knn_similarity
            self.knn_k = ood.k
        else:
            self.probe = None
            probe_path = None
            self.threshold, self.review_band = 0.5, (0.4, 0.6)
            self.index, self.min_knn_similarity, self.knn_k = None, None, OodSettings().k
            self.warnings.append(ZERO_SHOT_WARNING)
            self._urgency_text = self._text_embeddings(URGENT_PROMPTS + NORMAL_PROMPTS)
        self.probe_path = probe_path
        self.layout = None  # no chest-layout model for MedSigLIP: the pipeline skips that gate
        self.max_layout_residual = None
        self.view_probe = None  # no lateral-view probe fitted on MedSigLIP's embedding
        self.finding_probes: tuple = ()
        meta = self.probe.meta if self.probe is not None else {}
        self.operating_point_notes = OperatingPointNotes(
            calibration=meta.get("calibration"),
            threshold_rule=meta.get("threshold_rule"),
            review_band_rule=meta.get("review_band_rule"),
        )

        files = weight_files(self.model_dir) + ([probe_path] if probe_path else [])
        files_sha256 = sha256_files(files)
        self._files = files
        is_hub = not Path(model).expanduser().is_dir()
        name = model if is_hub else self.model_dir.name
        version = self.model_dir.name if is_hub else "local"  # hub snapshot dir name = commit hash
        self.info = ModelInfo(name=name, version=version, sha256=files_sha256, backend="medsiglip")

    # -- preprocessing -------------------------------------------------------------------------------------------
    def _processor_size(self) -> tuple[int, int]:
        return processor_image_size(self.processor.image_processor, self.model.config.vision_config.image_size)

    def to_pil(self, pixels: np.ndarray) -> Image.Image:
        """(H, W) float [0,1] grey -> 3-channel uint8 PIL at the model size. Resizing here, before the processor,
        keeps one well-defined (bilinear, antialiased) resize for a 3000 px DICOM as for a 448 px PNG."""
        arr = np.asarray(pixels, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"expected a (H, W) grey image, got shape {arr.shape}")
        h, w = self.image_size
        return Image.fromarray(resize_uint8(arr, h, w), mode="L").convert("RGB")

    # -- embeddings ----------------------------------------------------------------------------------------------
    def _image_features(self, images: list[Image.Image]) -> np.ndarray:
        torch = self._torch
        inputs = self.processor(images=images, return_tensors="pt")
        pv = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pv)
        feats = getattr(out, "pooler_output", out)
        return feats.float().cpu().numpy()

    def embed(self, pixels_list: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings (N, D) float32, in batches of ``batch_size``."""
        chunks = []
        for i in range(0, len(pixels_list), self.batch_size):
            chunks.append(self._image_features([self.to_pil(p) for p in pixels_list[i : i + self.batch_size]]))
        if not chunks:
            return np.zeros((0, self._embedding_dim()), dtype=np.float32)
        emb = np.concatenate(chunks).astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def _embedding_dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "projection_dim", None) or cfg.vision_config.hidden_size)

    def _text_embeddings(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings. SigLIP was trained with max_length padding: other padding shifts scores."""
        torch = self._torch
        inputs = self.processor(text=texts, padding="max_length", truncation=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(input_ids=inputs["input_ids"].to(self.device))
        t = getattr(out, "pooler_output", out).float().cpu().numpy()
        return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)

    def _scale_bias(self) -> tuple[float, float]:
        scale = float(self.model.logit_scale.detach().float().exp().cpu())
        bias = (
            float(self.model.logit_bias.detach().float().cpu())
            if getattr(self.model, "logit_bias", None) is not None
            else 0.0
        )
        return scale, bias

    def zero_shot(self, pixels: np.ndarray, prompts: dict[str, list[str]]) -> dict[str, float]:
        """Per-class probability: SigLIP's sigmoid(scale * cos + bias), independent per class (not a softmax),
        using each class's prompt embeddings averaged and re-normalised."""
        img = self.embed([pixels])[0]
        scale, bias = self._scale_bias()
        out = {}
        for label, texts in prompts.items():
            if not texts:
                raise ValueError(f"zero-shot class {label!r} has no prompts")
            t = self._text_embeddings(list(texts)).mean(axis=0)
            t /= max(float(np.linalg.norm(t)), 1e-12)
            out[label] = float(1.0 / (1.0 + math.exp(-(scale * float(img @ t) + bias))))
        return out

    # -- Backend protocol ----------------------------------------------------------------------------------------
    def _zero_shot_logit(self, emb: np.ndarray) -> float:
        """Urgent-vs-normal logit difference: sigmoid of it is the two-way softmax of SigLIP's logits."""
        scale, _ = self._scale_bias()
        n_u = len(URGENT_PROMPTS)
        sims = self._urgency_text @ emb
        return float(scale * (sims[:n_u].mean() - sims[n_u:].mean()))

    def accepts_squashed(self, size: int) -> bool:
        """MedSigLIP's processor resizes with its own filter from the full image: a pre-squashed one differs."""
        return False

    def returns_resized(self, size: int) -> bool:
        """No: its resize lives in the processor (the layout gate squashes for itself)."""
        return False

    def analyze(self, pixels: np.ndarray) -> BackendOutput:
        t0 = time.perf_counter()
        emb = self.embed([pixels])[0]
        t1 = time.perf_counter()
        if self.probe is not None:
            logit = float(self.probe.logit(emb))
            score = float(self.probe.calibrate(logit))
        else:
            logit = self._zero_shot_logit(emb)
            score = float(1.0 / (1.0 + math.exp(-logit)))
        return BackendOutput(
            logit=logit,
            score=score,
            cam=None,
            embedding=emb,
            timings_ms={"model": (t1 - t0) * 1e3, "head": (time.perf_counter() - t1) * 1e3},
        )

    def footprint_mb(self) -> float:
        return sum(f.resolve().stat().st_size for f in self._files) / 1e6


def is_onnx_bundle(path: str | Path) -> bool:
    """True for a local directory holding an exported ONNX bundle (``model.json`` + ``model.onnx``)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / "model.json").is_file() and (p / "model.onnx").is_file()


def _onnx_bundle(model_dir: Path, classifier: str | None, threads: int = 0) -> Backend:
    """The ONNX export served by the bundled runtime (no torch); its probe is baked in, so a CXRTRIAGE_CLASSIFIER
    that names a different probe is an error rather than silently ignored."""
    from cxrtriage.backends.bundled import BundledOnnxBackend

    backend = BundledOnnxBackend(model_dir, threads=threads)
    if classifier:
        baked = backend.config.probe.fingerprint if backend.config.probe else None
        given = LinearProbe.load(classifier).fingerprint()
        if baked != given:
            raise ModelError(
                f"{model_dir} is an ONNX bundle with its own linear probe baked in, but CXRTRIAGE_CLASSIFIER "
                f"names a different probe ({classifier}): unset CXRTRIAGE_CLASSIFIER, or export a bundle "
                "with that probe (cxrtriage.hai_def.onnx_export.export_medsiglip_bundle)"
            )
    return backend


def from_settings(model_dir: str | Path | None, settings: Settings) -> Backend:
    """The ``load_backend("medsiglip")`` entry: the model given (``settings.model``: CXRTRIAGE_MODEL), else the hub
    id; the probe ``settings.classifier`` (CXRTRIAGE_CLASSIFIER; else ``probe.json`` inside the model directory,
    else zero-shot).

    A local directory with ``model.json`` + ``model.onnx`` (an :func:`export_medsiglip_bundle
    <cxrtriage.hai_def.onnx_export.export_medsiglip_bundle>` output) is served by ``BundledOnnxBackend``
    (numpy + onnxruntime, no torch/transformers); anything else by the torch :class:`MedSigLIPBackend`."""
    model = str(model_dir) if model_dir else DEFAULT_MODEL
    classifier = settings.classifier
    if is_onnx_bundle(model):
        return _onnx_bundle(Path(model).expanduser(), classifier, settings.threads)
    return MedSigLIPBackend(model, classifier=classifier, device=settings.device)
