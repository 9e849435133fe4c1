"""Evidence regions from the class activation map (CAM), and crop thumbnails of them.

The network's urgency logit is ``b + mean_ij(w . F[:, i, j])``, so the CAM
``CAM[i, j] = w . F[:, i, j]`` is an exact additive decomposition of the logit over
feature-map cells: positive cells push the study towards *Urgent*. Evidence boxes are
therefore drawn only around positive CAM, and a box's ``strength`` is the share of the
total positive CAM mass it contains — a crop is emitted only where the map supports one.

Runtime code: numpy + Pillow only (no torch, no scipy), so the inference path stays small.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from cxrtriage import config
from cxrtriage.anatomy.components import label_components, nearest_resize
from cxrtriage.backends.cam import finite_array
from cxrtriage.files import private_dir, replace_atomically
from cxrtriage.schema import Crop

__all__ = [
    "EvidenceBox",
    "anatomical_zone",
    "cam_peak",
    "find_evidence_boxes",
    "peak_prominence",
    "save_crop_thumbnails",
    "scaled_boxes",
]

#: The CAM is upsampled by this factor before thresholding, for smoother boxes.
UPSAMPLE = 4
#: Half-width (as a fraction of image width) of the central band called mediastinal.
CENTRAL_BAND = 0.1
#: a crop thumbnail's long side (px), and the context around its box (a share of the box's size on each side)
THUMB_SIZE = 224
THUMB_MARGIN = 0.1

# When a result shows a crop (the pipeline's evidence stage). The rule's numbers live here, in one place.
#: every box (Urgent results too) holds at least this share of the positive map mass: :func:`find_evidence_boxes`
MIN_STRENGTH = 0.05
#: a Non-Urgent result shows at most one crop, and only for a region holding at least this share of the positive
#: map mass (a concentrated region, not a patch of a diffuse map)
NON_URGENT_MIN_STRENGTH = 0.5
#: ... and only when the map's peak stands out of the lung fields: :func:`peak_prominence` at least this. Fitted by
#: ``scripts/evidence_rule.py`` on validation films only (NIH and Shenzhen validation parts, radiograph label
#: non-urgent): the 95th percentile of their prominence, so about 1 normal film in 20 keeps a crop. The figure and
#: its fit are in ``prototype/eval/evidence_rule.json`` (a test keeps the two equal). Urgent results keep their
#: crops whatever the prominence: they are how the reader checks the flag.
NON_URGENT_MIN_PROMINENCE = 2.88


@dataclass(frozen=True)
class EvidenceBox:
    """One region of positive evidence, in ORIGINAL image pixels."""

    x: int
    y: int
    w: int
    h: int
    strength: float | None  # share of the total positive CAM mass inside this region (0-1); None if not from the CAM
    peak_xy: tuple[int, int]  # location of the region's maximum (the box centre when not from the CAM), original pixels
    region: str  # anatomical zone, see anatomical_zone()
    source: Literal["activation_map", "medgemma"] = (
        "activation_map"  # what proposed the box: "activation_map" (classifier) or "medgemma"
    )


# ----------------------------------------------------------------------------- validation


def _check_image_size(image_size: Any) -> tuple[int, int]:
    """Validate ``(width, height)`` of the original image (whatever a caller passed)."""
    try:
        width, height = image_size
    except (TypeError, ValueError) as exc:
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from exc
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"image_size {name} must be a positive integer, got {v!r}")
    return int(width), int(height)


def _upsample_bilinear(cam: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling with pixel-centre alignment and clamped edges (numpy only)."""
    h, w = cam.shape

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n * factor) + 0.5) / factor - 0.5
        src = np.clip(src, 0.0, n - 1)
        lo = np.floor(src).astype(np.intp)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    top = cam[r0][:, c0] * (1 - fc) + cam[r0][:, c1] * fc
    bottom = cam[r1][:, c0] * (1 - fc) + cam[r1][:, c1] * fc
    return top * (1 - fr)[:, None] + bottom * fr[:, None]


