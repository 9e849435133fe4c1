"""Evidence boxes (the crops of a predictions file) against reference boxes: best-box IoU and the pointing game."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.input_files import InputProblem, is_number, listed_ids
from cxrtriage.evaluation.prediction_files import PredictionsFile

__all__ = [
    "IOU_HIT",
    "localisation",
]


#: The IoU above which an evidence box counts as "found the lesion" in the report.
IOU_HIT = 0.3


def localisation(
    preds: PredictionsFile,
    boxes: dict[str, list[tuple[float, float, float, float]]],
    *,
    boxes_path: Path | str = "boxes",
) -> dict[str, Any]:
    """Evidence boxes against reference boxes, per image with at least one reference box and a scored prediction.

    Best-box IoU over every (crop, reference) pair and the pointing game with the centre of the first
    (strongest) crop; an image without any crop is IoU 0 and a miss, because "no evidence shown" is what the
    reader got. Boxes-file ids without a prediction are listed, and fatal only when none match.
    """
    scored_ids = sorted(k for k in boxes if k in preds.scored)
    if not scored_ids:
        raise InputProblem(
            f"none of the {len(boxes)} image ids in {boxes_path} has a scored prediction "
            f"(e.g. {listed_ids(boxes, 3)}); the join is by file name"
        )
    per_image, outside = [], []
    for k in scored_ids:
        p, gt = preds.scored[k], boxes[k]
        iou = metrics.best_box_iou(p["boxes"], gt)
        hit = bool(p["boxes"]) and metrics.pointing_hit(
            (p["boxes"][0][0] + p["boxes"][0][2] / 2, p["boxes"][0][1] + p["boxes"][0][3] / 2), gt
        )
        per_image.append(
            {
                "image_id": k,
                "best_iou": iou,
                "pointing_hit": bool(hit),
                "n_crops": len(p["boxes"]),
                "n_reference_boxes": len(gt),
            }
        )
        w, h = p.get("width"), p.get("height")
        if is_number(w) and is_number(h) and any(x + bw > w + 1 or y + bh > h + 1 for x, y, bw, bh in gt):
            outside.append(k)
    ious = np.array([r["best_iou"] for r in per_image])
    hits = [r["pointing_hit"] for r in per_image]
    warnings = []
    if outside:
        warnings.append(
            f"{len(outside)} image(s) have reference boxes outside the predicted image "
            f"({listed_ids(outside, 3)}): are the boxes in another pixel space (e.g. 1024 px for a 512 px PNG)?"
        )
    return metrics.to_jsonable(
        {
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
        }
    )
