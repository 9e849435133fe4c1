"""MedSigLIP vision tower (+ optional linear-probe head) -> ONNX fp32 and dynamic-int8, with parity checks.

What ships as ONNX, and what does not
-------------------------------------
* The bundled triage CNN: static int8 QDQ ONNX (:mod:`cxrtriage.train.export`).
* The MedSigLIP (google/medsiglip-448) vision tower, optionally with the linear probe's head: exported here to
  fp32 ONNX and dynamically quantised to int8 (QInt8 weights; dynamic int8 is the right choice for transformer
  weights, see ../shared/PLATFORM.md), run with numpy + onnxruntime by
  :class:`cxrtriage.hai_def.onnx_vision.OnnxSiglipEmbedder`.
* The MedSigLIP vision tower + linear probe as a servable bundle (:func:`export_medsiglip_bundle`): ``model.onnx``
  (dynamic int8) + ``model.json`` in the bundled model's format (backend "medsiglip-onnx"), served by the same
  runtime class as the bundled CNN, :class:`cxrtriage.backends.bundled.BundledOnnxBackend`, with numpy +
  onnxruntime only: ``CXRTRIAGE_BACKEND=medsiglip CXRTRIAGE_MODEL=<bundle dir>`` (or ``bundled``) serves it without
  torch or transformers. Its preprocessing (``resize: siglip-uint8-bilinear``) reproduces ``to_pil`` + the
  checkpoint's image processor in numpy, checked against the processor at export time.
* MedGemma (Gemma3ForConditionalGeneration) is NOT exported to ONNX. It runs through transformers, or as
  GGUF through llama.cpp (text GGUF + mmproj GGUF). Evidence that whole-MedGemma ONNX export is not supported by
  current tooling:

  - huggingface/optimum-onnx is the Hugging Face ONNX exporter; its issues #45 ("Exporting Gemma-3 models to ONNX
    is broken") and #75 ("Exporting Gemma3 4B?": ``ValueError: Trying to export a gemma3 model, that is a custom
    or unsupported architecture``) show Gemma 3 was unsupported; the maintainer's answer on #75 is that gemma3
    *text generation* (the decoder alone) is supported as of optimum-onnx PR #70. The pull request that would add
    Gemma 3 *vision-language* export, optimum-onnx PR #92 "feat: Add native Gemma3 support for ONNX export", was
    still open, with its author agreeing in March 2026 that it "doesn't do much at the moment". huggingface/optimum
    issue #2318 ("Gemma 3 support") is also still open.
  - optimum-onnx needs transformers<4.58 (../shared/PLATFORM.md); this project uses transformers 5.x, so it
    cannot be installed beside it at all.
  - A plain ``torch.onnx.export`` of one forward step of the tiny Gemma3ForConditionalGeneration
    (:func:`cxrtriage.hai_def.tiny_gemma.build_tiny_medgemma`, image + text, logits of the last position) was tried
    here (torch 2.13, transformers 5.24) and failed with both exporters: ``dynamo=False`` raised
    ``RuntimeError: unordered_map::at``; ``dynamo=True`` captured the graph with torch.export but failed translating
    it to ONNX (``DispatchError: No ONNX function found for aten._is_all_true``). See ``GEMMA3_EXPORT_TRIAL``.
    Even if a single step were made to trace, that graph has no KV-cache inputs/outputs, so autoregressive
    generation would recompute the whole prompt
    (256 image tokens for MedGemma) at every token, and the generation loop, chat template, image splitting
    and the sliding-window/global attention cache would all have to be rebuilt around onnxruntime by hand.
    None of that is validated, so it is not offered.

This module writes the servable bundle (:func:`export_medsiglip_bundle`); the vision-tower export and its parity
check are :mod:`cxrtriage.hai_def.onnx_vision`, the quantiser :mod:`cxrtriage.hai_def.onnx_quantize`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.backends.bundle_blocks import jsonable
from cxrtriage.backends.calibration import DEGENERATE_WARNING, degenerate
from cxrtriage.backends.medsiglip import LinearProbe, MedSigLIPBackend
from cxrtriage.hai_def.onnx_vision import (
    EMBED_NAME,
    FP32_FILE,
    INPUT_NAME,
    INT8_FILE,
    LOGIT_NAME,
    MIN_FP32_COSINE,
    cosines,
    export_medsiglip_vision,
    synthetic_images,
)

#: Outcome of ``torch.onnx.export`` on one step of the tiny Gemma3ForConditionalGeneration (torch 2.13,
#: transformers 5.24), measured when this module was written; see the module docstring.
GEMMA3_EXPORT_TRIAL = (
    "dynamo=False (TorchScript exporter, opset 17): RuntimeError: unordered_map::at; "
    "dynamo=True (opset 18): torch.export succeeded, then ConversionError at 'Translate the graph into ONNX', root "
    "cause DispatchError: No ONNX function found for <OpOverload(op='aten._is_all_true', overload='default')>"
)


# -- ONNX bundle served by BundledOnnxBackend ---------------------------------------------------------------------

BUNDLE_BACKEND = "medsiglip-onnx"
HAI_DEF_TERMS_URL = "https://developers.google.com/health-ai-developer-foundations/terms"
HAI_DEF_TERMS = (
    f"MedSigLIP is a Google Health AI Developer Foundations (HAI-DEF) model; this export, like the "
    f"weights it is derived from, is governed by the HAI-DEF terms of use: {HAI_DEF_TERMS_URL}"
)
#: |int8 bundle score - torch fp32 score| above this fails the export (int8 is recorded either way)
INT8_SCORE_TOL = 0.05
#: |fp32 ONNX score through the bundle runtime - torch fp32 score| above this fails the export
FP32_SCORE_TOL = 1e-3
#: numpy preprocessing (model.json) vs the checkpoint's image processor, max abs difference of pixel values
PREPROCESS_TOL = 1e-4
BUNDLE_FAILED_FILE = "export_failed.json"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, default=jsonable) + "\n", encoding="utf-8")


def _siglip_preprocess(image_processor: Any, image_size: tuple[int, int], channels: int) -> dict:
    """The ``preprocess`` block of model.json, read from the checkpoint's image processor (not hard-coded)."""
    from cxrtriage.imaging.preprocess import SIGLIP_UINT8_BILINEAR

    if getattr(image_processor, "do_center_crop", False):
        raise ValueError(
            f"{type(image_processor).__name__} center-crops: not supported by the ONNX bundle's preprocessing"
        )
    h, w = image_size
    rescale = float(image_processor.rescale_factor) if getattr(image_processor, "do_rescale", True) else 1.0
    if getattr(image_processor, "do_normalize", True):
        mean = [float(v) for v in np.atleast_1d(np.asarray(image_processor.image_mean, dtype=np.float64))]
        std = [float(v) for v in np.atleast_1d(np.asarray(image_processor.image_std, dtype=np.float64))]
    else:
        mean, std = [0.0], [1.0]
    mean = mean * channels if len(mean) == 1 else mean
    std = std * channels if len(std) == 1 else std
    resample = getattr(image_processor, "resample", None)
    return {
        "input_size": h if h == w else [h, w],
        "channels": channels,
        "resize": SIGLIP_UINT8_BILINEAR,
        "rescale_factor": rescale,
        "mean": mean,
        "std": std,
        "input_range": "[0,1] grey, display polarity (MONOCHROME2)",
        "source": (
            f"{type(image_processor).__name__} of the checkpoint (size, rescale_factor, image_mean, image_std); "
            "the resize is MedSigLIPBackend.to_pil's (uint8, PIL bilinear to the model size), so the processor's "
            f"own resize (resample={int(resample) if resample is not None else None}) is a no-op"
        ),
    }


