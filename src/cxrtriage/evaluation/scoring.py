"""Score triage predictions against gold labels (and evidence boxes against reference boxes).

This is the code behind ``prototype/eval/eval_metrics.py`` and notebook 03, so that the script, the notebook
and the tests read, join and report in exactly one way:

* :func:`load_gold` / :func:`load_predictions` / :func:`load_boxes` read the three file formats with errors that
  name the file, the line and the field;
* :func:`join` matches predictions to gold rows by **image id** (the file name without its directory, so files
  written on different machines match) and refuses ids that are in one file and not the other unless asked;
* :func:`evaluate_files` builds the report dict and :func:`format_report` prints it;
* :func:`held_out_examples` lists the held-out test images of the committed split (``cxrtriage test-set``), and
  :func:`example_paths` turns such a file back into image paths (``cxrtriage predict --examples``).

Every number comes from :mod:`cxrtriage.evaluation.metrics`; this module only reads, joins and arranges.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.evaluation import metrics

__all__ = [
    "InputProblem",
    "Join",
    "PredictionsFile",
    "build_parser",
    "evaluate_files",
    "example_paths",
    "format_report",
    "held_out_examples",
    "gold_label",
    "image_id",
    "join",
    "load_boxes",
    "load_gold",
    "load_predictions",
    "localisation",
    "main",
    "read_jsonl",
    "row_image_id",
        "write_jsonl",
]

SUBGROUP_FIELDS = ("view", "sex", "age_band")
#: Age bands (years, lower bound inclusive) for the subgroup table: children, young, middle-aged and older adults.
AGE_BANDS = ((0, "0-17"), (18, "18-39"), (40, "40-59"), (60, "60+"))
#: How many ids an error message or the printed report lists before "... and N more".
MAX_LISTED_IDS = 10
#: The IoU above which an evidence box counts as "found the lesion" in the report.
IOU_HIT = 0.3
DATASETS = ("nih", "kermany")


class InputProblem(ValueError):
    """The inputs cannot be evaluated; the message is shown to the user as is (exit code 2 in the CLIs)."""


# --------------------------------------------------------------------------- reading


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; malformed lines are fatal, not skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputProblem(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InputProblem(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append((lineno, obj))
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write one JSON object per line (UTF-8, creating parent folders); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def image_id(ref: str) -> str:
    """The file name without its directory (either separator): the join key of every file here."""
    return re.split(r"[\\/]", str(ref).strip())[-1]


def row_image_id(row: dict[str, Any], where: str) -> str:
    """Image id of a gold / prediction / box row from ``path``, ``image_id`` or ``id``.

    When a row gives both a path and an id they must name the same file: a silent choice between two
    different images would score the wrong one.
    """
    refs = {name: row[name] for name in ("path", "image_id", "id") if row.get(name) not in (None, "")}
    if not refs:
        raise InputProblem(f"{where}: has neither 'path' nor 'id'/'image_id' (rows are joined by image file name)")
    ids = {name: image_id(str(value)) for name, value in refs.items()}
    if len(set(ids.values())) > 1:
        shown = ", ".join(f"{name}={value!r}" for name, value in ids.items())
        raise InputProblem(f"{where}: the fields name different images ({shown})")
    key = next(iter(ids.values()))
    if not key:
        raise InputProblem(f"{where}: {next(iter(refs))!r} ends with a separator, no file name to join on")
    return key


def gold_label(row: dict[str, Any], where: str) -> int:
    """1 = urgent, 0 = non-urgent, from whichever of "urgency", "label", "y" is present."""
    if "urgency" in row:
        value = str(row["urgency"]).strip().lower().replace("-", "_")
        mapping: dict[Any, int] = {"urgent": 1, "non_urgent": 0}
    elif "label" in row:
        value = str(row["label"]).strip().lower()
        mapping = {"urgent": 1, "non-urgent": 0}
    elif "y" in row:
        value = row["y"]
        mapping = {0: 0, 1: 1} if not isinstance(value, bool) and isinstance(value, (int, float)) else {}
    else:
        raise InputProblem(f"{where}: no truth field ('urgency', 'label' or 'y')")
    if value not in mapping:
        raise InputProblem(f"{where}: unknown truth value {value!r} (expected Urgent / Non-Urgent, urgent / non_urgent or 1 / 0)")
    return mapping[value]


def age_band(age: Any) -> str | None:
    """The :data:`AGE_BANDS` label of an age in years (a number or numeric string); None when unknown."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return None
    if not 0 <= years < 130:
        return None
    return [label for low, label in AGE_BANDS if years >= low][-1]


