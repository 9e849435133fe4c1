"""``cxrtriage evaluate``: measured numbers of the shipped model on held-out test patients.

Runs the exact user-facing pipeline (gate included) on every NIH and pediatric test image, then reports
AUC with a patient-level bootstrap CI, the operating point (at the threshold and as labelled, i.e. with the
review band counted Urgent), calibration, subgroups by view and sex, localisation (the crops a user gets) against
the NIH expert boxes (best-box IoU, pointing game) and the fp32 -> int8 AUC change when the fp32 model is available.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxrtriage import decision
from cxrtriage.backends.bundled import DEFAULT_FP32_PATH
from cxrtriage.data import Record, load_split_records, nih_boxes, nih_records, read_split
from cxrtriage.errors import InputError
from cxrtriage.evaluation import metrics
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.preprocess import to_model_input
from cxrtriage.pipeline import Triage


def score_set(engine: Triage, records: list[Record], desc: str) -> dict:
    """Every record through ``Triage.predict`` as a user gets it: scores, labels (review band = Urgent), review
    flags and truths of the films the gate let through, in ``records`` order, and the refused ones by key."""
    scores, labels, review, y, kept, rejected = [], [], [], [], [], []
    for rec in tqdm(records, desc=desc, unit="img"):
        try:
            pred = engine.predict(rec.path, save_crops=False)
        except InputError as exc:
            rejected.append({"key": rec.key, "error": str(exc)})
            continue
        scores.append(pred.score)
        labels.append(int(pred.label == "Urgent"))
        review.append(int(pred.needs_review))
        y.append(rec.urgent)
        kept.append(rec)
    return {
        "scores": np.array(scores),
        "labels": np.array(labels),
        "review": np.array(review),
        "y": np.array(y),
        "records": kept,
        "rejected": rejected,
    }


def write_jsonl(res: dict, threshold: float, preds: Path, gold: Path) -> None:
    """Predictions and gold labels in the format of prototype/eval/eval_metrics.py, so the metrics can be
    recomputed independently: ``python prototype/eval/eval_metrics.py --preds P --gold G``."""
    with preds.open("w") as fp, gold.open("w") as fg:
        for rec, score, label, review in zip(res["records"], res["scores"], res["labels"], res["review"]):
            fp.write(
                json.dumps(
                    {
                        "path": str(rec.path),
                        "score": float(score),
                        "label": "Urgent" if label else "Non-Urgent",
                        "threshold": threshold,
                        "needs_review": bool(review),
                    }
                )
                + "\n"
            )
            fg.write(
                json.dumps(
                    {
                        "path": str(rec.path),
                        "urgency": "urgent" if rec.urgent else "non_urgent",
                        "view": rec.view,
                        "sex": rec.sex,
                        "patient_id": rec.patient,
                    }
                )
                + "\n"
            )


def _summary(res: dict, threshold: float, n_boot: int) -> dict:
    y, s = res["y"], res["scores"]
    groups = [r.patient for r in res["records"]]
    out = metrics.summarize(y, s, threshold, groups=groups, n_boot=n_boot, seed=0)
    as_labelled = metrics.operating_point(y, res["labels"].astype(float), 0.5).to_dict()
    as_labelled.pop("threshold", None)
    out["as_labelled"] = as_labelled
    out["needs_review_fraction"] = float(res["review"].mean()) if len(y) else None
    out["rejected_by_gate"] = res["rejected"]
    out["sensitivity_at_specificity_0.80"] = metrics.sensitivity_at_specificity(y, s, 0.80)
    out["specificity_at_sensitivity_0.95"] = metrics.specificity_at_sensitivity(y, s, 0.95)
    return metrics.to_jsonable(out)


def _subgroups(res: dict, threshold: float) -> dict:
    recs = res["records"]
    out = {}
    for attr in ("view", "sex"):
        groups = [getattr(r, attr) or "unknown" for r in recs]
        out[attr] = metrics.subgroup_metrics(res["y"], res["scores"], groups, threshold)
    return metrics.to_jsonable(out)


def _localisation(engine: Triage, data_dir: Path) -> dict:
    """The crops a user gets (``Triage.predict``: on the lung fields, none on weak Non-Urgent films) against the NIH
    expert boxes; pointing game with the centre of the top crop (an image without a crop is a miss)."""
    crops_dir = tempfile.mkdtemp(prefix="cxrtriage-eval-crops-")
    boxed = Triage(engine.backend, engine.explainer, crops_dir=crops_dir, segmenter=engine.segmenter)
    boxes = nih_boxes(data_dir)
    split = read_split()
    recs = {r.image_id: r for r in nih_records(data_dir)}
    rows = []
    for image_id, gt in boxes.items():
        rec = recs.get(image_id)
        if rec is None:
            continue
        try:
            pred = boxed.predict(rec.path)
        except InputError:
            continue
        crops = [(c.x, c.y, c.w, c.h) for c in pred.crops]
        rows.append(
            {
                "image": image_id,
                "split": split.get(rec.key, "?"),
                "urgent": rec.urgent,
                "label": pred.label,
                "best_iou": metrics.best_box_iou(crops, gt),
                "pointing_hit": bool(crops)
                and bool(metrics.pointing_hit((crops[0][0] + crops[0][2] / 2, crops[0][1] + crops[0][3] / 2), gt)),
                "n_pred_boxes": len(crops),
            }
        )
    shutil.rmtree(crops_dir, ignore_errors=True)

    def agg(sel: list[dict]) -> dict:
        if not sel:
            return {"n": 0}
        ious = np.array([r["best_iou"] for r in sel])
        return {
            "n": len(sel),
            "mean_best_iou": float(ious.mean()),
            "median_best_iou": float(np.median(ious)),
            "iou_ge_0.3": float((ious >= 0.3).mean()),
            "pointing_game": float(np.mean([r["pointing_hit"] for r in sel])),
        }

    return {
        "all_boxed_images": agg(rows),
        "test_split_only": agg([r for r in rows if r["split"] == "test"]),
        "per_image": rows,
    }


def fp32_vs_int8(engine: Triage, records: list[Record], fp32_path: Path) -> dict | None:
    """AUC of the fp32 ONNX model and of the shipped int8 one on the same images (None without the fp32 file)."""
    if not fp32_path.is_file():
        return None
    import onnxruntime as ort

    backend = engine.backend
    sess = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    y, s32, s8 = [], [], []
    for rec in records:
        pixels = load_image(rec.path).pixels
        x = to_model_input(pixels, backend.preprocess_cfg)
        s32.append(float(sess.run(None, {"image": x})[0][0, 0]))
        s8.append(float(backend.run(x)[0][0]))
        y.append(rec.urgent)
    a32, a8 = metrics.roc_auc(np.array(y), np.array(s32)), metrics.roc_auc(np.array(y), np.array(s8))
    return {"n": len(y), "auc_fp32": a32, "auc_int8": a8, "auc_change": a8 - a32, "fp32_model": str(fp32_path)}


def _carried_fp32_comparison(previous_report: Path, sha256: str) -> dict | None:
    """The fp32-vs-int8 comparison of an earlier run of this same int8 model (same sha256), when the fp32 model
    is not on this machine (it is a training output, not shipped). Marked with the date it was measured, so it is
    never mistaken for a fresh measurement."""
    try:
        old = json.loads(previous_report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    q = old.get("fp32_vs_int8_nih_test")
    if not q or old.get("model", {}).get("sha256") != sha256:
        return None
    return {
        **q,
        "measured": q.get("measured", old.get("created")),
        "note": "not re-measured: the fp32 model is absent here; carried over from the earlier run of the same "
        "int8 model (same sha256)",
    }


def run_evaluation(
    data_dir: Path,
    *,
    model_dir: str | None = None,
    out: Path,
    n_boot: int = 2000,
    update_card: bool = False,
    fp32_path: Path = DEFAULT_FP32_PATH,
    jsonl_dir: Path = Path("runs/eval"),
) -> dict:
    """Write the report to ``out``; per-image predictions and gold labels go to ``jsonl_dir`` (kept out of the
    repository: they copy dataset labels)."""
    engine = Triage(model_dir=model_dir)
    threshold = decision.reported(engine.backend.threshold)  # as every prediction reports it and decides on it
    parts = load_split_records(Path(data_dir))
    test_nih = [r for r in parts["test"] if r.dataset == "nih"]
    test_ped = [r for r in parts["test"] if r.dataset == "kermany"]
    nih = score_set(engine, test_nih, "NIH test")
    ped = score_set(engine, test_ped, "pediatric test")
    report = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"cxrtriage evaluate --n-boot {n_boot}" + (" --update-card" if update_card else ""),
        "model": engine.backend.info.model_dump(),
        "threshold": threshold,
        "review_band": list(engine.backend.review_band),
        "nih_test": {**_summary(nih, threshold, n_boot), "subgroups": _subgroups(nih, threshold)},
        "pediatric_test": _summary(ped, threshold, n_boot),
        "localisation": metrics.to_jsonable(_localisation(engine, Path(data_dir))),
        "fp32_vs_int8_nih_test": metrics.to_jsonable(fp32_vs_int8(engine, test_nih, fp32_path)),
    }
    if report["fp32_vs_int8_nih_test"] is None:
        report["fp32_vs_int8_nih_test"] = _carried_fp32_comparison(out, engine.backend.info.sha256)
    n = report["nih_test"]
    report["summary"] = {
        "nih_test_auc": n["auc"],
        "nih_test_auc_ci95": n["auc_ci95"],
        "nih_test_sensitivity_at_threshold": n["operating_point"]["sensitivity"],
        "nih_test_specificity_at_threshold": n["operating_point"]["specificity"],
        "nih_test_ece": n["ece"],
        "pediatric_test_auc": report["pediatric_test"]["auc"],
        "pointing_game": report["localisation"]["all_boxed_images"].get("pointing_game"),
        "mean_best_iou": report["localisation"]["all_boxed_images"].get("mean_best_iou"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    jsonl_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(nih, threshold, jsonl_dir / "nih_test_preds.jsonl", jsonl_dir / "nih_test_gold.jsonl")
    write_jsonl(ped, threshold, jsonl_dir / "pediatric_test_preds.jsonl", jsonl_dir / "pediatric_test_gold.jsonl")
    if update_card:
        from cxrtriage.evaluation.model_card import update_bundle_metrics

        update_bundle_metrics(report, Path(model_dir) if model_dir else None)
    return report
