"""Array steps shared by the PNG/JPEG and DICOM decoders: numeric arrays to float32 grey in ``[0, 1]``, the pixel
limit, and the factor a large image is decoded smaller by.

One conversion serves files and in-memory arrays alike, so the same pixels give the same values however they
arrive. Decisions (documented because they change pixel values):

* **8-bit** samples (and ``uint8`` arrays) are divided by 255, so the stored grey levels are kept.
* **Wider integers** (16-bit PNG, other >8-bit arrays) are min-max scaled to ``[0, 1]``: such files come from
  DICOM exports with unknown bit depth (10, 12 or 16 bits in a 16-bit container) and no window, which is the same
  situation as a DICOM without VOI, treated the same way.
* **Colour** is converted with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) in floating point.
* **Alpha** is composited over **black**: transparent padding then looks like the dark air/border around a
  radiograph instead of a bright frame that could be mistaken for bone or opacity.
"""

from __future__ import annotations

import math

import numpy as np

from cxrtriage.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError

__all__ = [
    "LUMA",
    "array_to_unit",
    "check_pixels",
    "colourfulness",
    "finish",
    "minmax",
    "reduction_factor",
    "reduction_warning",
    "rescale",
]

LUMA = np.array([0.299, 0.587, 0.114])


def check_pixels(count: int, limit: int, detail: str = "") -> None:
    if count > limit:
        raise ImageTooLargeError(
            f"the image has {count} pixels{detail}, more than the limit of {limit} pixels "
            "(set CXRTRIAGE_MAX_PIXELS to change it)"
        )


def reduction_factor(width: int, height: int, max_working: int) -> int:
    """The whole factor an image of this size is shrunk by on decode so it fits ``max_working`` pixels."""
    work = int(max_working)
    if width * height <= work:
        return 1
    return int(math.ceil(math.sqrt(width * height / work)))


def reduction_warning(width: int, height: int, factor: float) -> str:
    return (
        f"large image ({width} x {height}): analysed at 1/{factor:g} resolution to bound memory "
        f"(CXRTRIAGE_MAX_WORKING_PIXELS); boxes are in original pixels"
    )


def array_to_unit(arr: np.ndarray) -> np.ndarray:
    """Grey/colour(/alpha) array of any numeric dtype -> float32 (H, W) in [0, 1]."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    valid = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))
    if not valid or arr.size == 0:
        raise InvalidImageError("an image array must have shape (H, W) or (H, W, 1|2|3|4) and not be empty")
    if arr.dtype.kind not in "buif":
        raise UnsupportedFormatError(f"image arrays of dtype {arr.dtype} are not supported")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidImageError("the image contains NaN or infinite values")
    if arr.ndim == 2 and arr.dtype == np.uint8:  # the common case (8-bit grey PNG/JPEG): 3x faster, same values
        return np.divide(arr, 255.0, dtype=np.float32)
    colour, alpha = _split_alpha(arr)
    grey = colour.astype(np.float64) if colour.ndim == 2 else _luma(colour)
    grey = _scale_by_dtype(grey, arr.dtype)
    if alpha is not None:
        grey *= _alpha_to_unit(alpha)  # composite over black
    return finish(grey)


def _luma(colour: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of (H, W, 3) one channel at a time: no (H, W, 3) float copy (memory of large images)."""
    weights = LUMA.astype(np.float32) if colour.dtype.itemsize <= 2 else LUMA  # 8/16-bit: float32 is exact enough
    grey = colour[..., 0] * weights[0]
    grey += colour[..., 1] * weights[1]
    grey += colour[..., 2] * weights[2]
    return grey


def colourfulness(arr: np.ndarray) -> float | None:
    """Mean spread between colour channels relative to the value range: ~0 for grey images saved as RGB,
    clearly above 0 for photographs and screenshots (used by the not-a-chest-X-ray gate)."""
    if arr.ndim != 3 or arr.shape[2] < 3:
        return None
    rgb = arr[..., :3]
    span = float(rgb.max()) - float(rgb.min())
    if span <= 0:
        return 0.0
    total = 0.0
    rows = max(1, (4 * 1024 * 1024) // max(1, arr.shape[1]))  # row chunks: no full-size float copy
    for r0 in range(0, arr.shape[0], rows):
        chunk = rgb[r0 : r0 + rows]
        # channel by channel: numpy's max/min over a last axis of length 3 took ~1.5 ms each on a 224 px RGB JPEG
        # (the pediatric films), the element-wise form a tenth of it; the same values (float32 of exact integers)
        r, g, b = (chunk[..., c].astype(np.float32) for c in range(3))
        spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
        total += float(spread.sum(dtype=np.float64))
    return float(total / (arr.shape[0] * arr.shape[1]) / span)


def _split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if arr.ndim == 2:
        return arr, None
    channels = arr.shape[2]
    if channels == 2:
        return arr[..., 0], arr[..., 1]
    if channels == 4:
        return arr[..., :3], arr[..., 3]
    return arr, None


def _scale_by_dtype(grey: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """8-bit /255 and bool 0/1 keep their levels; wider integers min-max; floats kept if in [0, 1]."""
    if dtype == np.bool_:
        return grey
    if dtype == np.uint8:
        grey *= 1.0 / 255.0  # ``grey`` is always a fresh float array here
        return grey
    if dtype.kind == "f" and grey.min() >= 0.0 and grey.max() <= 1.0:
        return grey
    return minmax(grey)


def _alpha_to_unit(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.bool_:
        return alpha.astype(np.float64)
    if alpha.dtype.kind in "ui":
        return alpha.astype(np.float64) / float(np.iinfo(alpha.dtype).max)
    return np.clip(alpha.astype(np.float64), 0.0, 1.0)


def minmax(values: np.ndarray) -> np.ndarray:
    """Stretch to [0, 1]; a constant image becomes all zeros (the safety gate rejects it later)."""
    lo, hi = float(values.min()), float(values.max())
    return rescale(values, lo, hi)


def rescale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    if not math.isfinite(span) or span == 0:
        return np.zeros(values.shape, dtype=np.float64)
    return (values.astype(np.float64) - lo) / span


def finish(values: np.ndarray) -> np.ndarray:
    """Final guarantee for every path: finite float32 in [0, 1], C-contiguous (in place where possible)."""
    out = np.array(values, dtype=np.float32, order="C", copy=True)  # one float32 copy, never the caller's array
    np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0, copy=False)
    np.clip(out, 0.0, 1.0, out=out)
    return out
