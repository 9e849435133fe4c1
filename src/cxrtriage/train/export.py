"""Checkpoint (or a seed ensemble of checkpoints as one graph, :mod:`cxrtriage.train.ensemble`) -> shipped model
bundle: fp32 ONNX, static int8 QDQ ONNX, calibration (every source's validation part, Shenzhen's included when
its data is there), operating point, review band, similar-case index, out-of-distribution statistics and metadata
(``model.json``, written through the typed :class:`~cxrtriage.backends.bundle_config.BundleConfig` the engine reads
it with), and a fresh ``card.json`` (nothing measured yet on the new model: ``make evaluate`` fills it).

Every step is checked and written to a trace (the specification's ``medgemma_quant.tracing.txt`` idea).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cxrtriage.backends.bundle_config import write_bundle_config
from cxrtriage.backends.bundled import FP32_FILE, INDEX_FILE, META_FILE, MODEL_FILE
from cxrtriage.backends.embedding_index import build_index_and_ood
from cxrtriage.config import repo_relative
from cxrtriage.data import Record, load_split_records, rsna_opacity_labels
from cxrtriage.evaluation import metrics
from cxrtriage.files import sha256_file
from cxrtriage.imaging.layout import ChestLayoutModel, layout_features
from cxrtriage.imaging.preprocess import PERCENTILE_WINDOW, from_cache, percentile_window
from cxrtriage.train.ensemble import COMBINE_RULE, SeedEnsemble, as_paths, combine
from cxrtriage.train.export_provenance import run_summary, training_blocks, training_data
from cxrtriage.train.model import ArchConfig, CXRNet
from cxrtriage.train.operating_point import (
    apply_operating_point,
    fit_operating_point,
    validation_records,
    validation_set,
)
from cxrtriage.train.trainer import cache_config, limit_per_dataset, load_cache

VERSION = "0.3.0"
N_CALIB = 256
N_INDEX_PEDIATRIC = 600
KNN_K = 5
LAYOUT_K = 10
LAYOUT_MARGIN = 0.1  # chosen so that every chest image in the data directory passes (largest seen: 0.59)


def load_checkpoint(path: Path) -> tuple[CXRNet, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    arch = ArchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["arch"].items()})
    model = CXRNet(arch)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


FINDING_OUTPUT = "finding_logits"


def strip_doc_strings(path: Path) -> None:
    """Remove torch's node doc strings from an ONNX file: they hold the export machine's source paths."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.doc_string = ""
    model.doc_string = ""
    onnx.save(model, str(path))


def export_fp32(model: CXRNet | SeedEnsemble, size: int, path: Path) -> None:
    """torch.export-based ONNX export (opset 18) with a dynamic batch dimension."""
    dummy = torch.zeros(1, 1, size, size)
    names = ["urgency_logit", "feature_map"] + ([FINDING_OUTPUT] if model.cfg.findings else [])
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=names,
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        opset_version=18,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    strip_doc_strings(path)


class CalibrationBatches(CalibrationDataReader):
    """Feeds preprocessed training images to the int8 calibrator."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._it = iter([{"image": b} for b in batches])

    def get_next(self) -> dict | None:
        return next(self._it, None)


def normalise_cache(images_u8: np.ndarray, mean: float, std: float, window: str | None = None) -> np.ndarray:
    """Cached 8-bit images -> the model input, exactly as :func:`~cxrtriage.imaging.preprocess.to_model_input`."""
    x = from_cache(images_u8)
    if window == PERCENTILE_WINDOW:
        x = np.stack([percentile_window(im) for im in x]) if len(x) else x
    return ((x - mean) / std)[:, None].astype(np.float32)


def run_onnx(path: Path, x: np.ndarray, batch: int = 32, findings: bool = False) -> tuple[np.ndarray, ...]:
    """Return (logits [N], pooled embeddings [N, C]) from an ONNX bundle model, plus the first finding's logits [N]
    when ``findings``."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, embs, finding = [], [], []
    for i in range(0, len(x), batch):
        outs = sess.run(None, {"image": x[i : i + batch]})
        logits.append(outs[0][:, 0])
        embs.append(outs[1].mean(axis=(2, 3)))
        if findings:
            finding.append(outs[2][:, 0])
    if findings:
        return np.concatenate(logits), np.concatenate(embs), np.concatenate(finding)
    return np.concatenate(logits), np.concatenate(embs)


