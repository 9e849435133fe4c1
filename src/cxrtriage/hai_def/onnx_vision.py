"""MedSigLIP vision tower (+ optional linear-probe head) -> fp32 ONNX and dynamic int8, with its parity check
against torch (:func:`export_medsiglip_vision`), and :class:`OnnxSiglipEmbedder`, which runs the export with numpy +
onnxruntime. What ships as ONNX and why MedGemma does not: :mod:`cxrtriage.hai_def.onnx_export`.

Run-time note: :class:`OnnxSiglipEmbedder` reuses ``MedSigLIPBackend.to_pil`` (the backend's resize/greyscale ->
RGB step) and the checkpoint's own image processor, so the ONNX embeddings see exactly the pixels the torch
backend sees. ``to_pil`` is a plain method that only reads ``self.image_size``; it is called unbound on the
embedder (no private helper is imported).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.backends.medsiglip import LinearProbe, MedSigLIPBackend, processor_image_size
from cxrtriage.hai_def.onnx_quantize import quantize_dynamic_int8

FP32_FILE = "medsiglip_vision.onnx"
INT8_FILE = "medsiglip_vision.int8.onnx"
REPORT_FILE = "medsiglip_onnx_report.json"
INPUT_NAME = "pixel_values"
EMBED_NAME = "image_embedding"
LOGIT_NAME = "urgency_logit"
MIN_FP32_COSINE = 0.9999


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def synthetic_images(n: int, seed: int = 0, size: int = 96) -> list[np.ndarray]:
    """(H, W) float [0,1] grey images with chest-like smooth structure plus noise (parity only, not evaluation)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for i in range(n):
        lungs = np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2)) + np.exp(
            -(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2)
        )
        img = 0.8 - 0.5 * lungs + 0.1 * np.sin(2 * np.pi * (i + 1) * yy) + 0.05 * rng.standard_normal((size, size))
        out.append(np.clip(img, 0.0, 1.0).astype(np.float32))
    return out


class _VisionHead:
    """Factory for the torch module exported: pooled image features -> L2 normalise (-> linear probe logit)."""

    @staticmethod
    def build(model: Any, probe: LinearProbe | None):
        import torch

        class VisionHead(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model
                if probe is not None:
                    w = torch.tensor([probe.weight], dtype=torch.float32)
                    self.head = torch.nn.Linear(w.shape[1], 1)
                    with torch.no_grad():
                        self.head.weight.copy_(w)
                        self.head.bias.fill_(float(probe.bias))
                else:
                    self.head = None

            def forward(self, pixel_values):
                out = self.model.get_image_features(pixel_values=pixel_values)
                feats = getattr(out, "pooler_output", out)
                # same as MedSigLIPBackend.embed: emb / max(||emb||, 1e-12)
                emb = feats / torch.clamp(torch.linalg.vector_norm(feats, dim=1, keepdim=True), min=1e-12)
                if self.head is None:
                    return emb
                return emb, self.head(emb)[:, 0]

        return VisionHead().eval()


def _export(module: Any, dummy: Any, path: Path, output_names: list[str], opset: int) -> str:
    """torch.onnx.export, TorchScript exporter first (opset 17 measured to work here), dynamo as fallback."""
    import torch

    errors = []
    try:
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in output_names}},
            opset_version=opset,
            dynamo=False,
        )
        return f"torch.onnx.export(dynamo=False, opset {opset})"
    except Exception as exc:  # noqa: BLE001 - record and fall back
        errors.append(f"dynamo=False: {type(exc).__name__}: {exc}")
    try:
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
            opset_version=max(opset, 18),
            dynamo=True,
            external_data=False,
        )
        return f"torch.onnx.export(dynamo=True, opset {max(opset, 18)}) after: {errors[0][:300]}"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"dynamo=True: {type(exc).__name__}: {exc}")
        raise RuntimeError("ONNX export of the SigLIP vision tower failed: " + " || ".join(errors)) from exc


