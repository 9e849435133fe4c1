"""What the anatomy stage changes, measured through ``Triage.predict`` as a user runs it:

* evidence against the RSNA radiologists' lung-opacity boxes (pointing game with the top crop, best-box IoU),
  crops on radiologist-negative films, crops off the lung fields; the urgency score's AUC for "lung opacity"
  against "normal" and against "not normal, no opacity" (radiologist labels, not the text-mined NIH ones);
  every figure for all RSNA-labelled images and for those of held-out test patients;
* the frontal-view check on both sides: frontal test films of each source (and a synthetic atypical version of
  NIH test films: lines, burned-in text, rotation, a cropped side) must be triaged, never refused; laterals and
  non-chest images must not pass as frontal;
* specificity on the JSRT test films (normal and nodule adults of a site the generation-1 model never saw).

``cxrtriage evaluate-anatomy`` writes the JSON (default ``prototype/eval/anatomy_eval.json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cxrtriage.anatomy.masks import segment_image
from cxrtriage.data import (
    jsrt_records,
    jsrt_split,
    lateral_paths,
    load_split_records,
    nih_records,
    read_split,
    rsna_boxes,
    rsna_labels,
)
from cxrtriage.errors import CXRTriageError, NotAChestXrayError
from cxrtriage.evaluation import metrics
from cxrtriage.explain import evidence
from cxrtriage.imaging.load import load_image
from cxrtriage.pipeline import Triage

N_PEDIATRIC = 200
N_SYNTHETIC = 40


REASONS: Counter = Counter()  # why films were refused or sent to review (first clause of each message)


def _outcome(engine: Triage, image) -> tuple[str, object]:
    """("refused" | "review" | "triaged", prediction or the refusal message)."""
    try:
        p = engine.predict(image)
    except NotAChestXrayError as exc:
        REASONS["refused: " + str(exc).split(" (")[0]] += 1
        return "refused", str(exc)
    for w in p.warnings:
        if w.startswith("atypical frontal radiograph: "):
            REASONS["review: " + w.removeprefix("atypical frontal radiograph: ").split(" (")[0].split(";")[0]] += 1
    return ("review" if p.needs_review else "triaged"), p


def atypical_version(pixels: np.ndarray, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A frontal film made to look like an ICU film: bright tube-like curves, burned-in text blocks in the corners,
    a rotation of 6-12 degrees and one side cropped by 8-15 %. Returns the image and the text blocks (x, y, w, h)."""
    rng = random.Random(seed)  # noqa: S311 - a seeded, reproducible simulation
    img = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    h, w = img.shape
    for _ in range(2):  # tubes and wires
        x0, x1 = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.8) * w
        t = np.linspace(0, 1, 4 * h)
        xs = (x0 + (x1 - x0) * t + rng.uniform(-0.1, 0.1) * w * np.sin(np.pi * t)).astype(int).clip(0, w - 3)
        ys = (rng.uniform(0.0, 0.2) * h + t * rng.uniform(0.5, 0.8) * h).astype(int).clip(0, h - 1)
        for d in range(3):
            img[ys, xs + d] = 250
    blocks = []
    for corner in range(2):  # burned-in text and markers, outside the thorax
        bw, bh = int(0.12 * w), int(0.05 * h)
        x = int(0.02 * w) if corner == 0 else int(0.86 * w)
        y = int(0.02 * h)
        img[y : y + bh, x : x + bw] = 0
        for k in range(5):
            img[y + 2 : y + bh - 2, x + 3 + k * bw // 5 : x + 3 + k * bw // 5 + max(2, bw // 12)] = 255
        blocks.append((x, y, bw, bh))
    im = Image.fromarray(img).rotate(rng.uniform(6, 12) * rng.choice((-1, 1)), resample=Image.BILINEAR, fillcolor=0)
    cut = int(rng.uniform(0.08, 0.15) * w)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if rng.random() < 0.5:  # crop the image-left side: the blocks move left with it (the one there may go)
        return arr[:, cut:], [(x - cut, y, bw, bh) for x, y, bw, bh in blocks if x - cut >= 0]
    return arr[:, : w - cut], [(x, y, bw, bh) for x, y, bw, bh in blocks if x + bw <= w - cut]


def _crop_off_lungs(pred, lungs: np.ndarray) -> list[bool]:
    """Per crop: True when the box does not touch the lung fields at all (masks at the original size)."""
    return [not lungs[c.y : c.y + c.h, c.x : c.x + c.w].any() for c in pred.crops]


def _rsna(engine: Triage, data_dir: Path) -> dict:
    labels = rsna_labels(data_dir)
    boxes = rsna_boxes(data_dir)
    split = read_split()
    recs = {r.image_id: r for r in nih_records(data_dir)}
    rows = []
    for image_id, (target, cls) in tqdm(sorted(labels.items()), desc="RSNA images", leave=False, mininterval=5.0):
        rec = recs.get(image_id)
        if rec is None:
            continue
        loaded = load_image(rec.path)
        kind, p = _outcome(engine, loaded)
        if kind == "refused":
            rows.append({"image_id": image_id, "target": target, "class": cls, "refused": True})
            continue
        lungs = segment_image(loaded).lungs
        crops = [(c.x, c.y, c.w, c.h) for c in p.crops]
        gt = boxes.get(image_id, [])
        rows.append(
            {
                "image_id": image_id,
                "target": target,
                "class": cls,
                "part": split.get(rec.key, "?"),
                "score": p.score,
                "label": p.label,
                "n_crops": len(crops),
                "crops_off_lungs": sum(_crop_off_lungs(p, lungs)),
                "pointing_hit": bool(crops)
                and metrics.pointing_hit((crops[0][0] + crops[0][2] / 2, crops[0][1] + crops[0][3] / 2), gt)
                if gt
                else None,
                "best_iou": metrics.best_box_iou(crops, gt) if gt else None,
            }
        )

    def summarise(sel: list[dict]) -> dict:
        pos = [r for r in sel if r["target"] == 1 and not r.get("refused")]
        neg = [r for r in sel if r["target"] == 0 and not r.get("refused")]
        normal = [r for r in neg if r["class"] == "Normal"]
        other = [r for r in neg if r["class"] != "Normal"]

        def auc(a: list[dict], b: list[dict]) -> float | None:
            if not a or not b:
                return None
            return metrics.roc_auc(np.array([1] * len(a) + [0] * len(b)), np.array([r["score"] for r in a + b]))

        all_crops = sum(r["n_crops"] for r in pos + neg)
        return {
            "n_opacity": len(pos),
            "n_normal": len(normal),
            "n_not_normal_no_opacity": len(other),
            "refused": sum(bool(r.get("refused")) for r in sel),
            "pointing_game_top_crop": float(np.mean([r["pointing_hit"] for r in pos])) if pos else None,
            "mean_best_iou": float(np.mean([r["best_iou"] for r in pos])) if pos else None,
            "opacity_films_without_crop": sum(r["n_crops"] == 0 for r in pos),
            "negative_films_with_crops": sum(r["n_crops"] > 0 for r in neg),
            "negative_films": len(neg),
            "crops_total": all_crops,
            "crops_off_lungs": sum(r["crops_off_lungs"] for r in pos + neg),
            "auc_opacity_vs_normal": auc(pos, normal),
            "auc_opacity_vs_not_normal_no_opacity": auc(pos, other),
            "auc_opacity_vs_all_negatives": auc(pos, neg),
        }

    return {
        "all_rsna_images": summarise(rows),
        "test_patients_only": summarise([r for r in rows if r.get("part") == "test"]),
        "validation_and_test_patients": summarise([r for r in rows if r.get("part") in ("val", "test")]),
        "note": "RSNA labels are radiologist re-reads of NIH images; the test part holds images of held-out patients; "
        "a model trained with --box-weight saw the boxes of the training patients, so judge it on the "
        "validation and test patients",
    }


def _gate(engine: Triage, data_dir: Path) -> dict:
    parts = load_split_records(data_dir)
    nih_test = [r.path for r in parts["test"] if r.dataset == "nih"]
    ped = [r.path for r in parts["test"] if r.dataset == "kermany"]
    sets = {
        "nih_test_frontal": nih_test,
        "pediatric_test_frontal": random.Random(0).sample(ped, min(N_PEDIATRIC, len(ped))),  # noqa: S311 - seeded for a reproducible sample, not a secret
        "jsrt_test_frontal": [r.path for r in jsrt_split(jsrt_records(data_dir))["test"]],
        "dicom_frontal": sorted((data_dir / "dicom").glob("*.dcm")),
        "laterals": lateral_paths(data_dir),
    }
    out: dict = {}
    for name, paths in sets.items():
        kinds = Counter()
        for path in tqdm(paths, desc=name, leave=False, mininterval=5.0):
            try:
                kinds[_outcome(engine, path)[0]] += 1
            except CXRTriageError as exc:
                kinds[type(exc).__name__] += 1
        out[name] = {"n": len(paths), **dict(kinds)}
    # synthetic ICU-like versions of NIH test films
    kinds, crops_on_text = Counter(), 0
    for i, path in enumerate(tqdm(nih_test[:N_SYNTHETIC], desc="atypical", leave=False, mininterval=5.0)):
        img, blocks = atypical_version(load_image(path).pixels, i)
        kind, p = _outcome(engine, img)
        kinds[kind] += 1
        if kind != "refused":
            for c in p.crops:
                cx, cy = c.x + c.w / 2, c.y + c.h / 2
                crops_on_text += any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in blocks)
    out["nih_test_made_atypical"] = {
        "n": min(N_SYNTHETIC, len(nih_test)),
        **dict(kinds),
        "crop_centres_on_burned_in_text": crops_on_text,
        "how": "bright tube-like curves, burned-in text blocks, rotation 6-12 degrees, one side cropped 8-15%",
    }
    try:
        import skimage.data

        kinds = Counter()
        names = [
            "camera",
            "moon",
            "coins",
            "page",
            "text",
            "brick",
            "grass",
            "gravel",
            "clock",
            "horse",
            "astronaut",
            "chelsea",
            "coffee",
            "rocket",
        ]
        for name in names:
            img = getattr(skimage.data, name)()
            if img.ndim == 3:
                img = img[..., :3].mean(-1)
            kinds[_outcome(engine, img.astype(np.float32) / max(1.0, float(img.max())))[0]] += 1
        out["scikit_image_photographs_grey"] = {"n": len(names), **dict(kinds)}
    except ImportError:
        pass
    return out