def load_members(checkpoints: Sequence[Path], train_log: str | None) -> tuple[CXRNet | SeedEnsemble, list[dict], list]:
    """The model to export (one checkpoint bare, several as a :class:`SeedEnsemble`; ValueError when their
    architecture or preprocessing differ), each member's checkpoint dict and its train_log.json (``{}`` when
    absent; ``train_log`` overrides the first member's)."""
    loaded = [load_checkpoint(p) for p in checkpoints]
    pres = [
        {**cache_config(int(c["preprocess"]["input_size"])), **c["preprocess"]} for _, c in loaded
    ]  # older: no quantize
    model = combine([m for m, _ in loaded], pres, [str(p) for p in checkpoints])
    log_paths = [Path(train_log) if train_log else checkpoints[0].parent / "train_log.json"]
    log_paths += [p.parent / "train_log.json" for p in checkpoints[1:]]
    logs = [json.loads(p.read_text()) if p.is_file() else {} for p in log_paths]
    return model, [{**c, "preprocess": pre} for (_, c), pre in zip(loaded, pres)], logs


def export_bundle(
    checkpoints: Path | Sequence[Path],
    out_dir: Path,
    *,
    data_dir: Path,
    train_log: str | None = None,
    trace: Path | None = None,
    limit: int | None = None,
    ablation_logs: list[Path] | None = None,
    fp32_copy: Path | None = None,
) -> Path:
    """``checkpoints``: one checkpoint, or several members of a seed ensemble (same architecture and preprocessing)
    exported as one graph. ``train_log``: the first member's train_log.json (default: next to its checkpoint).
    ``limit`` caps the images used per dataset and part (smoke tests only). ``ablation_logs``: train_log.json
    files of alternative runs (e.g. NIH only) whose validation curves are recorded next to the chosen run's.
    ``fp32_copy``: where the fp32 ONNX model is kept for benchmarks (default: next to the first checkpoint; an
    ensemble's copy must not overwrite its first member's own)."""
    lines: list[str] = []

    def log(msg: str) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S")
        lines.append(f"[{stamp}] {msg}")
        print(msg, flush=True)

    torch.set_num_threads(2)
    paths = as_paths(checkpoints)
    model, ckpts, tlogs = load_members(paths, train_log)
    ckpt, pre = ckpts[0], ckpts[0]["preprocess"]
    size, mean, std = int(pre["input_size"]), float(pre["mean"]), float(pre["std"])
    for path, c, tl in zip(paths, ckpts, tlogs):
        log(f"checkpoint {repo_relative(path)} (best epoch {c['best']}, seed {(tl.get('config') or {}).get('seed')})")
    log(
        (f"seed ensemble of {len(paths)}: {COMBINE_RULE}; " if len(paths) > 1 else "")
        + f"arch {ckpt['arch']['name']}, input {size}px, mean {mean:.4f} std {std:.4f}"
    )

    parts = {k: limit_per_dataset(v, limit) for k, v in load_split_records(data_dir).items()}
    rng = np.random.default_rng(0)
    tr = parts["train"]
    calib_recs = [tr[i] for i in rng.choice(len(tr), min(N_CALIB, len(tr)), replace=False)]
    val = {k: limit_per_dataset(v, limit) for k, v in validation_records(data_dir).items()}
    va_nih, va_ped, va_jsrt = val["nih"], val["kermany"], val["jsrt"]  # JSRT: normal adults of a site never trained on
    va_shz = val.get("shenzhen", [])  # Shenzhen: a third adult site (tuberculosis = urgent), when its data is there
    idx_recs = [r for r in tr if r.dataset == "nih"]
    ped_tr = [r for r in tr if r.dataset == "kermany"]
    idx_recs += [ped_tr[i] for i in rng.choice(len(ped_tr), min(N_INDEX_PEDIATRIC, len(ped_tr)), replace=False)]

    caches: dict[str, np.ndarray] = {}

    def prep(recs: list[Record], desc: str) -> np.ndarray:
        caches[desc] = load_cache(recs, size, desc)
        return normalise_cache(caches[desc], mean, std, pre.get("window"))

    x_cal, x_vn, x_vp, x_idx = (
        prep(calib_recs, "calibration"),
        prep(va_nih, "NIH val"),
        prep(va_ped, "pediatric val"),
        prep(idx_recs, "index"),
    )
    x_vj = prep(va_jsrt, "JSRT val")
    x_vs = prep(va_shz, "Shenzhen val") if va_shz else None

    # Chest-layout model (out-of-distribution gate and polarity check): PCA of thumbnails of the index images,
    # bound = largest validation residual plus a margin.
    def feats(cache: np.ndarray) -> np.ndarray:
        return np.stack([layout_features(from_cache(c), size) for c in cache])

    layout = ChestLayoutModel.fit(feats(caches["index"]), LAYOUT_K, size)
    val_res = np.array(
        [
            layout.residual_of_features(f)
            for f in np.concatenate(
                [feats(caches[k]) for k in ("NIH val", "pediatric val", "Shenzhen val") if k in caches]
            )
        ]
    )
    max_layout_residual = float(val_res.max() + LAYOUT_MARGIN)
    log(
        f"chest-layout model: {LAYOUT_K} principal components of 32x32 thumbnails of {len(idx_recs)} training images; "
        "validation residual quantiles 50/99/100% "
        f"{np.quantile(val_res, 0.5):.3f}/{np.quantile(val_res, 0.99):.3f}/{val_res.max():.3f}; "
        f"gate above {max_layout_residual:.3f}"
    )
    y_vn = np.array([r.urgent for r in va_nih])
    y_vp = np.array([r.urgent for r in va_ped])

    work = Path(tempfile.mkdtemp(prefix="cxrtriage-export-"))
    try:
        fp32 = work / FP32_FILE
        export_fp32(model, size, fp32)
        log(f"torch.onnx.export (dynamo, opset 18) -> fp32 ONNX {fp32.stat().st_size / 1e6:.2f} MB")
        with torch.no_grad():
            t_logit = model(torch.from_numpy(x_vn[:32]))[0]
        o_logit = run_onnx(fp32, x_vn[:32])[0]
        d = float(np.abs(t_logit[:, 0].numpy() - o_logit).max())
        log(f"parity torch vs ONNX fp32 on 32 NIH val images: max |logit diff| = {d:.2e}")
        if d > 1e-3:
            raise RuntimeError(f"fp32 ONNX does not match torch (max diff {d})")

        pre_path = work / "model.pre.onnx"
        quant_pre_process(str(fp32), str(pre_path))
        log("onnxruntime.quantization.quant_pre_process: shape inference + graph optimisation")
        int8 = work / MODEL_FILE
        quantize_static(
            str(pre_path),
            str(int8),
            CalibrationBatches([x_cal[i : i + 16] for i in range(0, len(x_cal), 16)]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        strip_doc_strings(int8)
        log(
            "quantize_static QDQ, per-channel int8 weights, uint8 activations, "
            f"MinMax over {len(x_cal)} training images "
            f"-> {int8.stat().st_size / 1e6:.2f} MB"
        )

        f_logit_vn, _ = run_onnx(fp32, x_vn)
        q_logit_vn, _ = run_onnx(int8, x_vn)
        f_logit_vp, _ = run_onnx(fp32, x_vp)
        q_logit_vp, q_emb_vp = run_onnx(int8, x_vp)
        auc = {
            "nih_val_fp32": metrics.roc_auc(y_vn, f_logit_vn),
            "nih_val_int8": metrics.roc_auc(y_vn, q_logit_vn),
            "pediatric_val_fp32": metrics.roc_auc(y_vp, f_logit_vp),
            "pediatric_val_int8": metrics.roc_auc(y_vp, q_logit_vp),
        }
        q_logit_vs = None
        if x_vs is not None:
            y_vs, q_logit_vs = np.array([r.urgent for r in va_shz]), run_onnx(int8, x_vs)[0]
            auc["shenzhen_val_fp32"] = metrics.roc_auc(y_vs, run_onnx(fp32, x_vs)[0])
            auc["shenzhen_val_int8"] = metrics.roc_auc(y_vs, q_logit_vs)
        corr = float(np.corrcoef(f_logit_vn, q_logit_vn)[0, 1])
        findings_meta = None
        if model.cfg.findings:  # the RSNA lung-opacity head: validation AUC on the labelled NIH images
            rsna = rsna_opacity_labels(data_dir)
            known = np.array([r.key in rsna for r in va_nih])
            q_op = run_onnx(int8, x_vn, findings=True)[2]
            y_op = np.array([rsna[r.key] for r in va_nih if r.key in rsna])
            findings_meta = {
                "lung_opacity": {
                    "output": FINDING_OUTPUT,
                    "index": 0,
                    "labels": "RSNA Pneumonia Detection Challenge radiologists (rsna_target)",
                    "val_n": int(known.sum()),
                    "val_n_pos": int(y_op.sum()),
                    "val_auc_int8": metrics.roc_auc(y_op, q_op[known])
                    if known.any() and 0 < y_op.sum() < len(y_op)
                    else None,
                    "named_in_explanation": False,
                    "rule": "a finding is named in the explanation only when its held-out test AUC "
                    "(cxrtriage evaluate) is >= 0.75",
                }
            }
            log(
                f"lung-opacity head: validation AUC {findings_meta['lung_opacity']['val_auc_int8']} "
                f"on {int(known.sum())} RSNA-labelled NIH images"
            )
        log(
            f"parity fp32 vs int8 on NIH val: logit correlation {corr:.4f}, "
            f"max |diff| {np.abs(f_logit_vn - q_logit_vn).max():.3f}; "
            f"AUC {json.dumps({k: round(v, 4) for k, v in auc.items()})}"
        )

        # Calibration and operating point on the int8 model that ships, on every source's validation part.
        sources = {"nih": validation_set(va_nih, q_logit_vn), "kermany": validation_set(va_ped, q_logit_vp)}
        if len(va_jsrt):
            sources["jsrt"] = validation_set(va_jsrt, run_onnx(int8, x_vj)[0])
        if q_logit_vs is not None:
            sources["shenzhen"] = validation_set(va_shz, q_logit_vs)
        op = fit_operating_point(sources)
        cal, by_source = op["calibration"], op["validation_by_source"]
        log(
            f"Platt calibration on {cal['fit_on']}: a={cal['a']:.4f} b={cal['b']:.4f}; validation ECE "
            + ", ".join(f"{k} {v['ece']:.4f}" for k, v in by_source.items())
        )
        log(
            "threshold for sensitivity>=0.95: "
            + ", ".join(
                f"{k} val {v['threshold_for_sensitivity_0.95']:.4f}"
                for k, v in by_source.items()
                if "threshold_for_sensitivity_0.95" in v
            )
            + f" -> operating threshold {op['threshold']:.4f}; review band "
            f"{op['review_band'][0]:.4f}-{op['review_band'][1]:.4f} ({op['review_band_rule'].split(',')[0]})"
        )

        # Similar-case index and out-of-distribution statistics.
        _, q_emb_idx = run_onnx(int8, x_idx)
        _, q_emb_vn = run_onnx(int8, x_vn)
        # every frontal validation film passes the similarity gate: Shenzhen's too (an adult site the index, kept to
        # NIH and pediatric films, does not hold)
        q_emb_val = [q_emb_vn, q_emb_vp] + ([run_onnx(int8, x_vs)[1]] if x_vs is not None else [])
        centre, index_emb, ood = build_index_and_ood(q_emb_idx, np.concatenate(q_emb_val), KNN_K)
        ood["max_layout_residual"] = max_layout_residual
        ood["layout_components"] = LAYOUT_K
        log(
            f"similar-case index: {len(idx_recs)} training images ({sum(r.dataset == 'nih' for r in idx_recs)} NIH); "
            f"validation kNN similarity quantiles {ood['val_knn_similarity_quantiles']}; "
            f"gate below {ood['min_knn_similarity']:.3f}"
        )

        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(int8, out_dir / MODEL_FILE)
        np.savez_compressed(
            out_dir / INDEX_FILE,
            keys=np.array([r.key for r in idx_recs]),
            labels=np.array([r.urgent for r in idx_recs], np.int8),
            embeddings=index_emb.astype(np.float16),
            centre=centre.astype(np.float32),
            layout_mean=layout.mean.astype(np.float32),
            layout_components=layout.components.astype(np.float32),
        )
        fp32_keep = Path(fp32_copy) if fp32_copy else paths[0].parent / FP32_FILE
        fp32_keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fp32, fp32_keep)
        log(f"fp32 ONNX kept for benchmarks at {repo_relative(fp32_keep)} (not shipped)")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    head = model.head
    meta = {
        "name": "cxrtriage-bundled-cxrnet",
        "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "task": "urgency triage of frontal chest radiographs (decision support only)",
        "labels": ["Non-Urgent", "Urgent"],
        "arch": ckpt["arch"],
        "preprocess": {**pre, "input_range": "[0,1] grey, display polarity (MONOCHROME2)"},
        "outputs": {
            "urgency_logit": "[N,1] raw logit" + (f" (mean of {len(paths)} members)" if len(paths) > 1 else ""),
            "feature_map": "[N,C,h,w] last feature map (CAM source)"
            + (f"; the {len(paths)} members' maps concatenated along C" if len(paths) > 1 else ""),
        },
        "head": {"weight": head.weight.detach()[0].tolist(), "bias": float(head.bias.detach()[0])},
        "quantization": {
            "format": "QDQ static int8",
            "weights": "int8 per-channel",
            "activations": "uint8",
            "calibration": f"MinMax over {len(x_cal)} training images",
            "tool": f"onnxruntime {ort.__version__}",
        },
        "findings": findings_meta,
        "validation": {"auc": auc, "fp32_int8_logit_correlation": corr},
        "ood": ood,
        "training_data": training_data(tlogs, shenzhen_validation=bool(va_shz)),
        **training_blocks(ckpts, tlogs),
        "training_alternatives": [run_summary(json.loads(Path(p).read_text())) for p in (ablation_logs or [])],
        "files": {MODEL_FILE: sha256_file(out_dir / MODEL_FILE), INDEX_FILE: sha256_file(out_dir / INDEX_FILE)},
        "sha256": sha256_file(out_dir / MODEL_FILE),
        "size_bytes": (out_dir / MODEL_FILE).stat().st_size,
    }
    bundle = write_bundle_config(apply_operating_point(meta, op), out_dir / META_FILE)
    log(f"metadata written to {repo_relative(out_dir / META_FILE)}; model sha256 {bundle.sha256}")
    from cxrtriage.evaluation.card_data import write_fresh_card
    from cxrtriage.evaluation.model_card import write_card

    log(f"measurements reset in {repo_relative(write_fresh_card(out_dir, bundle))}")
    card = repo_relative(write_card(out_dir))
    log(f"model card written to {card} (test metrics: run `cxrtriage evaluate --update-card`)")
    if trace:
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text("\n".join(lines) + "\n")
    return out_dir
