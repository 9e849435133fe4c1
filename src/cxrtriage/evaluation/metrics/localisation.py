"""Localisation metrics of the evidence boxes against expert boxes: IoU, best IoU and the pointing game.

Boxes are ``(x, y, w, h)``; every input is validated (4 finite numbers, no negative size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["best_box_iou", "box_iou", "pointing_hit"]


def _as_box(box: Sequence[float], name: str) -> tuple[float, float, float, float]:
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 4 numbers (x, y, w, h), got {box!r}") from exc
    if len(vals) != 4:
        raise ValueError(f"{name} must be 4 numbers (x, y, w, h), got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} contains NaN or infinite values: {box!r}")
    if vals[2] < 0 or vals[3] < 0:
        raise ValueError(f"{name} has negative width or height: {box!r}")
    return vals[0], vals[1], vals[2], vals[3]


def _as_boxes(boxes: Sequence[Sequence[float]], name: str) -> list[tuple[float, float, float, float]]:
    if isinstance(boxes, np.ndarray):
        if boxes.size == 0:
            return []
        if boxes.ndim != 2:
            raise ValueError(f"{name} must be a list of (x, y, w, h) boxes, got array shape {boxes.shape}")
    return [_as_box(b, f"{name}[{i}]") for i, b in enumerate(boxes)]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0.0 if both have zero area."""
    ax, ay, aw, ah = _as_box(a, "a")
    bx, by, bw, bh = _as_box(b, "b")
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def best_box_iou(pred_boxes: Sequence[Sequence[float]], gt_boxes: Sequence[Sequence[float]]) -> float:
    """Max IoU over all (predicted, expert) pairs: did any evidence box find any lesion?

    0.0 when there are no predicted boxes (a miss); ValueError when there are no expert
    boxes, since the image cannot be scored for localisation then.
    """
    preds = _as_boxes(pred_boxes, "pred_boxes")
    gts = _as_boxes(gt_boxes, "gt_boxes")
    if not gts:
        raise ValueError("gt_boxes is empty: localisation is only scored on images with expert boxes")
    if not preds:
        return 0.0
    return max(box_iou(p, g) for p in preds for g in gts)


def pointing_hit(point_xy: Sequence[float], gt_boxes: Sequence[Sequence[float]]) -> bool:
    """Pointing game: is the point (e.g. the saliency peak) inside any expert box (edges count)?"""
    try:
        px, py = (float(v) for v in point_xy)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"point_xy must be 2 numbers (x, y), got {point_xy!r}") from exc
    if not (math.isfinite(px) and math.isfinite(py)):
        raise ValueError(f"point_xy contains NaN or infinite values: {point_xy!r}")
    gts = _as_boxes(gt_boxes, "gt_boxes")
    if not gts:
        raise ValueError("gt_boxes is empty: the pointing game is only scored on images with expert boxes")
    return any(x <= px <= x + w and y <= py <= y + h for x, y, w, h in gts)