def load_gold(path: Path) -> dict[str, dict[str, Any]]:
    """Gold rows by image id: ``y`` (1 = urgent), ``view``, ``sex``, ``age_band`` (from ``age``), ``patient_id``
    (None when absent)."""
    path = Path(path)
    gold: dict[str, dict[str, Any]] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        key = row_image_id(row, where)
        if key in gold:
            raise InputProblem(f"{where}: file name {key!r} appears twice in the gold file (also line "
                               f"{gold[key]['line']}); the join is by file name")
        gold[key] = {"y": gold_label(row, where), "line": lineno, "view": row.get("view"), "sex": row.get("sex"),
                     "age_band": age_band(row.get("age")), "patient_id": row.get("patient_id")}
    if not gold:
        raise InputProblem(f"{path} contains no rows (empty gold file)")
    return gold


@dataclass
class PredictionsFile:
    """A ``cxrtriage predict --out`` file, split into scored rows and rows the gate (or the reader) rejected."""

    path: Path
    scored: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> score, threshold, label, crops, image
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> error, error_type

    @property
    def ids(self) -> set[str]:
        return set(self.scored) | set(self.errors)

    def __len__(self) -> int:
        return len(self.scored) + len(self.errors)


def _crop_boxes(row: dict[str, Any], where: str) -> list[tuple[float, float, float, float]]:
    crops = row.get("crops") or []
    if not isinstance(crops, list):
        raise InputProblem(f"{where}: 'crops' must be a list of {{x, y, w, h, ...}} objects")
    boxes = []
    for i, crop in enumerate(crops):
        if not isinstance(crop, dict):
            raise InputProblem(f"{where}: crops[{i}] is not an object")
        missing = [k for k in "xywh" if not _is_number(crop.get(k))]
        if missing:
            raise InputProblem(f"{where}: crops[{i}] has no numeric {', '.join(repr(k) for k in missing)}")
        boxes.append(tuple(float(crop[k]) for k in "xywh"))
    return boxes  # type: ignore[return-value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_predictions(path: Path) -> PredictionsFile:
    """Read a predictions file; a row with ``error`` is kept as present-but-unscored, never dropped."""
    path = Path(path)
    out = PredictionsFile(path)
    lines: dict[str, int] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        key = row_image_id(row, where)
        if key in lines:
            raise InputProblem(f"{where}: file name {key!r} appears twice in the predictions (also line {lines[key]}); "
                               "the join is by file name")
        lines[key] = lineno
        if row.get("error"):
            out.errors[key] = {"error": str(row["error"]), "error_type": str(row.get("error_type") or "error")}
            continue
        score = row.get("score")
        if not _is_number(score):
            what = "missing field 'score'" if score is None else f"'score' is not a number ({score!r})"
            raise InputProblem(f"{where}: {what}; a prediction row needs a numeric 'score' (or an 'error' for a "
                               "rejected image)")
        image = row.get("image") if isinstance(row.get("image"), dict) else {}
        out.scored[key] = {"score": float(score), "threshold": row.get("threshold"), "label": row.get("label"),
                           "boxes": _crop_boxes(row, where), "width": image.get("width"), "height": image.get("height")}
    if not len(out):
        raise InputProblem(f"{path} contains no rows (empty predictions file)")
    return out


_BOX_ID_COLUMNS = ("image_id", "image_index", "imageindex", "id", "image", "path", "file")


