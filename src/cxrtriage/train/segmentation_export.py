"""Segmentation checkpoint -> shipped ``segment.onnx`` (static int8 QDQ) + ``segment.json``, with Dice on the JSRT
test split for the fp32 and the int8 model, at the model's resolution and at the original image size.

The int8 model is what ships and what the Dice figures in ``segment.json`` and the model card describe.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cxrtriage.anatomy.segmenter import SEGMENT_META_FILE, SEGMENT_MODEL_FILE, Segmenter
from cxrtriage.data import JSRT_STRUCTURES, jsrt_records, jsrt_split
from cxrtriage.files import sha256_file
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.preprocess import from_cache, to_model_input
from cxrtriage.train.export import CalibrationBatches, strip_doc_strings
from cxrtriage.train.segmentation import SegNet, dice, load_cache, mean_dice

VERSION = "0.2.0"
LICENCE_NOTE = (
    "trained on JSRT radiographs (JSRT: research and education use) with SCR masks (research use; "
    "van Ginneken et al., Med Image Anal 2006); the images and masks are not shipped"
)


def _inputs(images_u8: np.ndarray, pre: dict) -> np.ndarray:
    return np.concatenate([to_model_input(from_cache(im), pre) for im in images_u8])


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"image": x[i : i + 8]})[0] for i in range(0, len(x), 8)])
    return 1.0 / (1.0 + np.exp(-logits))


def _dice_table(probs: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    return {s: round(v, 4) for s, v in mean_dice(probs, masks).items()}


def export_segmenter(
    checkpoint: Path, out_dir: Path, *, data_dir: Path, train_log: Path | None = None, limit: int | None = None
) -> dict:
    """Write ``segment.onnx`` and ``segment.json`` into ``out_dir``; returns the metadata."""
    torch.set_num_threads(2)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = SegNet(tuple(ckpt["widths"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    pre = dict(ckpt["preprocess"])
    size = int(pre["input_size"])
    parts = jsrt_split(jsrt_records(data_dir))
    if limit:
        parts = {k: v[:limit] for k, v in parts.items()}
    x_tr, _ = load_cache(parts["train"], size)
    x_te, m_te = load_cache(parts["test"], size)
    work = Path(tempfile.mkdtemp(prefix="cxrtriage-segment-export-"))
    try:
        fp32 = work / "segment.fp32.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, size, size),),
            str(fp32),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            opset_version=18,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        strip_doc_strings(fp32)
        pre_path = work / "segment.pre.onnx"
        quant_pre_process(str(fp32), str(pre_path))
        int8 = work / SEGMENT_MODEL_FILE
        calib = _inputs(x_tr, pre)
        quantize_static(
            str(pre_path),
            str(int8),
            CalibrationBatches([calib[i : i + 8] for i in range(0, len(calib), 8)]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        strip_doc_strings(int8)
        x_in = _inputs(x_te, pre)
        with torch.no_grad():
            torch_probs = torch.sigmoid(model(torch.from_numpy(x_in))).numpy()
        fp32_probs, int8_probs = _run(fp32, x_in), _run(int8, x_in)
        parity = float(np.abs(torch_probs - fp32_probs).max())
        if parity > 1e-3:
            raise RuntimeError(f"fp32 ONNX does not match torch (max probability difference {parity})")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(int8, out_dir / SEGMENT_MODEL_FILE)
        shutil.copy2(fp32, checkpoint.parent / "segment.fp32.onnx")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tlog = json.loads(train_log.read_text()) if train_log and train_log.is_file() else {}
    meta = {
        "name": "cxrtriage-lung-heart-unet",
        "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "task": "segmentation of both lungs and the heart on frontal chest radiographs (decision support only)",
        "structures": list(JSRT_STRUCTURES),
        "structures_note": "right/left are the patient's: the right lung is on the image's left in a PA/AP film",
        "threshold": 0.5,
        "arch": {"name": "unet-small", "widths": list(ckpt["widths"])},
        "preprocess": {**pre, "input_range": "[0,1] grey, display polarity (MONOCHROME2)"},
        "outputs": {"logits": "[N,3,S,S] one logit per structure, sigmoid -> probability"},
        "quantization": {
            "format": "QDQ static int8",
            "weights": "int8 per-channel",
            "activations": "uint8",
            "calibration": f"MinMax over {len(calib)} JSRT training images",
            "tool": f"onnxruntime {ort.__version__}",
        },
        "training_data": {
            "dataset": "JSRT with SCR masks (../shared/data/jsrt_scr)",
            "licence": LICENCE_NOTE,
            "split": "image-level, stratified by nodule, seed 1202: 70/15/15 (cxrtriage.data.jsrt_split)",
            "counts": {k: len(v) for k, v in parts.items()},
            "test_ids": [r.image_id for r in parts["test"]],
        },
        "training": {k: tlog.get(k) for k in ("command", "config", "best_epoch", "wall_seconds", "torch")},
        "test_dice": {
            "model_resolution_fp32": _dice_table(fp32_probs, m_te),
            "model_resolution_int8": _dice_table(int8_probs, m_te),
            "torch_vs_onnx_fp32_max_probability_difference": parity,
        },
        "sha256": sha256_file(out_dir / SEGMENT_MODEL_FILE),
        "size_bytes": (out_dir / SEGMENT_MODEL_FILE).stat().st_size,
    }
    (out_dir / SEGMENT_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    # Dice at the original image size, through the run-time class (what `cxrtriage segment` writes)
    seg = Segmenter(out_dir)
    orig = {s: [] for s in JSRT_STRUCTURES}
    for rec in parts["test"]:
        result = seg.segment(load_image(rec.path).pixels)
        for s in JSRT_STRUCTURES:
            from PIL import Image

            with Image.open(rec.masks[s]) as im:
                truth = np.asarray(im.convert("L")) >= 128
            orig[s].append(dice(result.mask(s), truth))
    meta["test_dice"]["original_size_int8_runtime"] = {s: round(float(np.mean(v)), 4) for s, v in orig.items()}
    meta["test_dice"]["original_size_int8_runtime_min"] = {s: round(float(np.min(v)), 4) for s, v in orig.items()}
    (out_dir / SEGMENT_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta
