"""The exposed field: the rectangle of an image that holds the film, found before anything else looks at it.

A radiograph reaches us in many frames: the detector's whole area, a film pasted into the corner of a larger black
canvas by whoever exported it, a film with wide black (or white) borders from electronic shutters, collimation or a
scanner. Everything downstream (the gate's statistics and layout, the lung segmentation, the classifier, the
evidence boxes) was fitted on films that fill the image, so the pipeline analyses only the field and maps every
box back to the original pixels (:meth:`ExposedField.to_full`).

How: on a block-averaged copy (at most :data:`WORK_SIDE` px; averaging also tames noise), a pixel is *blank* when
it is within :data:`DARK_TOL` of the image's darkest level and flat (a uniform canvas, border or shutter; dark lungs
and the air beside the body have texture). Bright regions never count as blank: a saturated white abdomen is flat
and bright, and cutting it off would cut the film. A row or column is *content* when more than
:data:`MIN_CONTENT_SHARE` of it is not blank; the field is the run of content rows (then columns, then both
again, inside each other) that holds the most content, so a line of burned-in text or a marker on the canvas,
separated from the film by blank rows, is left out.

The field is used only when it is clearly smaller than the image (area below :data:`MAX_AREA_SHARE`) and big
enough to be a film (at least :data:`MIN_SIDE` px a side and :data:`MIN_AREA_SHARE` of the image): an ordinary
film that fills its image is analysed whole, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cxrtriage.imaging.analysis_size import analysis_image
from cxrtriage.imaging.preprocess import clip_unit
from cxrtriage.schema import Crop

#: the block-averaged copy the search runs on is at most this many pixels on its longer side
WORK_SIDE = 256
#: a pixel within this of the image's darkest level, and flat (its 3x3 neighbourhood of the averaged copy spans at
#: most FLAT_TOL), is blank canvas or border: dark lungs and air beside the body have texture, a canvas has none
DARK_TOL = 0.08
FLAT_TOL = 0.04
#: a row or column with more than this share of non-blank pixels belongs to the film
MIN_CONTENT_SHARE = 0.05
#: the field is used only when its area is below this share of the image (else: the whole image, unchanged)
MAX_AREA_SHARE = 0.75
#: ... and only when it is at least this big (else the whole image goes to the gate, which judges it)
MIN_AREA_SHARE = 0.05
MIN_SIDE = 64


@dataclass(frozen=True)
class ExposedField:
    """The field ``[y0:y1, x0:x1]`` of an image of ``shape`` (H, W), in that image's pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    shape: tuple[int, int]

    @property
    def is_whole(self) -> bool:
        """True when the field is the whole image (nothing is cropped)."""
        return (self.x0, self.y0, self.x1, self.y1) == (0, 0, self.shape[1], self.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the field."""
        return self.x1 - self.x0, self.y1 - self.y0

    def crop(self, pixels: np.ndarray) -> np.ndarray:
        """The field of ``pixels`` (an image of :attr:`shape`); the same array when the field is the whole image."""
        if pixels.shape[:2] != self.shape:
            raise ValueError(f"field of a {self.shape} image applied to one of {pixels.shape[:2]}")
        return pixels if self.is_whole else pixels[self.y0 : self.y1, self.x0 : self.x1]

    def to_full(self, x: int, y: int) -> tuple[int, int]:
        """A point of the field in the pixels of the whole image."""
        return x + self.x0, y + self.y0

    def xywh(self, original: tuple[int, int] | None = None) -> list[int]:
        """The field as [x, y, width, height] in the image's pixels, or in those of ``original`` (width, height):
        the same image at its original resolution (what a result reports)."""
        h, w = self.shape
        sx, sy = (original[0] / w, original[1] / h) if original else (1.0, 1.0)
        x, y = int(self.x0 * sx), int(self.y0 * sy)
        return [x, y, max(1, round(self.x1 * sx) - x), max(1, round(self.y1 * sy) - y)]


def whole(shape: tuple[int, int]) -> ExposedField:
    """The field of an image that is all film."""
    return ExposedField(0, 0, shape[1], shape[0], (int(shape[0]), int(shape[1])))


def _block_mean(pixels: np.ndarray, step: int) -> np.ndarray:
    """Mean of each ``step`` x ``step`` block (the part that does not fill a block is dropped). PIL's box ``reduce``
    in float mode: the same means as a numpy reshape-and-mean to 1e-7, in a tenth of the time (0.5 vs 5 ms on a
    1024 px image), which the exposed-field stage spends on every request."""
    h, w = pixels.shape
    hh, ww = (h // step) * step, (w // step) * step
    x = np.ascontiguousarray(pixels, dtype=np.float32)
    if step == 1:
        return x
    # the box leaves the ragged edge out without copying the rest first (same means as reducing a cropped copy)
    return np.asarray(Image.fromarray(x, mode="F").reduce(step, box=(0, 0, ww, hh)), dtype=np.float32)


def _local_range(x: np.ndarray) -> np.ndarray:
    """Max minus min over each pixel's 3x3 neighbourhood (edges repeated). Separable (rows, then columns): the
    same extremes as taking all nine shifted copies at once, without stacking them."""
    p = np.pad(x, 1, mode="edge")
    hi = np.maximum(np.maximum(p[:-2], p[1:-1]), p[2:])
    lo = np.minimum(np.minimum(p[:-2], p[1:-1]), p[2:])
    hi = np.maximum(np.maximum(hi[:, :-2], hi[:, 1:-1]), hi[:, 2:])
    lo = np.minimum(np.minimum(lo[:, :-2], lo[:, 1:-1]), lo[:, 2:])
    return hi - lo


def _best_run(content: np.ndarray, weight: np.ndarray) -> tuple[int, int]:
    """[start, end) of the run of True in ``content`` with the largest total ``weight`` (whole range if none)."""
    best, best_mass, start = (0, len(content)), -1.0, None
    for i, flag in enumerate([*content.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            mass = float(weight[start:i].sum())
            if mass > best_mass:
                best, best_mass = (start, i), mass
            start = None
    return best


def _content_share(blank: np.ndarray, axis: int) -> np.ndarray:
    return 1.0 - blank.mean(axis=axis)


def _edge(pixels: np.ndarray, level: float, lines: tuple[int, int], span: slice, axis: int) -> int | None:
    """The first index in ``range(*lines)`` (backwards when stop < start) of a row (``axis`` 1) or column (``axis``
    0) whose share of pixels above ``level`` within ``span`` (of the other axis) is above MIN_CONTENT_SHARE; None
    when there is none. Only the rows or columns searched are thresholded: a few strips, not the whole image."""
    start, stop = lines
    direction = 1 if stop >= start else -1
    first, last = (start, stop) if direction == 1 else (stop + 1, start + 1)
    if last <= first:
        return None
    strip = pixels[first:last, span] if axis == 1 else pixels[span, first:last]
    share = (strip > level).mean(axis=axis)
    for i in range(start, stop, direction):
        if share[i - first] > MIN_CONTENT_SHARE:
            return i
    return None


def _refine(pixels: np.ndarray, level: float, box: tuple[int, int, int, int], reach: int) -> tuple[int, int, int, int]:
    """Each edge of the block-level ``box`` moved to the first full-resolution row or column (within ``reach`` of
    it) that is not dark (above ``level``): the blank test on the averaged copy looks at neighbours, so its edges
    are a block off."""
    h, w = pixels.shape
    x0, y0, x1, y1 = box
    cols = slice(x0, x1)
    top = _edge(pixels, level, (max(0, y0 - reach), min(h, y0 + reach)), cols, 1)
    bottom = _edge(pixels, level, (min(h, y1 + reach) - 1, max(0, y1 - reach) - 1), cols, 1)
    y0, y1 = top if top is not None else y0, bottom + 1 if bottom is not None else y1
    rows = slice(y0, y1)
    left = _edge(pixels, level, (max(0, x0 - reach), min(w, x0 + reach)), rows, 0)
    right = _edge(pixels, level, (min(w, x1 + reach) - 1, max(0, x1 - reach) - 1), rows, 0)
    return left if left is not None else x0, y0, right + 1 if right is not None else x1, y1


def find_field(pixels: np.ndarray) -> ExposedField:
    """The exposed field of a grey ``(H, W)`` float image in ``[0, 1]`` (see the module docstring); the whole image
    when no clearly smaller film is found."""
    h, w = pixels.shape
    full = whole((h, w))
    step = max(1, int(np.ceil(max(h, w) / WORK_SIDE)))
    small = _block_mean(clip_unit(pixels), step)
    if small.size == 0:
        return full
    lo, hi = float(small.min()), float(small.max())
    if hi - lo < 2 * DARK_TOL:  # flat: nothing to tell film from canvas (the gate refuses a blank image)
        return full
    blank = (small <= lo + DARK_TOL) & (_local_range(small) <= FLAT_TOL)
    r0, r1, c0, c1 = 0, small.shape[0], 0, small.shape[1]
    for _ in range(2):  # rows, then columns inside them; twice, so text beside the film does not hold rows open
        part = blank[r0:r1, c0:c1]
        share = _content_share(part, 1)
        a, b = _best_run(share > MIN_CONTENT_SHARE, share)
        r0, r1 = r0 + a, r0 + b
        part = blank[r0:r1, c0:c1]
        share = _content_share(part, 0)
        a, b = _best_run(share > MIN_CONTENT_SHARE, share)
        c0, c1 = c0 + a, c0 + b
    y0, y1 = r0 * step, h if r1 == small.shape[0] else min(h, r1 * step)
    x0, x1 = c0 * step, w if c1 == small.shape[1] else min(w, c1 * step)
    if step > 1 or (x0, y0, x1, y1) != (0, 0, w, h):
        x0, y0, x1, y1 = _refine(pixels, lo + DARK_TOL, (x0, y0, x1, y1), 2 * step)
    area = (x1 - x0) * (y1 - y0)
    if area >= MAX_AREA_SHARE * h * w or area < MIN_AREA_SHARE * h * w or min(x1 - x0, y1 - y0) < MIN_SIDE:
        return full
    return ExposedField(x0, y0, x1, y1, (h, w))


def analysed_field(pixels: np.ndarray) -> tuple[ExposedField, np.ndarray, int]:
    """(the exposed field of ``pixels``, that field box-averaged when it is 1024 px or more, the factor k):
    :func:`~cxrtriage.imaging.analysis_size.analysis_image` of the field, what every later stage of the pipeline
    analyses. The one definition the pipeline and training, calibration and the probes share."""
    field = find_field(pixels)
    analysed, k = analysis_image(field.crop(pixels))
    return field, analysed, k


def analysed_region(pixels: np.ndarray) -> np.ndarray:
    """The pixels of :func:`analysed_field` alone (training, calibration and the probes need no box mapping)."""
    return analysed_field(pixels)[1]


def to_original_pixels(
    crops: list[Crop], analysed: tuple[int, int], original: tuple[int, int], field: ExposedField | None = None
) -> list[Crop]:
    """Boxes found on the analysed ``field`` of an image of size ``analysed`` (width, height; a reduced resolution,
    ``ImageMeta.reduction``) in the pixels of the ``original`` image: shifted by the field's offset, then scaled."""
    if field is not None and not field.is_whole:
        crops = [c.model_copy(update={"x": c.x + field.x0, "y": c.y + field.y0}) for c in crops]
    (aw, ah), (ow, oh) = analysed, original
    if (aw, ah) == (ow, oh) or aw <= 0 or ah <= 0:
        return crops
    sx, sy = ow / aw, oh / ah
    out = []
    for c in crops:
        x, y = min(ow - 1, int(c.x * sx)), min(oh - 1, int(c.y * sy))
        w, h = max(1, min(ow - x, round(c.w * sx))), max(1, min(oh - y, round(c.h * sy)))
        out.append(c.model_copy(update={"x": x, "y": y, "w": w, "h": h}))
    return out