def _norm_column(name: str) -> str:
    """'Image Index' -> 'imageindex', 'Bbox [x' -> 'x', 'h]' -> 'h' (NIH's BBox_List header splits that way)."""
    n = re.sub(r"[^a-z0-9_]", "", name.strip().lower())
    return n[4:] if n.startswith("bbox") and len(n) > 4 else n


def _box_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not text.strip():
        raise InputProblem(f"{path} is empty (no boxes)")
    if text.lstrip().startswith("{"):
        return read_jsonl(path)
    reader = csv.reader(io.StringIO(text))
    header = [_norm_column(h) for h in next(reader)]
    rows = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        rows.append((reader.line_num, {h: v for h, v in zip(header, row) if h}))
    return rows


def load_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Reference boxes by image id, ``(x, y, w, h)`` in the pixel space of the image that was predicted on.

    CSV with an id column (``image_index`` / ``Image Index`` / ``image_id`` / ``id`` / ``image`` / ``path`` /
    ``file``) and ``x, y, w, h`` -- the headers of ``nih/boxes.csv``, ``nih/rsna_boxes.csv`` and NIH's
    ``BBox_List_2017.csv`` (1024-px space: only right for 1024-px images) -- or JSONL with the same fields.
    One box per row; an image may have several rows.
    """
    path = Path(path)
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for lineno, row in _box_rows(path):
        where = f"{path}:{lineno}"
        norm = {_norm_column(k): v for k, v in row.items()}
        id_col = next((c for c in _BOX_ID_COLUMNS if str(norm.get(c) or "").strip()), None)
        if id_col is None:
            raise InputProblem(f"{where}: missing image id field (one of {', '.join(_BOX_ID_COLUMNS)})")
        vals = []
        for k in "xywh":
            if k not in norm or str(norm[k]).strip() == "":
                raise InputProblem(f"{where}: missing field {k!r} (boxes need x, y, w, h)")
            try:
                vals.append(float(norm[k]))
            except (TypeError, ValueError):
                raise InputProblem(f"{where}: field {k!r} is not a number ({norm[k]!r})") from None
        if not all(np.isfinite(vals)) or vals[2] <= 0 or vals[3] <= 0:
            raise InputProblem(f"{where}: box {vals} needs finite x, y and positive w, h")
        boxes.setdefault(image_id(str(norm[id_col])), []).append((vals[0], vals[1], vals[2], vals[3]))
    if not boxes:
        raise InputProblem(f"{path} contains no boxes (a header only?)")
    return boxes


# --------------------------------------------------------------------------- joining


def _listed(ids: Iterable[str], limit: int = MAX_LISTED_IDS) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f", ... and {len(ids) - limit} more" if len(ids) > limit else "")


@dataclass
class Join:
    """Which image ids are in both files and which are not (ids only; the rows stay in their files)."""

    matched: list[str]  # in gold and scored, sorted
    not_scored: list[str]  # in gold, prediction row is an error (the image went to a human)
    gold_only: list[str]  # in gold, no prediction row at all
    preds_only: list[str]  # prediction rows (scored or error) without a gold row


def join(gold: dict[str, dict[str, Any]], preds: PredictionsFile, *, gold_path: Path | str = "gold",
         allow_unmatched: bool = False) -> Join:
    """Match by image id. Ids in one file and not the other are an error unless ``allow_unmatched``:
    a silently smaller test set reports numbers on other cases than the reader thinks."""
    result = Join(matched=sorted(k for k in gold if k in preds.scored),
                  not_scored=sorted(k for k in gold if k in preds.errors),
                  gold_only=sorted(k for k in gold if k not in preds.ids),
                  preds_only=sorted(k for k in preds.ids if k not in gold))
    if not result.matched:
        raise InputProblem(
            f"no prediction matches a gold row by file name ({len(preds)} prediction rows, "
            f"{len(preds.errors)} of them errors; {len(gold)} gold rows); check that both files refer to the same "
            f"images (gold ids e.g. {_listed(gold, 3)}; prediction ids e.g. {_listed(preds.ids, 3)})"
        )
    if (result.gold_only or result.preds_only) and not allow_unmatched:
        parts = [f"{len(gold)} gold rows, {len(preds)} prediction rows"]
        if result.gold_only:
            parts.append(f"{len(result.gold_only)} gold image id(s) have no row in {preds.path}: {_listed(result.gold_only)}")
        if result.preds_only:
            parts.append(f"{len(result.preds_only)} prediction image id(s) have no row in {gold_path}: "
                         f"{_listed(result.preds_only)}")
        raise InputProblem("the predictions and the gold file do not list the same images (joined by file name): "
                           + "; ".join(parts) + ". Predict every gold image (cxrtriage predict --examples GOLD) "
                           "or pass --allow-unmatched to score the images in both")
    return result


# --------------------------------------------------------------------------- evaluation


def choose_threshold(cli_threshold: float | None, matched: list[dict[str, Any]]) -> tuple[float, str]:
    """The operating threshold: the caller's, else the single threshold every prediction row carries."""
    if cli_threshold is not None:
        return float(cli_threshold), "--threshold"
    values = {p["threshold"] for p in matched}
    if None in values:
        raise InputProblem("some predictions have no 'threshold' field; pass --threshold")
    if len(values) != 1:
        shown = ", ".join(str(v) for v in sorted(values, key=str)[:5])
        raise InputProblem(f"predictions use different thresholds ({shown}); pass --threshold")
    value = values.pop()
    if not _is_number(value):
        raise InputProblem(f"the predictions' 'threshold' is not a number: {value!r}; pass --threshold")
    return float(value), "predictions"