def export_medsiglip_bundle(
    model_dir: str | Path,
    out_dir: str | Path,
    probe: str | Path | LinearProbe,
    *,
    images: Sequence[np.ndarray] | None = None,
    opset: int = 17,
) -> dict:
    """Export MedSigLIP's vision tower + linear-probe head as a bundle served by ``BundledOnnxBackend``.

    Writes ``out_dir/model.onnx`` (dynamic int8) and ``out_dir/model.json`` (backend "medsiglip-onnx": preprocessing
    read from the checkpoint's processor, output roles, Platt calibration, threshold, review band, OOD settings of
    the probe, sha256, source, parity; written through the typed
    :class:`~cxrtriage.backends.bundle_config.BundleConfig` the runtime reads it with), a fresh ``card.json``
    (nothing measured on the bundle yet), and copies ``index.npz`` from the probe's directory when there is one.
    The fp32 ONNX file is only used for the parity check and not kept.

    Parity on ``images`` ((H, W) [0,1] grey; synthetic if None), all against the torch ``MedSigLIPBackend`` in fp32
    on CPU with the same probe: numpy preprocessing vs the processor (<= 1e-4), the fp32 ONNX through the bundle
    runtime (score <= 1e-3, embedding cosine >= 0.9999) and the int8 bundle itself (score <= 0.05). Any miss raises
    ``RuntimeError``; then no ``model.json`` or ``card.json`` is left (the numbers go to ``export_failed.json``).
    Returns the metadata written to ``model.json``.
    """
    import datetime
    import shutil
    import tempfile

    import onnxruntime as ort
    import torch

    from cxrtriage.backends.bundle_config import write_bundle_config
    from cxrtriage.backends.bundled import INDEX_FILE, META_FILE, MODEL_FILE, BundledOnnxBackend
    from cxrtriage.backends.embedding_index import EmbeddingIndex
    from cxrtriage.evaluation.card_data import CARD_DATA_FILE, write_fresh_card
    from cxrtriage.files import sha256_file
    from cxrtriage.imaging.preprocess import to_model_input

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probe_source = "LinearProbe object"
    probe_dir = None
    if not isinstance(probe, LinearProbe):
        p = Path(probe)
        probe_dir = p if p.is_dir() else p.parent
        probe_source = str(p)
        probe = LinearProbe.load(p)
    imgs = list(images) if images is not None else synthetic_images(4)
    if not imgs:
        raise ValueError("need at least one parity image")
    index_src = probe_dir / INDEX_FILE if probe_dir is not None and (probe_dir / INDEX_FILE).is_file() else None
    index_dst = out_dir / INDEX_FILE
    same_index = index_src is not None and index_dst.exists() and index_src.resolve() == index_dst.resolve()
    for stale in (out_dir / META_FILE, out_dir / CARD_DATA_FILE, out_dir / BUNDLE_FAILED_FILE) + (
        () if same_index else (index_dst,)
    ):
        stale.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp_name:
        tmp = Path(tmp_name)
        torch_backend = MedSigLIPBackend(
            model_dir, classifier=probe.save(tmp / "probe.json"), device="cpu", dtype=torch.float32
        )
        report = export_medsiglip_vision(
            str(model_dir), tmp, probe=probe, opset=opset, images=imgs, backend=torch_backend
        )
        dim = int(report["embedding_dim"])
        if index_src is not None:
            n_index_dim = EmbeddingIndex.load(index_src).embeddings.shape[1]
            if n_index_dim != dim:
                raise ValueError(f"{index_src} holds {n_index_dim}-d embeddings, the model gives {dim}-d")

        preprocess = _siglip_preprocess(
            torch_backend.processor.image_processor,
            torch_backend.image_size,
            int(getattr(torch_backend.model.config.vision_config, "num_channels", 3)),
        )
        info = torch_backend.info
        fingerprint = probe.fingerprint()
        meta: dict[str, Any] = {
            "name": f"medsiglip-probe:{info.name}",
            "version": f"{info.version}+probe.{fingerprint[:12]}",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "task": "urgency triage of frontal chest radiographs (decision support only)",
            "backend": BUNDLE_BACKEND,
            "hai_def": True,
            "terms": HAI_DEF_TERMS,
            "labels": ["Non-Urgent", "Urgent"],
            "preprocess": preprocess,
            "input": {"name": INPUT_NAME, "shape": "[N,3,H,W] float32"},
            "outputs": {
                EMBED_NAME: f"[N,{dim}] L2-normalised pooled image embedding (as MedSigLIPBackend.embed)",
                LOGIT_NAME: "[N] raw probe logit = embedding @ weight + bias (calibration applied afterwards)",
            },
            "output_roles": {"logit": LOGIT_NAME, "feature_map": None, "embedding": EMBED_NAME},
            "quantization": {
                "format": "dynamic int8",
                "weights": "int8 (QInt8)",
                "activations": "uint8, quantised dynamically at run time",
                "tool": f"onnxruntime {ort.__version__} quantize_dynamic",
                "exporter": report["exporter"],
                "opset": opset,
            },
            "calibration": {
                "type": "platt",
                "a": float(probe.platt_a),
                "b": float(probe.platt_b),
                "fit_on": probe.meta.get("calibration", "see probe.meta"),
                **({"warning": DEGENERATE_WARNING} if degenerate(float(probe.platt_a)) else {}),
            },
            "threshold": float(probe.threshold),
            "review_band": [float(probe.review_band[0]), float(probe.review_band[1])],
        }
        for key in ("threshold_rule", "review_band_rule"):
            if key in probe.meta:
                meta[key] = probe.meta[key]
        if "ood" in probe.meta:
            meta["ood"] = probe.meta["ood"]
        meta["probe"] = {
            "fingerprint": fingerprint,
            "dim": len(probe.weight),
            "source": probe_source,
            "meta": {k: v for k, v in probe.meta.items() if k != "ood"},
        }
        meta["source"] = {
            "model": str(model_dir),
            "model_dir": str(torch_backend.model_dir),
            "name": info.name,
            "version": info.version,
            "weights_and_probe_sha256": info.sha256,
        }

        # torch fp32 reference and the processor's pixels
        ref = [torch_backend.analyze(im) for im in imgs]
        ref_score = np.array([r.score for r in ref])
        ref_logit = np.array([r.logit for r in ref])
        ref_emb = np.stack([r.embedding for r in ref])
        pv = np.asarray(
            torch_backend.processor(images=[torch_backend.to_pil(im) for im in imgs], return_tensors="np")[
                "pixel_values"
            ],
            dtype=np.float32,
        )
        ours = np.concatenate([to_model_input(im, preprocess) for im in imgs])
        parity: dict[str, Any] = {
            "n_images": len(imgs),
            "images": "given" if images is not None else "synthetic",
            "reference": "torch MedSigLIPBackend, fp32 on CPU, same probe",
            "preprocess_max_abs_diff": float(np.abs(ours - pv).max()) if ours.shape == pv.shape else float("inf"),
        }

        def bundle_numbers(backend: BundledOnnxBackend, tag: str) -> None:
            outs = [backend.analyze(im) for im in imgs]
            parity[f"{tag}_score_max_abs_diff"] = float(np.abs(np.array([o.score for o in outs]) - ref_score).max())
            parity[f"{tag}_logit_max_abs_diff"] = float(np.abs(np.array([o.logit for o in outs]) - ref_logit).max())
            parity[f"{tag}_embedding_cosine_min"] = float(cosines(np.stack([o.embedding for o in outs]), ref_emb).min())

        # fp32 ONNX through the same runtime class and metadata: checks preprocessing + roles + calibration exactly
        fp32_dir = tmp / "fp32"
        fp32_dir.mkdir()
        (tmp / FP32_FILE).replace(fp32_dir / MODEL_FILE)
        write_bundle_config({**meta, "sha256": sha256_file(fp32_dir / MODEL_FILE)}, fp32_dir / META_FILE)
        bundle_numbers(BundledOnnxBackend(fp32_dir, verify=False), "fp32")

        # the int8 bundle itself
        (tmp / INT8_FILE).replace(out_dir / MODEL_FILE)
        sha = sha256_file(out_dir / MODEL_FILE)
        meta["files"] = {MODEL_FILE: sha}
        if index_src is not None:
            if not same_index:
                shutil.copyfile(index_src, index_dst)
            meta["files"][INDEX_FILE] = sha256_file(index_dst)
            meta["index_source"] = str(index_src)
        meta["sha256"] = sha
        meta["size_bytes"] = (out_dir / MODEL_FILE).stat().st_size
        write_bundle_config(meta, out_dir / META_FILE)
        bundle_numbers(BundledOnnxBackend(out_dir), "int8")

    parity["tolerances"] = {
        "preprocess_max_abs_diff": PREPROCESS_TOL,
        "fp32_score_max_abs_diff": FP32_SCORE_TOL,
        "fp32_embedding_cosine_min": MIN_FP32_COSINE,
        "int8_score_max_abs_diff": INT8_SCORE_TOL,
    }
    meta["parity"] = parity
    meta["export"] = {**report, "files": {"int8": MODEL_FILE, "fp32": "not kept (used for the parity check only)"}}
    failures = []
    if not parity["preprocess_max_abs_diff"] <= PREPROCESS_TOL:
        failures.append(f"numpy preprocessing differs from the processor by {parity['preprocess_max_abs_diff']:.3g}")
    if not parity["fp32_score_max_abs_diff"] <= FP32_SCORE_TOL:
        failures.append(f"fp32 ONNX score differs from torch by {parity['fp32_score_max_abs_diff']:.3g}")
    if not parity["fp32_embedding_cosine_min"] >= MIN_FP32_COSINE:
        failures.append(f"fp32 ONNX embedding cosine to torch {parity['fp32_embedding_cosine_min']:.6f}")
    if not parity["int8_score_max_abs_diff"] <= INT8_SCORE_TOL:
        failures.append(f"int8 score differs from torch by {parity['int8_score_max_abs_diff']:.3g}")
    if failures:
        (out_dir / META_FILE).unlink(missing_ok=True)  # never leave a servable bundle that failed its parity check
        _write_json(out_dir / BUNDLE_FAILED_FILE, meta)
        raise RuntimeError(
            f"MedSigLIP ONNX bundle parity failed ({'; '.join(failures)}); numbers in {out_dir / BUNDLE_FAILED_FILE}"
        )
    write_fresh_card(out_dir, write_bundle_config(meta, out_dir / META_FILE))
    return meta
