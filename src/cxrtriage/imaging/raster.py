"""Decode PNG and JPEG files (and PIL images) with Pillow into grey pixels plus the fields of an ``ImageMeta``.

* The size is checked from the header before any pixel is decoded. Pillow's global ``Image.MAX_IMAGE_PIXELS`` is
  not changed (it is process-wide and not thread-safe to toggle); its ``DecompressionBombError`` is mapped to
  :class:`ImageTooLargeError`.
* **Working resolution**: an image above ``max_working`` pixels is decoded at 1/k of its size (JPEG in
  the DCT domain, PNG by Pillow's box reduction right after decoding), so the memory of one request is bounded.
* **EXIF orientation** is applied: camera/phone photos of films carry their display rotation there.

The decoders return ``(pixels, meta fields)``; :mod:`cxrtriage.imaging.load` builds the ``ImageMeta``, so nothing
here imports the entry point.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

from cxrtriage.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError
from cxrtriage.imaging.arrays import array_to_unit, check_pixels, colourfulness, reduction_factor, reduction_warning

__all__ = ["decode_raster", "decode_pil"]

_PIL_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG", "MPO")}
#: the EXIF orientations that turn or flip the image (1 and anything unknown leave it as stored, as in Pillow)
_EXIF_TURNS = frozenset(range(2, 9))


def decode_raster(data: bytes, kind: str, limit: int, max_working: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A PNG or JPEG file (``kind`` from :func:`~cxrtriage.imaging.sniff.sniff_format`) -> pixels, meta fields."""
    img = _open_raster(data, kind, limit)
    return decode_pil(img, kind, limit, max_working)


def _reduce_pil(img: Image.Image, factor: int) -> Image.Image:
    """Shrink by ``factor`` with box (area) averaging, in Pillow's C code: memory of the output only."""
    if factor <= 1:
        return img
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    size = (max(1, img.width // factor), max(1, img.height // factor))
    if img.mode.startswith("I;16"):
        return img.resize(size, Image.Resampling.BOX)  # Image.reduce has no 16-bit mode
    return img.reduce(factor)


def _open_raster(data: bytes, kind: str, limit: int) -> Image.Image:
    """Open lazily (header only) so the size is checked before any pixel is decoded."""
    name = kind.upper()
    try:
        img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(exc, limit) from None
    except Exception as exc:  # noqa: BLE001 - any Pillow failure is a bad file for us
        raise InvalidImageError(f"the {name} file is corrupt or truncated and cannot be read") from exc
    check_pixels(img.width * img.height, limit, f" ({img.width} x {img.height})")
    return img


def _bomb_error(exc: Exception, limit: int) -> ImageTooLargeError:
    """Pillow's own bomb guard fired; reuse its pixel count (a number, never identifying)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    count = match.group(1) if match else f"more than {Image.MAX_IMAGE_PIXELS}"
    return ImageTooLargeError(
        f"the image has {count} pixels, more than the limit of {limit} pixels (set CXRTRIAGE_MAX_PIXELS to change it)"
    )


def decode_pil(
    img: Image.Image, kind: str, limit: int, max_working: int, *, owned: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode (a large image at reduced resolution), apply EXIF orientation, convert any mode to [0, 1] grey.

    ``owned``: the image was opened here, so its pixel memory is released as soon as it has been converted
    (a caller's own PIL image is never closed).
    """
    name = kind.upper() if kind != "array" else "image"
    width, height = img.size
    factor = reduction_factor(width, height, max_working)
    try:
        if factor > 1 and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (width // factor, height // factor))  # DCT-domain scaling: 1/2, 1/4 or 1/8
        img.load()
        if factor > 1:
            full, img = img, _reduce_pil(img, reduction_factor(img.width, img.height, max_working))
            if img is not full and owned:
                full.close()  # frees the full-size pixels now, not when the caller lets go of the image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(exc, limit) from None
    except Exception as exc:  # noqa: BLE001
        raise InvalidImageError(f"the {name} file is truncated or corrupt") from exc
    warnings: list[str] = []
    reduced_w = img.width
    img = _exif_transpose(img, warnings)
    if img.width != reduced_w:  # rotated by 90 degrees: the original size turns with it
        width, height = height, width
    arr, bits = _pil_to_array(img)
    if owned or factor > 1:  # a reduced image is our own copy even when the caller's was not
        img.close()
    spread = colourfulness(arr)
    pixels = array_to_unit(arr)
    del arr
    reduction = round(width / pixels.shape[1], 4) if factor > 1 else 1.0
    if factor > 1:
        warnings.append(reduction_warning(width, height, reduction))
    meta = dict(
        source_format=kind,
        width=int(width) if factor > 1 else int(pixels.shape[1]),
        height=int(height) if factor > 1 else int(pixels.shape[0]),
        bits_stored=bits,
        colourfulness=spread,
        warnings=tuple(warnings),
        reduction=reduction,
    )
    return pixels, meta


def _exif_transpose(img: Image.Image, warnings: list[str]) -> Image.Image:
    """Camera/phone photos of films carry the display rotation in EXIF; apply it. Without a rotation the image is
    returned as it is (Pillow's ``exif_transpose`` would copy it: a whole decoded film, on every request)."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) not in _EXIF_TURNS:
            return img
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - broken EXIF must not make the image unreadable
        warnings.append("EXIF orientation could not be read; the image is used as stored")
        return img


def _pil_to_array(img: Image.Image) -> tuple[np.ndarray, int]:
    """Bring any Pillow mode to an array ``array_to_unit`` understands, plus its sample depth."""
    mode = img.mode
    try:
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            return np.asarray(img), 16
        if mode == "1":
            return np.asarray(img), 1
        if mode in ("L", "LA", "RGB", "RGBA"):
            return np.asarray(img), 8
        if mode in ("P", "PA"):  # palette: keep transparency if the palette has it
            has_alpha = mode == "PA" or "transparency" in img.info
            return np.asarray(img.convert("RGBA" if has_alpha else "RGB")), 8
        if mode == "La":
            return np.asarray(img.convert("LA")), 8
        if mode in ("RGBa",):
            return np.asarray(img.convert("RGBA")), 8
        return np.asarray(img.convert("RGB")), 8  # CMYK, YCbCr, RGBX, ...
    except Exception as exc:  # noqa: BLE001
        raise UnsupportedFormatError(f"the image mode {mode!r} is not supported") from exc
