"""What the pipeline measures from the lung and heart masks: lung fields, the cardiothoracic ratio, anatomical
zones named from each lung's own extent, and the two-lungs check that tells a frontal film from everything else.

All geometry is in fractions of the analysed image's width and height (the network saw the image squashed to a
square; a squash scales x and y separately, so horizontal ratios such as the cardiothoracic ratio are unchanged).
Radiological convention: the image is viewed facing the patient, so the patient's RIGHT lung is on the IMAGE LEFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrtriage.anatomy.components import grow
from cxrtriage.anatomy.segmenter import HEART, LEFT_LUNG, RIGHT_LUNG, Segmentation

#: a lung field smaller than this share of the image is not counted as a lung
MIN_LUNG_FRACTION = 0.02
#: below these, a pair of lung masks is not a typical frontal film (frontal films measured: confidence >= 0.74 with
#: 98% above 0.78, heart >= 0.012 of the image; scikit-image photographs: confidence <= 0.80)
MIN_CONFIDENCE = 0.80
MIN_HEART_FRACTION = 0.02
MIN_AREA_RATIO = 0.15
#: the order of Anatomy.view_features()
VIEW_FEATURES = (
    "confidence",
    "heart_area_fraction",
    "mirror_iou",
    "lung_area_ratio",
    "lung_area_fraction",
    "symmetry",
    "centre_brightness",
)
#: evidence may lie this far (share of the image size) outside the segmented lung fields
EVIDENCE_MARGIN = 0.03
#: the cardiothoracic ratio is only reported when both lungs and the heart were found
CTR_CAVEAT = (
    "cardiothoracic ratio from the segmentation: heart width / thoracic width; an AP or supine film "
    "magnifies the heart, so > 0.5 there is not by itself cardiomegaly"
)


@dataclass(frozen=True)
class Field:
    """One segmented structure: bounding box (x0, y0, x1, y1) and centroid as fractions of the image, area share."""

    box: tuple[float, float, float, float]
    centroid: tuple[float, float]
    area_fraction: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _field(mask: np.ndarray) -> Field | None:
    """From the mask's row and column sums (cheaper than listing its pixels)."""
    h, w = mask.shape
    per_row, per_col = mask.sum(axis=1), mask.sum(axis=0)
    n = int(per_row.sum())
    if n == 0:
        return None
    rows, cols = np.flatnonzero(per_row), np.flatnonzero(per_col)
    return Field(
        box=(cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h),
        centroid=((per_col @ np.arange(w) / n + 0.5) / w, (per_row @ np.arange(h) / n + 0.5) / h),
        area_fraction=float(n / mask.size),
    )