def _at_target_recall(y: np.ndarray, s: np.ndarray, target: float) -> dict[str, Any]:
    """The highest threshold reaching ``target`` sensitivity on these cases, and what it costs there."""
    try:
        t = metrics.threshold_for_sensitivity(y, s, target)
    except ValueError as exc:  # no urgent case: no such threshold
        return {"target": target, "threshold": None, "operating_point": None, "note": str(exc)}
    return {"target": target, "threshold": t, "operating_point": metrics.operating_point(y, s, t).to_dict()}


def _not_scored(gold: dict[str, dict[str, Any]], preds: PredictionsFile, ids: list[str]) -> dict[str, Any]:
    urgent = [k for k in ids if gold[k]["y"] == 1]
    return {"n": len(ids), "n_urgent": len(urgent), "n_non_urgent": len(ids) - len(urgent),
            "urgent_ids": urgent, "ids": ids,
            "error_types": dict(sorted(Counter(preds.errors[k]["error_type"] for k in ids).items()))}


def localisation(preds: PredictionsFile, boxes: dict[str, list[tuple[float, float, float, float]]],
                 *, boxes_path: Path | str = "boxes") -> dict[str, Any]:
    """Evidence boxes against reference boxes, per image with at least one reference box and a scored prediction.

    Best-box IoU over every (crop, reference) pair and the pointing game with the centre of the first
    (strongest) crop; an image without any crop is IoU 0 and a miss, because "no evidence shown" is what the
    reader got. Boxes-file ids without a prediction are listed, and fatal only when none match.
    """
    scored_ids = sorted(k for k in boxes if k in preds.scored)
    if not scored_ids:
        raise InputProblem(f"none of the {len(boxes)} image ids in {boxes_path} has a scored prediction "
                           f"(e.g. {_listed(boxes, 3)}); the join is by file name")
    per_image, outside = [], []
    for k in scored_ids:
        p, gt = preds.scored[k], boxes[k]
        iou = metrics.best_box_iou(p["boxes"], gt)
        hit = bool(p["boxes"]) and metrics.pointing_hit((p["boxes"][0][0] + p["boxes"][0][2] / 2,
                                                          p["boxes"][0][1] + p["boxes"][0][3] / 2), gt)
        per_image.append({"image_id": k, "best_iou": iou, "pointing_hit": bool(hit), "n_crops": len(p["boxes"]),
                          "n_reference_boxes": len(gt)})
        w, h = p.get("width"), p.get("height")
        if _is_number(w) and _is_number(h) and any(x + bw > w + 1 or y + bh > h + 1 for x, y, bw, bh in gt):
            outside.append(k)
    ious = np.array([r["best_iou"] for r in per_image])
    hits = [r["pointing_hit"] for r in per_image]
    warnings = []
    if outside:
        warnings.append(f"{len(outside)} image(s) have reference boxes outside the predicted image "
                        f"({_listed(outside, 3)}): are the boxes in another pixel space (e.g. 1024 px for a 512 px PNG)?")
    return metrics.to_jsonable({
        "boxes_file": str(boxes_path),
        "n": len(per_image),
        "n_without_crop": sum(r["n_crops"] == 0 for r in per_image),
        "mean_best_iou": float(ious.mean()),
        "median_best_iou": float(np.median(ious)),
        "iou_hit_threshold": IOU_HIT,
        "n_iou_hit": int((ious >= IOU_HIT).sum()),
        f"iou_ge_{IOU_HIT}": float((ious >= IOU_HIT).mean()),
        "pointing_game": float(np.mean(hits)),
        "n_pointing_hits": int(sum(hits)),
        "boxes_ids_not_scored": sorted(k for k in boxes if k in preds.errors),
        "boxes_ids_without_prediction": sorted(k for k in boxes if k not in preds.ids),
        "warnings": warnings,
        "per_image": per_image,
    })