def export_medsiglip_vision(
    model_dir: str,
    out_dir: Path,
    probe: LinearProbe | None = None,
    opset: int = 17,
    images: Sequence[np.ndarray] | None = None,
    *,
    backend: MedSigLIPBackend | None = None,
) -> dict:
    """Export the SigLIP vision tower (+ probe head) to ``out_dir``: fp32 ONNX, dynamic int8 ONNX, parity report.

    Outputs: ``image_embedding`` (N, D) L2-normalised pooled embedding as ``MedSigLIPBackend.embed`` computes it;
    with a probe also ``urgency_logit`` (N,) = embedding @ weight + bias (uncalibrated; apply the probe's Platt
    scaling afterwards). ``images`` are (H, W) [0,1] grey arrays for the parity check (synthetic ones if None).
    Raises ``RuntimeError`` when the fp32 ONNX embeddings' cosine to torch falls below 0.9999. ``backend``: an
    already loaded fp32 CPU ``MedSigLIPBackend`` of ``model_dir`` to reuse (else one is loaded).
    """
    import onnxruntime as ort
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if backend is None:
        backend = MedSigLIPBackend(model_dir, device="cpu", dtype=torch.float32)
    if probe is not None and len(probe.weight) != backend._embedding_dim():
        raise ValueError(f"probe expects {len(probe.weight)}-d embeddings, the model gives {backend._embedding_dim()}")
    module = _VisionHead.build(backend.model, probe)
    h, w = backend.image_size
    output_names = [EMBED_NAME] + ([LOGIT_NAME] if probe is not None else [])

    fp32_path, int8_path = out_dir / FP32_FILE, out_dir / INT8_FILE
    t0 = time.perf_counter()
    exporter = _export(module, torch.zeros(1, 3, h, w), fp32_path, output_names, opset)
    t1 = time.perf_counter()
    quantize_dynamic_int8(fp32_path, int8_path)
    t2 = time.perf_counter()

    imgs = list(images) if images is not None else synthetic_images(4)
    pv = np.asarray(
        backend.processor(images=[backend.to_pil(p) for p in imgs], return_tensors="np")["pixel_values"],
        dtype=np.float32,
    )
    ref_emb = backend.embed(imgs)
    with torch.inference_mode():
        t_out = module(torch.from_numpy(pv))
    t_emb = (t_out[0] if probe is not None else t_out).numpy()
    report: dict[str, Any] = {
        "model_dir": str(model_dir),
        "exporter": exporter,
        "opset": opset,
        "input": INPUT_NAME,
        "outputs": output_names,
        "image_size": [h, w],
        "embedding_dim": int(ref_emb.shape[1]),
        "n_parity_images": len(imgs),
        "parity_images": "given" if images is not None else "synthetic",
        "export_s": round(t1 - t0, 3),
        "quantize_s": round(t2 - t1, 3),
        "files": {"fp32": fp32_path.name, "int8": int8_path.name},
        "size_mb": {"fp32": round(fp32_path.stat().st_size / 1e6, 3), "int8": round(int8_path.stat().st_size / 1e6, 3)},
        "quantization": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
        "cosine_wrapper_vs_backend_embed_min": float(cosines(t_emb, ref_emb).min()),
        "probe": probe is not None,
    }
    for tag, path in (("fp32", fp32_path), ("int8", int8_path)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {INPUT_NAME: pv})
        cos = cosines(t_emb, outs[0])
        report[f"cosine_{tag}_min"] = float(cos.min())
        report[f"cosine_{tag}_mean"] = float(cos.mean())
        report[f"max_abs_diff_{tag}"] = float(np.abs(outs[0] - t_emb).max())
        if probe is not None:
            report[f"logit_max_abs_diff_{tag}"] = float(np.abs(outs[1] - t_out[1].numpy()).max())
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
    if report["cosine_fp32_min"] < MIN_FP32_COSINE:
        raise RuntimeError(
            f"fp32 ONNX embeddings disagree with torch: min cosine {report['cosine_fp32_min']:.6f} "
            f"< {MIN_FP32_COSINE} (report in {out_dir / REPORT_FILE})"
        )
    return report


class OnnxSiglipEmbedder:
    """L2-normalised MedSigLIP image embeddings from an exported ONNX file: numpy + onnxruntime at run time.

    Preprocessing is the torch backend's: ``MedSigLIPBackend.to_pil`` (resize to the model size, grey -> RGB)
    then the checkpoint's own image processor with numpy output.
    """

    def __init__(self, onnx_path: str | Path, processor_dir: str | Path, batch_size: int = 16) -> None:
        import onnxruntime as ort
        from transformers import AutoProcessor

        self.onnx_path = Path(onnx_path)
        self.session = ort.InferenceSession(str(self.onnx_path), providers=["CPUExecutionProvider"])
        self.processor = AutoProcessor.from_pretrained(str(processor_dir))
        self.image_processor = getattr(self.processor, "image_processor", self.processor)
        self.batch_size = batch_size
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.image_size = self._size()

    def _size(self) -> tuple[int, int]:
        return processor_image_size(self.image_processor, self.session.get_inputs()[0].shape[-1])

    # the backend's resize/grey->RGB step, reused as-is (it only reads self.image_size)
    to_pil = MedSigLIPBackend.to_pil

    def pixel_values(self, pixels_list: Sequence[np.ndarray]) -> np.ndarray:
        out = self.image_processor(images=[self.to_pil(p) for p in pixels_list], return_tensors="np")
        return np.asarray(out["pixel_values"], dtype=np.float32)

    def run(self, pixels_list: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """All outputs (``image_embedding`` and, for a probe export, ``urgency_logit``) by name."""
        chunks: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for i in range(0, len(pixels_list), self.batch_size):
            outs = self.session.run(None, {INPUT_NAME: self.pixel_values(pixels_list[i : i + self.batch_size])})
            for n, o in zip(self.output_names, outs):
                chunks[n].append(np.asarray(o, dtype=np.float32))
        return {n: np.concatenate(c) for n, c in chunks.items() if c}

    def embed(self, pixels_list: Sequence[np.ndarray]) -> np.ndarray:
        if not len(pixels_list):
            dim = self.session.get_outputs()[0].shape[-1]
            return np.zeros((0, dim if isinstance(dim, int) else 0), dtype=np.float32)
        emb = self.run(pixels_list)[EMBED_NAME]
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