def _cell_labels(labels: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Assign each CAM cell to the component covering most of its working-grid pixels (0 = none; a tie goes to the
    lower label).

    Strength is measured on the original cells, where the CAM is an exact share of the
    logit; measuring it on the interpolated grid would leak mass into sub-threshold blur.
    """
    h, w = shape
    blocks = labels.reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, -1)
    n = int(labels.max())
    if n <= 0:
        return np.zeros((h, w), dtype=np.int32)
    counts = np.stack([(blocks == k).sum(axis=2) for k in range(1, n + 1)])  # (n, h, w) working pixels per label
    return np.where(counts.max(axis=0) > 0, counts.argmax(axis=0) + 1, 0).astype(np.int32)


def find_evidence_boxes(
    cam: np.ndarray,
    image_size: tuple[int, int],
    *,
    max_boxes: int = 3,
    rel_threshold: float = 0.5,
    min_strength: float = MIN_STRENGTH,
    allowed: np.ndarray | None = None,
    zone_of: Callable[[float, float], str | None] | None = None,
) -> list[EvidenceBox]:
    """Boxes (original pixels) around the strongest regions of positive CAM.

    ``image_size`` is (width, height) of the original image; the model saw it squashed
    to a square, so map cell (i, j) covers x in [j*W/w, (j+1)*W/w), y in [i*H/h, (i+1)*H/h).
    The CAM is upsampled bilinearly by ``UPSAMPLE``, thresholded at
    ``rel_threshold * max`` (positive cells only), split into 8-connected components,
    ranked by positive mass. Mass is summed over the original cells each component
    covers (so a lone hot cell has strength 1.0 and strengths sum to <= 1); regions
    holding less than ``min_strength`` of the total positive mass are dropped, and
    regions over non-positive cells only never form a box. Returns [] when nothing in
    the map is positive.

    ``allowed`` (boolean, any resolution, the image squashed like the CAM): where boxes may form, e.g. the lung
    fields from the segmentation, so that burned-in text, markers and the outside of the thorax never get one;
    the strength is then the share of the positive mass inside the allowed region. ``zone_of(fx, fy)`` names the
    zone of a box centre given as fractions of the image (e.g. from each lung's own extent); when it returns
    None, or is absent, :func:`anatomical_zone` names it from the image geometry.
    """
    cam_arr = finite_array(cam, "cam", 2)
    width, height = _check_image_size(image_size)
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, (int, np.integer)) or max_boxes < 0:
        raise ValueError(f"max_boxes must be a non-negative integer, got {max_boxes!r}")
    if not (math.isfinite(rel_threshold) and 0.0 < rel_threshold <= 1.0):
        raise ValueError(f"rel_threshold must be in (0, 1], got {rel_threshold!r}")
    if not (math.isfinite(min_strength) and 0.0 <= min_strength <= 1.0):
        raise ValueError(f"min_strength must be in [0, 1], got {min_strength!r}")
    if max_boxes == 0 or cam_arr.max() <= 0:
        return []

    up = _upsample_bilinear(cam_arr, UPSAMPLE)
    peak = float(up.max())
    if peak <= 0:
        return []
    gh, gw = up.shape
    cell_pos = np.clip(cam_arr, 0.0, None)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        up = np.where(nearest_resize(allowed, gh, gw), up, 0.0)
        peak = float(up.max())
        if peak <= 0:  # no positive evidence inside the allowed region (or no allowed region at all)
            return []
        cell_pos = cell_pos * nearest_resize(allowed, *cam_arr.shape)
    mask = (up >= rel_threshold * peak) & (up > 0)
    labels, n = label_components(mask)
    if n == 0:
        return []

    sx, sy = width / gw, height / gh  # original pixels per working-grid pixel
    total = float(cell_pos.sum())
    if total <= 0:  # no positive cell inside the allowed region: nothing to point at
        return []
    cell_labels = _cell_labels(labels, (cam_arr.shape[0], cam_arr.shape[1]), UPSAMPLE)
    masses = np.bincount(cell_labels.ravel(), weights=cell_pos.ravel(), minlength=n + 1)
    order = sorted(range(1, n + 1), key=lambda k: (-masses[k], k))

    boxes: list[EvidenceBox] = []
    for k in order:
        strength = float(masses[k]) / total
        if strength < min_strength or masses[k] <= 0:
            break  # ranked by mass, so every later region is weaker still
        rows, cols = np.nonzero(labels == k)
        x0 = min(int(math.floor(cols.min() * sx)), width - 1)
        y0 = min(int(math.floor(rows.min() * sy)), height - 1)
        x1 = min(int(math.ceil((cols.max() + 1) * sx)), width)
        y1 = min(int(math.ceil((rows.max() + 1) * sy)), height)
        bw, bh = max(1, x1 - x0), max(1, y1 - y0)
        best = int(np.argmax(up[rows, cols]))
        px = min(int((cols[best] + 0.5) * sx), width - 1)
        py = min(int((rows[best] + 0.5) * sy), height - 1)
        region = (zone_of((x0 + bw / 2) / width, (y0 + bh / 2) / height) if zone_of else None) or anatomical_zone(
            x0 + bw / 2, y0 + bh / 2, width, height
        )
        boxes.append(
            EvidenceBox(
                x=x0,
                y=y0,
                w=bw,
                h=bh,
                strength=min(1.0, strength),
                peak_xy=(px, py),
                region=region,
            )
        )
        if len(boxes) >= max_boxes:
            break
    return boxes


def peak_prominence(cam: np.ndarray, allowed: np.ndarray | None = None) -> float:
    """How far the map's peak stands out: ``(max - mean) / std`` of the CAM cells inside ``allowed`` (the evidence
    region, any resolution, squashed like the CAM; None or empty: every cell), in standard deviations.

    Why this statistic: the share of positive mass in the top region (``strength``) says a region is concentrated
    relative to the others, but on a smooth, diffuse map of a normal film the top region still holds half the mass.
    The prominence compares the peak with the whole lung field, so a map with one hot spot scores high and a
    gently varying one low. 0.0 for a constant map."""
    cam_arr = finite_array(cam, "cam", 2)
    cells = cam_arr.ravel()
    if allowed is not None:
        inside = nearest_resize(np.asarray(allowed, dtype=bool), *cam_arr.shape)
        if inside.any():
            cells = cam_arr[inside]
    std = float(cells.std())
    return float((cells.max() - cells.mean()) / std) if std > 0 else 0.0


def box_from_xywh(
    xywh: tuple[int, int, int, int], image_size: tuple[int, int], source: Literal["activation_map", "medgemma"]
) -> EvidenceBox:
    """An evidence box proposed by something other than the CAM (e.g. MedGemma), clipped to the image
    (``image_size`` is (width, height)); no CAM strength."""
    width, height = _check_image_size(image_size)
    x, y, w, h = (int(v) for v in xywh)
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    w, h = max(1, min(w, width - x)), max(1, min(h, height - y))
    cx, cy = x + w // 2, y + h // 2
    return EvidenceBox(
        x=x,
        y=y,
        w=w,
        h=h,
        strength=None,
        peak_xy=(cx, cy),
        region=anatomical_zone(cx, cy, width, height),
        source=source,
    )


def anatomical_zone(cx: float, cy: float, width: int, height: int) -> str:
    """Name the lung zone of a point on a frontal (PA/AP) chest radiograph.

    Radiological convention: the image is viewed as if facing the patient, so the
    patient's RIGHT is on the IMAGE LEFT. Side: ``cx/W < 0.5`` -> "right", otherwise
    "left", except the central band ``|cx/W - 0.5| < 0.1``, which is called
    "central (mediastinal)". Level: thirds of the height, ``cy/H < 1/3`` "upper",
    ``< 2/3`` "middle", else "lower". Returns e.g. "right lower zone". These are
    coarse image-geometry zones, not a segmentation of the lungs.
    """
    for name, v in (("cx", cx), ("cy", cy)):
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    fx = min(max(float(cx) / width, 0.0), 1.0)
    fy = min(max(float(cy) / height, 0.0), 1.0)
    if abs(fx - 0.5) < CENTRAL_BAND:
        side = "central (mediastinal)"
    elif fx < 0.5:
        side = "right"  # image left = patient's right
    else:
        side = "left"
    if fy < 1 / 3:
        level = "upper"
    elif fy < 2 / 3:
        level = "middle"
    else:
        level = "lower"
    return f"{side} {level} zone"


def cam_peak(cam: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int]:
    """Centre of the CAM's arg-max cell in original pixels (x, y), for the pointing game."""
    cam_arr = finite_array(cam, "cam", 2)
    width, height = _check_image_size(image_size)
    h, w = cam_arr.shape
    i, j = np.unravel_index(int(np.argmax(cam_arr)), cam_arr.shape)
    x = min(int((j + 0.5) * width / w), width - 1)
    y = min(int((i + 0.5) * height / h), height - 1)
    return x, y


def scaled_boxes(boxes: Sequence[EvidenceBox], origin: tuple[int, int], k: int) -> list[EvidenceBox]:
    """Boxes of an analysis image that is the field at ``origin`` (x, y) of a larger image, box-averaged by ``k``
    (imaging/analysis_size.py), in that larger image's pixels: where the thumbnails are cut."""
    x0, y0 = origin
    return [
        replace(
            b,
            x=x0 + b.x * k,
            y=y0 + b.y * k,
            w=b.w * k,
            h=b.h * k,
            peak_xy=(x0 + b.peak_xy[0] * k, y0 + b.peak_xy[1] * k),
        )
        for b in boxes
    ]


# ----------------------------------------------------------------------------- thumbnails


def _write_png_atomic(img: Image.Image, out_dir: Path) -> Path:
    """Save under a random name, via a temp file + os.replace, so readers never see a partial PNG.

    Random names keep thumbnails unguessable and free of patient identifiers.
    """
    for _ in range(8):
        final = out_dir / f"{secrets.token_hex(8)}.png"
        if not final.exists():
            break
    else:  # pragma: no cover - 64-bit collisions are practically impossible
        raise OSError(f"could not find a free thumbnail name in {out_dir}")
    # thumbnails are small; speed over bytes
    replace_atomically(final, lambda fh: img.save(fh, format="PNG", compress_level=1))
    return final


def save_crop_thumbnails(
    pixels: np.ndarray,
    boxes: Sequence[EvidenceBox],
    out_dir: Path | None = None,
    *,
    thumb_size: int = THUMB_SIZE,
    margin: float = THUMB_MARGIN,
) -> list[Crop]:
    """Write one PNG thumbnail per box and return the matching :class:`Crop` records.

    ``pixels`` is the float32 (H, W) display image in [0, 1]. Each crop gets a margin of
    ``margin`` x the box size (clipped to the image) for context, and is resized so its
    long side is ``thumb_size``. Nothing is drawn on it; the Crop carries the BOX
    coordinates (without margin). Files written by a call that fails are removed. ``out_dir``: the engine passes
    its settings' crops directory; None reads the configured one (``CXRTRIAGE_CROPS_DIR``) at this call.
    """
    img = finite_array(pixels, "pixels", 2, keep_float=True)
    if isinstance(thumb_size, bool) or not isinstance(thumb_size, (int, np.integer)) or thumb_size < 1:
        raise ValueError(f"thumb_size must be a positive integer, got {thumb_size!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a non-negative number, got {margin!r}")
    height, width = img.shape
    for box in boxes:
        if box.w < 1 or box.h < 1 or box.x < 0 or box.y < 0 or box.x + box.w > width or box.y + box.h > height:
            raise ValueError(
                f"box (x={box.x}, y={box.y}, w={box.w}, h={box.h}) does not fit the {width}x{height} image"
            )
    if not boxes:
        return []

    directory = Path(out_dir) if out_dir is not None else config.Settings().crops_dir
    private_dir(directory)  # a new crops folder is the service user's only (the crops are patients' radiographs)

    crops: list[Crop] = []
    written: list[Path] = []
    try:
        for box in boxes:
            mx, my = int(round(margin * box.w)), int(round(margin * box.h))
            x0, y0 = max(0, box.x - mx), max(0, box.y - my)
            x1, y1 = min(width, box.x + box.w + mx), min(height, box.y + box.h + my)
            # resized in float, then 8 bits for the thumbnail only (converting the patch first cost more)
            patch = Image.fromarray(np.ascontiguousarray(img[y0:y1, x0:x1], dtype=np.float32), mode="F")
            pw, ph = patch.size
            scale = thumb_size / max(pw, ph)
            size = (max(1, round(pw * scale)), max(1, round(ph * scale)))
            # reducing_gap: a whole-factor box reduction first, then Lanczos over at least 1.5x the output size:
            # 0.7 instead of 1.3 ms a crop of a 1024 px film, within 2 grey levels of Lanczos over the whole patch
            small = np.asarray(patch.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.5))
            thumb = Image.fromarray(np.rint(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8))
            path = _write_png_atomic(thumb, directory)
            written.append(path)
            crops.append(
                Crop(
                    x=box.x,
                    y=box.y,
                    w=box.w,
                    h=box.h,
                    thumb_path=str(path),
                    region=box.region,
                    strength=box.strength,
                    source=box.source,
                )
            )
    except BaseException:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass
        raise
    return crops