def _jsrt_specificity(engine: Triage, data_dir: Path) -> dict:
    recs = jsrt_split(jsrt_records(data_dir))["test"]
    res = {}
    for nodule in (0, 1):
        scores, labels = [], []
        for r in recs:
            if r.nodule != nodule:
                continue
            kind, p = _outcome(engine, r.path)
            if kind != "refused":
                scores.append(p.score)
                labels.append(p.label)
        res["normal" if nodule == 0 else "nodule"] = {
            "n": len(scores),
            "non_urgent": sum(lab == "Non-Urgent" for lab in labels),
            "specificity": float(np.mean([lab == "Non-Urgent" for lab in labels])) if labels else None,
            "median_score": float(np.median(scores)) if scores else None,
        }
    return res


def run_anatomy_evaluation(data_dir: Path, out: Path, model_dir: str | None = None) -> dict:
    REASONS.clear()
    crops = tempfile.mkdtemp(prefix="cxrtriage-anatomy-eval-")  # the crops are measured, then deleted
    engine = Triage(backend_name="bundled", model_dir=model_dir, crops_dir=crops)
    report = {
        "command": "cxrtriage evaluate-anatomy",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": engine.info.model_dump(),
        "segmenter": engine.segmenter.name if engine.segmenter else None,
        "evidence_rule": {  # the crops measured below were shown under this rule (explain/evidence.py)
            "min_strength": evidence.MIN_STRENGTH,
            "non_urgent_min_strength": evidence.NON_URGENT_MIN_STRENGTH,
            "non_urgent_min_prominence": evidence.NON_URGENT_MIN_PROMINENCE,
            "fitted_by": "scripts/evidence_rule.py (prototype/eval/evidence_rule.json)",
        },
        "rsna_localisation": _rsna(engine, data_dir),
        "frontal_gate": _gate(engine, data_dir),
        "jsrt_test": _jsrt_specificity(engine, data_dir),
    }
    report["reasons"] = dict(REASONS.most_common())
    shutil.rmtree(crops, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics.to_jsonable(report), indent=2) + "\n")
    return report