@dataclass(frozen=True)
class Anatomy:
    """The measured anatomy of one image (from :class:`~cxrtriage.anatomy.segmenter.Segmentation`)."""

    right_lung: Field | None
    left_lung: Field | None
    heart: Field | None
    lungs_grid: np.ndarray  # both lungs at the network's resolution (boolean, S x S)
    confidence: float = 1.0  # mean |2p - 1| over where the network sees any lung (p > 0.1): low on non-chest images
    mirror_iou: float = 0.0  # overlap of the right lung mirrored onto the left one (frontal films are near-symmetric)
    symmetry: float = 0.0  # see Segmentation.symmetry
    centre_brightness: float = 0.0  # see Segmentation.centre_brightness

    @property
    def lungs(self) -> list[tuple[str, Field]]:
        return [
            (side, f)
            for side, f in (("right", self.right_lung), ("left", self.left_lung))
            if f is not None and f.area_fraction >= MIN_LUNG_FRACTION
        ]

    @property
    def cardiothoracic_ratio(self) -> float | None:
        """Widest extent of the heart over the thorax's (outer edge of the right lung to outer edge of the left)."""
        if self.heart is None or len(self.lungs) < 2:
            return None
        thorax = self.left_lung.box[2] - self.right_lung.box[0]  # type: ignore[union-attr]
        return float(self.heart.width / thorax) if thorax > 0 else None

    def evidence_region(self, margin: float = EVIDENCE_MARGIN) -> np.ndarray:
        """The lung fields grown by ``margin`` of the image size: where evidence boxes may form ("inside or touching
        the lung fields"). A pleural effusion or a consolidation at the lung edge is still evidence; a marker in
        the corner or burned-in text is not."""
        s = self.lungs_grid.shape[0]
        return grow(self.lungs_grid, max(1, round(margin * s)))

    def lung_share(self, box: tuple[float, float, float, float]) -> float:
        """Share of a box (fractions x0, y0, x1, y1) that lies on the lung fields."""
        s = self.lungs_grid.shape[0]
        x0, y0 = int(np.floor(box[0] * s)), int(np.floor(box[1] * s))
        x1, y1 = max(x0 + 1, int(np.ceil(box[2] * s))), max(y0 + 1, int(np.ceil(box[3] * s)))
        part = self.lungs_grid[max(0, y0) : min(s, y1), max(0, x0) : min(s, x1)]
        return float(part.mean()) if part.size else 0.0

    def zone(self, fx: float, fy: float) -> str | None:
        """The lung zone of a point: the lung it lies in (or the nearer one), and upper / middle / lower thirds of
        THAT lung's own height. None when no lung was found (callers fall back to image geometry)."""
        lungs = self.lungs
        if not lungs:
            return None
        s = self.lungs_grid.shape[0]
        i, j = min(s - 1, max(0, int(fy * s))), min(s - 1, max(0, int(fx * s)))
        side, lung = min(lungs, key=lambda item: _distance(item[1], fx, fy))
        if not self.lungs_grid[i, j] and len(lungs) == 2 and self.heart is not None:
            hx0, _, hx1, _ = self.heart.box
            if hx0 <= fx <= hx1 and min(_distance(f, fx, fy) for _, f in lungs) > 0.02:
                return "central (mediastinal) zone"
        rel = (fy - lung.box[1]) / max(lung.height, 1e-6)
        level = "upper" if rel < 1 / 3 else "middle" if rel < 2 / 3 else "lower"
        return f"{side} {level} zone"

    def measurements(self) -> dict:
        """The JSON block a Prediction reports under ``anatomy``."""
        ctr = self.cardiothoracic_ratio
        out: dict = {
            "lungs_found": [side for side, _ in self.lungs],
            "right_lung_area_fraction": round(self.right_lung.area_fraction, 4) if self.right_lung else 0.0,
            "left_lung_area_fraction": round(self.left_lung.area_fraction, 4) if self.left_lung else 0.0,
            "cardiothoracic_ratio": round(ctr, 3) if ctr is not None else None,
        }
        if ctr is not None:
            out["cardiothoracic_ratio_note"] = CTR_CAVEAT
        return out

    @property
    def typical_pair(self) -> bool:
        """Two lungs of plausible size with a heart, segmented confidently: what a frontal chest film shows, and what
        photographs, screenshots and other body parts (measured on scikit-image's sample images) do not."""
        lungs = dict(self.lungs)
        if len(lungs) < 2 or self.heart is None:
            return False
        areas = sorted(f.area_fraction for f in lungs.values())
        return (
            self.confidence >= MIN_CONFIDENCE
            and self.heart.area_fraction >= MIN_HEART_FRACTION
            and areas[0] >= MIN_AREA_RATIO * areas[1]
            and not self.frontal_problems()
        )

    def view_features(self) -> list[float]:
        """The anatomy half of the view probe's input (:data:`VIEW_FEATURES` order)."""
        lungs = dict(self.lungs)
        areas = [f.area_fraction for f in lungs.values()]
        ratio = min(areas) / max(areas) if len(areas) == 2 and max(areas) > 0 else 0.0
        return [
            self.confidence,
            self.heart.area_fraction if self.heart else 0.0,
            self.mirror_iou,
            ratio,
            float(self.lungs_grid.mean()),
            self.symmetry,
            self.centre_brightness,
        ]

    def frontal_problems(self) -> list[str]:
        """Why the masks do not look like the two lungs of a frontal film (empty list: they do)."""
        lungs = dict(self.lungs)
        problems = []
        if not lungs:
            return ["no lung field was found"]
        for side in ("right", "left"):
            if side not in lungs:
                problems.append(f"no {side} lung field was found")
        if len(lungs) == 2:
            r, left = lungs["right"], lungs["left"]
            if r.centroid[0] >= left.centroid[0]:
                problems.append("the lung fields are not on the expected sides (patient's right on the image left)")
            overlap = min(r.box[2], left.box[2]) - max(r.box[0], left.box[0])
            if overlap > 0.5 * min(r.width, left.width):
                problems.append("the two lung fields overlap side to side, as on a lateral view")
        return problems


def _distance(f: Field, fx: float, fy: float) -> float:
    dx = max(f.box[0] - fx, 0.0, fx - f.box[2])
    dy = max(f.box[1] - fy, 0.0, fy - f.box[3])
    return float(np.hypot(dx, dy))


def _mirror_iou(right: np.ndarray, left: np.ndarray) -> float:
    if not right.any() or not left.any():
        return 0.0
    s = right.shape[1]
    mid = (np.flatnonzero(right.any(axis=0))[-1] + np.flatnonzero(left.any(axis=0))[0]) / 2.0
    flat = np.flatnonzero(right)
    rows, cols = flat // s, flat % s
    mirrored = np.round(2 * mid - cols).astype(np.intp)
    ok = (mirrored >= 0) & (mirrored < s)
    m = np.zeros_like(right)
    m[rows[ok], mirrored[ok]] = True
    return float((m & left).sum() / max(int((m | left).sum()), 1))


def measure(seg: Segmentation) -> Anatomy:
    """Anatomy from the network's masks (the network's resolution is enough for boxes, zones and ratios)."""
    right, left = seg.low_res(RIGHT_LUNG), seg.low_res(LEFT_LUNG)
    lung_p = np.maximum(seg.probs[seg.structures.index(RIGHT_LUNG)], seg.probs[seg.structures.index(LEFT_LUNG)])
    seen = lung_p > 0.1
    confidence = float(np.abs(lung_p[seen] - 0.5).mean() * 2) if seen.any() else 0.0
    return Anatomy(
        right_lung=_field(right),
        left_lung=_field(left),
        heart=_field(seg.low_res(HEART)),
        lungs_grid=right | left,
        confidence=confidence,
        mirror_iou=_mirror_iou(right, left),
        symmetry=seg.symmetry,
        centre_brightness=seg.centre_brightness,
    )