def evaluate_files(preds_path: Path, gold_path: Path, *, threshold: float | None = None,
                   target_recall: float = 0.95, target_specificity: float = 0.95, n_boot: int = 2000,
                   seed: int = 0, allow_unmatched: bool = False, boxes_path: Path | None = None) -> dict[str, Any]:
    """The full report dict (JSON-ready): counts, AUC + CI, operating points, calibration, subgroups,
    images the gate rejected, and localisation when ``boxes_path`` is given. Raises :class:`InputProblem`."""
    preds_path, gold_path = Path(preds_path), Path(gold_path)
    gold = load_gold(gold_path)
    preds = load_predictions(preds_path)
    boxes = load_boxes(Path(boxes_path)) if boxes_path is not None else None
    j = join(gold, preds, gold_path=gold_path, allow_unmatched=allow_unmatched)
    keys = j.matched
    counts = {
        "pred_rows": len(preds),
        "pred_errors": len(preds.errors),
        "pred_errors_in_gold": len(j.not_scored),
        "pred_unmatched": sum(k not in gold for k in preds.scored),
        "gold_rows": len(gold),
        "gold_without_prediction": len(j.gold_only),
        "matched": len(keys),
    }
    thr, source = choose_threshold(threshold, [preds.scored[k] for k in keys])
    y = np.array([gold[k]["y"] for k in keys])
    s = np.array([preds.scored[k]["score"] for k in keys])
    # Images without a patient id are their own cluster.
    has_pid = any(gold[k]["patient_id"] is not None for k in keys)
    clusters = ([str(gold[k]["patient_id"]) if gold[k]["patient_id"] is not None else f"image:{k}" for k in keys]
                if has_pid else None)

    report: dict[str, Any] = {
        "inputs": {"preds": str(preds_path), "gold": str(gold_path), **counts},
        "threshold": thr,
        "threshold_source": source,
        "bootstrap_unit": "patient_id" if has_pid else "image",
        **metrics.summarize(y, s, thr, groups=clusters, n_boot=n_boot, seed=seed),
        "target_sensitivity": target_recall,
        "specificity_at_target_sensitivity": metrics.specificity_at_sensitivity(y, s, target_recall),
        "target_recall": _at_target_recall(y, s, target_recall),
        "target_specificity": target_specificity,
        "sensitivity_at_target_specificity": metrics.sensitivity_at_specificity(y, s, target_specificity),
        # Ties are worth a note: with 4-decimal scores one case sat exactly on the shipped threshold.
        "n_scores_equal_threshold": int(np.sum(s == thr)),
        "not_scored": _not_scored(gold, preds, j.not_scored),
        "unmatched": {"gold_without_prediction": j.gold_only, "predictions_without_gold": j.preds_only},
    }
    # The emitted label can differ from score >= threshold (the review band is labelled Urgent).
    labels = [preds.scored[k]["label"] for k in keys]
    if all(lab in ("Urgent", "Non-Urgent") for lab in labels):
        called = np.array([lab == "Urgent" for lab in labels], dtype=float)
        report["label_operating_point"] = metrics.operating_point(y, called, 0.5).to_dict()
    report["subgroups"] = {
        f: metrics.subgroup_metrics(y, s, [str(gold[k][f] or "unknown") for k in keys], thr)
        for f in SUBGROUP_FIELDS
        if any(gold[k][f] is not None for k in keys)
    }
    if boxes is not None:
        report["localisation"] = localisation(preds, boxes, boxes_path=boxes_path or "boxes")
    return metrics.to_jsonable(report)


# --------------------------------------------------------------------------- output


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _op_line(op: dict[str, Any]) -> str:
    return (f"sens {_f(op['sensitivity'])} (TP {op['tp']}, FN {op['fn']}), spec {_f(op['specificity'])} "
            f"(TN {op['tn']}, FP {op['fp']}), PPV {_f(op['ppv'])}, NPV {_f(op['npv'])}")


def format_report(r: dict[str, Any]) -> str:
    """The report as the text ``eval_metrics.py`` prints (no patient ids; image ids only where asked for)."""
    inp, op = r["inputs"], r["operating_point"]
    lo, hi = r["auc_ci95"]
    lines = [
        f"rows: {inp['matched']} matched | predictions: {inp['pred_rows']} ({inp['pred_errors']} with an error, "
        f"{inp['pred_unmatched']} not in gold) | gold: {inp['gold_rows']} ({inp['gold_without_prediction']} without prediction)",
        "",
        f"{'n':<40}{r['n']}",
        f"{'prevalence (urgent)':<40}{_f(r['prevalence'])}  ({r['n_pos']} urgent)",
        f"{'AUC [95% CI, ' + r['bootstrap_unit'] + ' bootstrap]':<40}{_f(r['auc'])}  [{_f(lo)}, {_f(hi)}]",
        f"{'threshold (' + r['threshold_source'] + ')':<40}{r['threshold']:.4f}",
        f"{'sensitivity':<40}{_f(op['sensitivity'])}  (TP {op['tp']}, FN {op['fn']})",
        f"{'specificity':<40}{_f(op['specificity'])}  (TN {op['tn']}, FP {op['fp']})",
        f"{'PPV':<40}{_f(op['ppv'])}",
        f"{'NPV':<40}{_f(op['npv'])}",
        f"{'sensitivity @ specificity ' + str(r['target_specificity']):<40}{_f(r['sensitivity_at_target_specificity'])}",
        f"{'specificity @ sensitivity ' + str(r['target_sensitivity']):<40}{_f(r['specificity_at_target_sensitivity'])}",
        f"{'ECE (10 bins)':<40}{_f(r['ece'], 4)}",
    ]
    if "label_operating_point" in r:
        lop = r["label_operating_point"]
        lines.append(
            f"{'emitted label (incl. review band)':<40}sens {_f(lop['sensitivity'])}, spec {_f(lop['specificity'])}, "
            f"PPV {_f(lop['ppv'])}, NPV {_f(lop['npv'])}"
        )
    if r.get("n_scores_equal_threshold"):
        lines.append(f"note: {r['n_scores_equal_threshold']} score(s) equal the threshold as written; they count "
                     "as Urgent (score >= threshold), as the pipeline decides on the reported 4-decimal values")
    tr = r.get("target_recall")
    if tr:
        name = f"threshold for recall >= {tr['target']}"
        if tr["threshold"] is None:
            lines.append(f"{name:<40}n/a ({tr.get('note', 'no urgent case')})")
        else:
            lines += [f"{name:<40}{tr['threshold']:.4f}  (chosen on these cases: optimistic)",
                      f"{'  at that threshold':<40}{_op_line(tr['operating_point'])}"]
    ns = r.get("not_scored")
    if ns and ns["n"]:
        kinds = ", ".join(f"{k} {v}" for k, v in ns["error_types"].items())
        lines += ["", f"not scored: {ns['n']} gold image(s) have an error row instead of a score ({kinds}); "
                      "they are in no number above"]
        if ns["n_urgent"]:
            lines.append(f"  {ns['n_urgent']} of them are gold-Urgent: they went to a human as errors, not as "
                         f"triaged cases: {_listed(ns['urgent_ids'])}")
    um = r.get("unmatched") or {}
    for what, ids in (("gold ids without a prediction", um.get("gold_without_prediction")),
                      ("prediction ids without gold", um.get("predictions_without_gold"))):
        if ids:
            lines.append(f"unmatched ({what}, --allow-unmatched): {len(ids)}: {_listed(ids)}")
    for fld, groups in r["subgroups"].items():
        lines += ["", f"by {fld}:", f"  {'group':<12}{'n':>6}{'n_pos':>7}{'AUC':>8}{'sens':>8}{'spec':>8}"]
        for name, g in groups.items():
            lines.append(
                f"  {name:<12}{g['n']:>6}{g['n_pos']:>7}{_f(g['auc']):>8}{_f(g['sensitivity']):>8}{_f(g['specificity']):>8}"
            )
    loc = r.get("localisation")
    if loc:
        lines += [
            "",
            f"localisation vs {loc['boxes_file']}: {loc['n']} image(s) with a reference box and a score "
            f"({loc['n_without_crop']} without any crop: IoU 0, miss)",
            f"  {'mean best-box IoU':<38}{_f(loc['mean_best_iou'])}  (median {_f(loc['median_best_iou'])})",
            f"  {'IoU >= ' + str(loc['iou_hit_threshold']):<38}{_f(loc['iou_ge_' + str(loc['iou_hit_threshold'])])}  "
            f"({loc['n_iou_hit']} of {loc['n']})",
            f"  {'pointing game (first crop centre)':<38}{_f(loc['pointing_game'])}  ({loc['n_pointing_hits']} of {loc['n']})",
        ]
        if loc["boxes_ids_without_prediction"]:
            ids = loc["boxes_ids_without_prediction"]
            lines.append(f"  boxes-file ids without a prediction: {len(ids)}: {_listed(ids)}")
        if loc["boxes_ids_not_scored"]:
            lines.append(f"  boxes-file ids with an error row: {len(loc['boxes_ids_not_scored'])}")
        lines += [f"  warning: {w}" for w in loc["warnings"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the held-out test list


def held_out_examples(data_dir: Path, dataset: str = "all") -> list[dict[str, Any]]:
    """Every held-out TEST image of the committed split, as gold rows (labels and dataset IDs, no images).

    Fields: ``dataset``, ``image_id`` (file name: the join key), ``path`` (relative to the data directory),
    ``label`` (Urgent / Non-Urgent), then ``view``, ``sex``, ``age``, ``patient_id`` where the dataset has them.
    Ordered by dataset (NIH first), then path, so the file is reproducible byte for byte.
    """
    from cxrtriage.data import load_split_records

    if dataset not in (*DATASETS, "all"):
        raise InputProblem(f"unknown dataset {dataset!r}; choose one of {', '.join((*DATASETS, 'all'))}")
    wanted = DATASETS if dataset == "all" else (dataset,)
    root = Path(data_dir)
    records = load_split_records(root, datasets=wanted)["test"]
    rows: list[dict[str, Any]] = []
    for rec in sorted(records, key=lambda r: (DATASETS.index(r.dataset), r.path.as_posix())):
        row: dict[str, Any] = {"dataset": rec.dataset, "image_id": rec.path.name,
                               "path": rec.path.relative_to(root).as_posix(),
                               "label": "Urgent" if rec.urgent else "Non-Urgent"}
        age: int | str = int(rec.age) if rec.age.isdigit() else rec.age
        row.update({k: v for k, v in (("view", rec.view), ("sex", rec.sex), ("age", age)) if v != ""})
        row["patient_id"] = rec.patient
        rows.append(row)
    seen = Counter(r["image_id"] for r in rows)
    dup = [k for k, c in seen.items() if c > 1]
    if dup:
        raise InputProblem(f"test images share a file name ({_listed(dup)}); the join by file name would be ambiguous")
    if not rows:
        raise InputProblem(f"no test images of {dataset} found under {root} (is it the data directory?)")
    return rows


def example_paths(examples: Path, data_dir: Path | None, *, limit: int | None = None) -> list[Path]:
    """Image paths of a test-examples / gold file: ``path`` resolved against ``data_dir`` (absolute kept).

    Every file must exist before anything runs: a half-predicted test set would fail the join later anyway,
    and the message here can say which files and where they were looked for.
    """
    examples = Path(examples)
    rows = read_jsonl(examples)
    if not rows:
        raise InputProblem(f"{examples} contains no rows (empty examples file)")
    if limit is not None:
        if limit < 1:
            raise InputProblem(f"--limit must be a positive number, got {limit}")
        rows = rows[:limit]
    paths, missing = [], []
    for lineno, row in rows:
        ref = row.get("path")
        if not isinstance(ref, str) or not ref.strip():
            raise InputProblem(f"{examples}:{lineno}: missing field 'path' (the image path, relative to the data "
                               "directory)")
        p = Path(ref)
        if not p.is_absolute():
            if data_dir is None:
                raise InputProblem(f"{examples}:{lineno}: relative path {ref!r} needs a data directory "
                                   "(--data-dir or CXRTRIAGE_DATA_DIR)")
            p = Path(data_dir) / p
        (paths if p.is_file() else missing).append(p)
    if missing:
        raise InputProblem(f"{len(missing)} of {len(rows)} image(s) listed in {examples} are missing under "
                           f"{data_dir}: {_listed(str(m) for m in missing)} (set --data-dir or CXRTRIAGE_DATA_DIR "
                           "to the folder holding nih/ and kermany/)")
    return paths


# --------------------------------------------------------------------------- command line (eval_metrics.py)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The options of ``prototype/eval/eval_metrics.py``."""
    p = argparse.ArgumentParser(prog=prog, description="Triage metrics from cxrtriage predictions and gold labels.")
    p.add_argument("--preds", type=Path, required=True, help="predictions JSONL (cxrtriage predict --out)")
    p.add_argument("--gold", type=Path, required=True,
                   help="gold labels JSONL, e.g. prototype/eval/test_examples.jsonl or `cxrtriage test-set --out`")
    p.add_argument("--threshold", type=float, help="operating threshold (default: the predictions' 'threshold')")
    p.add_argument("--target-recall", "--target-sensitivity", dest="target_recall", type=float, default=0.95,
                   help="sensitivity target: the threshold reaching it here, specificity @ it (default 0.95)")
    p.add_argument("--target-specificity", type=float, default=0.95, help="for sensitivity @ specificity (default 0.95)")
    p.add_argument("--boxes", type=Path, help="reference boxes (CSV or JSONL: image id, x, y, w, h in the predicted "
                                              "image's pixels) for IoU and the pointing game")
    p.add_argument("--allow-unmatched", action="store_true",
                   help="score the images in both files instead of stopping at ids found in only one")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the AUC CI (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, help="also write the report as JSON here")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Exit code 0 on success, 2 when the inputs cannot be evaluated (the message says why)."""
    args = build_parser(prog).parse_args(argv)
    try:
        report = evaluate_files(args.preds, args.gold, threshold=args.threshold, target_recall=args.target_recall,
                                target_specificity=args.target_specificity, n_boot=args.n_boot, seed=args.seed,
                                allow_unmatched=args.allow_unmatched, boxes_path=args.boxes)
    except (InputProblem, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0
