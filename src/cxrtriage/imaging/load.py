"""Read PNG, JPEG and DICOM chest radiographs into normalised grey pixels plus non-identifying metadata.

Everything downstream (safety gate, model, evidence crops) sees one representation: a float32
``(H, W)`` array in ``[0, 1]`` in *display polarity* (MONOCHROME2: air and lungs dark, bone bright),
and an :class:`ImageMeta` that holds only technical fields. Patient identifiers, dates, institution
names and UIDs are never copied out of a DICOM header, and error messages are written here rather
than passed through from pydicom/Pillow, because callers show them to users verbatim. Messages do
not repeat the file name either (upload names often contain patient names); callers that know the
path may prefix it themselves.

Decisions (documented because they change pixel values):

* **Format** comes from magic bytes only, never from the file name.
* **8-bit** PNG/JPEG (and ``uint8`` arrays) are divided by 255, so the stored grey levels are kept.
* **16-bit** PNG (Pillow modes ``I;16``/``I``) and other >8-bit integer arrays are min-max scaled to
  ``[0, 1]``: such files come from DICOM exports with unknown bit depth (10, 12 or 16 bits in a 16-bit
  container) and no window, which is the same situation as a DICOM without VOI, treated the same way.
* **Colour** is converted with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) in floating point.
* **Alpha** is composited over **black**: transparent padding then looks like the dark air/border
  around a radiograph instead of a bright frame that could be mistaken for bone or opacity.
* **DICOM** pixels go through modality LUT / rescale, then VOI LUT Sequence (preferred) or Window
  Center/Width, else min-max of the data, then MONOCHROME1 inversion (``1 - x``). Window output is
  normalised by the output range pydicom itself uses; a VOI LUT is normalised by the min..max of its
  own entries (robust against LUTs whose entries use fewer bits than the descriptor states).
* **Multi-frame** DICOM: only the first frame is decoded and a warning is attached.
* **Pixel limit** (``max_pixels``, default ``config.max_pixels()``) is checked from the header before
  decoding. Pillow's global ``Image.MAX_IMAGE_PIXELS`` is not changed (it is process-wide and not
  thread-safe to toggle); its ``DecompressionBombError`` is mapped to :class:`ImageTooLargeError`.
* **Working resolution**: an image above ``config.max_working_pixels()`` is decoded at 1/k of its size (JPEG
  in the DCT domain, PNG by Pillow's box reduction right after decoding, DICOM by a chunked box mean before its
  LUTs), so the memory of one request is bounded; ``ImageMeta`` keeps the original size and the ``reduction``.
* **Deflated** DICOMs are refused from the file meta: pydicom would inflate them without any bound.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union

import numpy as np
import pydicom
from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing, get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxrtriage import config
from cxrtriage.errors import (
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedFormatError,
)

__all__ = ["ImageMeta", "LoadedImage", "ImageSource", "sniff_format", "load_image"]

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, Image.Image]

_LUMA = np.array([0.299, 0.587, 0.114])
_SNIFF_BYTES = 132
_DESCRIBE_BYTES = 4096
# A PNG/JPEG/DICOM of N pixels never needs more than this many bytes per pixel (16-bit RGBA raw,
# 32-bit RGB DICOM); files far beyond it are refused before being read into memory.
_MAX_BYTES_PER_PIXEL = 16
_FILE_SIZE_HEADROOM = 16 * 1024 * 1024
_PIL_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG", "MPO")}
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    .split()
)
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")


@dataclass(frozen=True)
class ImageMeta:
    """Technical, non-identifying facts about a loaded image.

    ``source_format`` is ``"png"``, ``"jpeg"`` or ``"dicom"``; ``"array"`` for in-memory numpy
    arrays and PIL images that were not read from a file. ``bits_stored`` is the DICOM BitsStored,
    or the sample depth of a PNG/JPEG/array (1, 8 or 16).
    """

    source_format: str
    width: int
    height: int
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    photometric_interpretation: str | None = None
    bits_stored: int | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    pixel_spacing_tag: str | None = None
    frames: int = 1
    colourfulness: float | None = None  # mean channel spread (0 grey .. 1) of colour inputs, None for grey
    warnings: tuple[str, ...] = ()
    #: the pixels were decoded at 1/reduction of ``width`` x ``height`` (images above
    #: ``config.max_working_pixels()``); 1 = full resolution. Boxes are always reported in original pixels.
    reduction: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with lists instead of tuples, ready for ``json.dumps``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """Grey pixels (float32, ``(H, W)``, ``[0, 1]``, display polarity) and their metadata."""

    pixels: np.ndarray
    meta: ImageMeta


# --------------------------------------------------------------------------- format sniffing


def sniff_format(head: bytes) -> str | None:
    """Return ``"png"``, ``"jpeg"``, ``"dicom"`` or None from the first bytes (>= 132 for Part 10 DICOM)."""
    head = bytes(head[:_SNIFF_BYTES])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if _looks_like_bare_dicom(head):
        return "dicom"
    return None


def _looks_like_bare_dicom(head: bytes) -> bool:
    """Preamble-less DICOM / ACR-NEMA: starts with a (0002,xxxx) or (0008,xxxx) element.

    The tag alone is weak evidence, so the next bytes must also look like an element: an explicit
    VR code, or (implicit VR) a short or undefined value length.
    """
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group = struct.unpack(order + "H", head[:2])[0]
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _DICOM_VRS:
            return True
        length = struct.unpack(order + "I", head[4:8])[0]
        if order == "<" and (length < 0x10000 or length == 0xFFFFFFFF):
            return True
    return False


def _describe_unknown(head: bytes) -> str:
    """Best-effort name of a non-supported file type, for the error message."""
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"BM") and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in (
        12, 40, 52, 56, 64, 108, 124,
    ):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        return "ISO media (HEIC/AVIF/MP4)"
    if _looks_like_text(head):
        return "text"
    return _pillow_format_name(head) or "unknown binary data"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character may be cut at the end of the sniffed block
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and all(ch.isprintable() or ch in "\r\n\t\f\v" for ch in text)


def _pillow_format_name(head: bytes) -> str | None:
    """Let Pillow name any other raster format it knows (reads the header only)."""
    try:
        with Image.open(io.BytesIO(head)) as img:
            return img.format
    except Exception:  # noqa: BLE001 - only used to word an error message
        return None


# --------------------------------------------------------------------------- entry point


def load_image(src: ImageSource, *, max_pixels: int | None = None) -> LoadedImage:
    """Load a PNG, JPEG or DICOM (path or bytes), a numpy array or a PIL image.

    Raises :class:`InvalidImageError` (empty, truncated, corrupt, missing file, no pixel data),
    :class:`ImageTooLargeError` (above ``max_pixels``) or :class:`UnsupportedFormatError`.
    """
    limit = config.max_pixels() if max_pixels is None else int(max_pixels)
    if limit <= 0:
        raise ValueError("max_pixels must be positive")
    if isinstance(src, np.ndarray):
        return _load_array(src, limit)
    if isinstance(src, Image.Image):
        return _load_pil_object(src, limit)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        _check_file_size(len(data), limit)
        return _load_bytes(data, limit)
    if isinstance(src, (str, os.PathLike)):
        return _load_bytes(_read_file(Path(src), limit), limit)
    raise TypeError(
        f"load_image() cannot read a {type(src).__name__}; pass a path, bytes, ndarray or PIL image"
    )


def _read_file(path: Path, limit: int) -> bytes:
    """Read a whole file, turning OS errors into messages without the (possibly identifying) path."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise InvalidImageError("the path is a directory, not an image file")
        _check_file_size(size, limit)
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidImageError("file not found") from None
    except PermissionError:
        raise InvalidImageError("the file cannot be read: permission denied") from None
    except IsADirectoryError:
        raise InvalidImageError("the path is a directory, not an image file") from None
    except OSError as exc:
        raise InvalidImageError(f"the file cannot be read ({type(exc).__name__})") from None


def _check_file_size(size: int, limit: int) -> None:
    max_bytes = limit * _MAX_BYTES_PER_PIXEL + _FILE_SIZE_HEADROOM
    if size > max_bytes:
        raise ImageTooLargeError(
            f"the file is {size} bytes, too large for an image of at most {limit} pixels "
            f"(at most {max_bytes} bytes accepted)"
        )


def _check_pixels(count: int, limit: int, detail: str = "") -> None:
    if count > limit:
        raise ImageTooLargeError(
            f"the image has {count} pixels{detail}, more than the limit of {limit} pixels "
            "(set CXRTRIAGE_MAX_PIXELS to change it)"
        )


def _load_bytes(data: bytes, limit: int) -> LoadedImage:
    if not data:
        raise InvalidImageError("empty file")
    kind = sniff_format(data[:_SNIFF_BYTES])
    if kind is None:
        detected = _describe_unknown(data[:_DESCRIBE_BYTES])
        raise UnsupportedFormatError(f"the file is not a PNG, JPEG or DICOM file (detected: {detected})")
    if kind == "dicom":
        return _load_dicom(data, limit)
    return _load_raster(data, kind, limit)


# --------------------------------------------------------------------------- PNG / JPEG


def _load_raster(data: bytes, kind: str, limit: int) -> LoadedImage:
    img = _open_raster(data, kind, limit)
    return _pil_to_loaded(img, kind, limit)


def reduction_factor(width: int, height: int, max_working: int | None = None) -> int:
    """The whole factor an image of this size is shrunk by on decode so it fits ``max_working`` pixels."""
    work = config.max_working_pixels() if max_working is None else int(max_working)
    if width * height <= work:
        return 1
    return int(math.ceil(math.sqrt(width * height / work)))


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


def _reduce_array(arr: np.ndarray, factor: int) -> np.ndarray:
    """Box-average (H, W[, C]) by ``factor`` in row chunks (bounded temporary memory); keeps the dtype."""
    if factor <= 1:
        return arr
    out_h, out_w = max(1, arr.shape[0] // factor), max(1, arr.shape[1] // factor)
    if arr.shape[0] < factor or arr.shape[1] < factor:
        return np.ascontiguousarray(arr[::factor, ::factor])
    out = np.empty((out_h, out_w) + arr.shape[2:], dtype=np.float32)
    rows = max(1, (16 * 1024 * 1024) // max(1, out_w * factor * factor * 4 * (arr.shape[2] if arr.ndim == 3 else 1)))
    for r0 in range(0, out_h, rows):
        r1 = min(out_h, r0 + rows)
        block = arr[r0 * factor:r1 * factor, :out_w * factor].astype(np.float32)
        out[r0:r1] = block.reshape(r1 - r0, factor, out_w, factor, *arr.shape[2:]).mean(axis=(1, 3))
    if arr.dtype == np.bool_:
        return out >= 0.5
    if arr.dtype.kind in "ui":
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(arr.dtype)
    return out.astype(arr.dtype, copy=False)


def _reduction_warning(width: int, height: int, factor: float) -> str:
    return (f"large image ({width} x {height}): analysed at 1/{factor:g} resolution to bound memory "
            f"(CXRTRIAGE_MAX_WORKING_PIXELS); boxes are in original pixels")


def _open_raster(data: bytes, kind: str, limit: int) -> Image.Image:
    """Open lazily (header only) so the size is checked before any pixel is decoded."""
    name = kind.upper()
    try:
        img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(exc, limit) from None
    except Exception as exc:  # noqa: BLE001 - any Pillow failure is a bad file for us
        raise InvalidImageError(f"the {name} file is corrupt or truncated and cannot be read") from exc
    _check_pixels(img.width * img.height, limit, f" ({img.width} x {img.height})")
    return img


def _bomb_error(exc: Exception, limit: int) -> ImageTooLargeError:
    """Pillow's own bomb guard fired; reuse its pixel count (a number, never identifying)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    count = match.group(1) if match else f"more than {Image.MAX_IMAGE_PIXELS}"
    return ImageTooLargeError(
        f"the image has {count} pixels, more than the limit of {limit} pixels "
        "(set CXRTRIAGE_MAX_PIXELS to change it)"
    )


def _pil_to_loaded(img: Image.Image, kind: str, limit: int, *, owned: bool = True) -> LoadedImage:
    """Decode (a large image at reduced resolution), apply EXIF orientation, convert any mode to [0, 1] grey.

    ``owned``: the image was opened here, so its pixel memory is released as soon as it has been converted
    (a caller's own PIL image is never closed).
    """
    name = kind.upper() if kind != "array" else "image"
    width, height = img.size
    factor = reduction_factor(width, height)
    try:
        if factor > 1 and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (width // factor, height // factor))  # DCT-domain scaling: 1/2, 1/4 or 1/8
        img.load()
        if factor > 1:
            full, img = img, _reduce_pil(img, reduction_factor(img.width, img.height))
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
    colourfulness = _colourfulness(arr)
    pixels = _array_to_unit(arr)
    del arr
    reduction = round(width / pixels.shape[1], 4) if factor > 1 else 1.0
    if factor > 1:
        warnings.append(_reduction_warning(width, height, reduction))
    meta = ImageMeta(
        source_format=kind,
        width=int(width) if factor > 1 else int(pixels.shape[1]),
        height=int(height) if factor > 1 else int(pixels.shape[0]),
        bits_stored=bits,
        colourfulness=colourfulness,
        warnings=tuple(warnings),
        reduction=reduction,
    )
    return LoadedImage(pixels=pixels, meta=meta)


def _exif_transpose(img: Image.Image, warnings: list[str]) -> Image.Image:
    """Camera/phone photos of films carry the display rotation in EXIF; apply it."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - broken EXIF must not make the image unreadable
        warnings.append("EXIF orientation could not be read; the image is used as stored")
        return img


def _pil_to_array(img: Image.Image) -> tuple[np.ndarray, int]:
    """Bring any Pillow mode to an array ``_array_to_unit`` understands, plus its sample depth."""
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


# --------------------------------------------------------------------------- arrays


def _load_pil_object(img: Image.Image, limit: int) -> LoadedImage:
    """A PIL image handed over in memory: only PNG/JPEG or in-memory (format-less) images."""
    fmt = (img.format or "").upper()
    kind = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "": "array"}.get(fmt)
    if kind is None:
        raise UnsupportedFormatError(f"the image is not a PNG, JPEG or DICOM file (detected: {img.format})")
    _check_pixels(img.width * img.height, limit, f" ({img.width} x {img.height})")
    return _pil_to_loaded(img, kind, limit, owned=False)


def _load_array(arr: np.ndarray, limit: int) -> LoadedImage:
    """An in-memory array: (H, W), (H, W, 1|2|3|4) = grey, grey+alpha, RGB, RGBA."""
    if arr.ndim < 2:
        raise InvalidImageError("an image array must have shape (H, W) or (H, W, channels)")
    _check_pixels(int(arr.shape[0]) * int(arr.shape[1]), limit, f" ({arr.shape[1]} x {arr.shape[0]})")
    pixels = _array_to_unit(arr)
    bits = 1 if arr.dtype == np.bool_ else arr.dtype.itemsize * 8 if arr.dtype.kind in "ui" else None
    height, width = pixels.shape
    meta = ImageMeta(source_format="array", width=int(width), height=int(height), bits_stored=bits,
                     colourfulness=_colourfulness(arr))
    return LoadedImage(pixels=pixels, meta=meta)


def _array_to_unit(arr: np.ndarray) -> np.ndarray:
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
    return _finish(grey)


def _luma(colour: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of (H, W, 3) one channel at a time: no (H, W, 3) float copy (memory of large images)."""
    weights = _LUMA.astype(np.float32) if colour.dtype.itemsize <= 2 else _LUMA  # 8/16-bit: float32 is exact enough
    grey = colour[..., 0] * weights[0]
    grey += colour[..., 1] * weights[1]
    grey += colour[..., 2] * weights[2]
    return grey


def _colourfulness(arr: np.ndarray) -> float | None:
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
        chunk = rgb[r0:r0 + rows].astype(np.float32)
        total += float((chunk.max(axis=2) - chunk.min(axis=2)).sum(dtype=np.float64))
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
    return _minmax(grey)


def _alpha_to_unit(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.bool_:
        return alpha.astype(np.float64)
    if alpha.dtype.kind in "ui":
        return alpha.astype(np.float64) / float(np.iinfo(alpha.dtype).max)
    return np.clip(alpha.astype(np.float64), 0.0, 1.0)


def _minmax(values: np.ndarray) -> np.ndarray:
    """Stretch to [0, 1]; a constant image becomes all zeros (the safety gate rejects it later)."""
    lo, hi = float(values.min()), float(values.max())
    return _rescale(values, lo, hi)


def _rescale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    if not math.isfinite(span) or span == 0:
        return np.zeros(values.shape, dtype=np.float64)
    return (values.astype(np.float64) - lo) / span


def _finish(values: np.ndarray) -> np.ndarray:
    """Final guarantee for every path: finite float32 in [0, 1], C-contiguous (in place where possible)."""
    out = np.array(values, dtype=np.float32, order="C", copy=True)  # one float32 copy, never the caller's array
    np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0, copy=False)
    np.clip(out, 0.0, 1.0, out=out)
    return out


# --------------------------------------------------------------------------- DICOM


def _load_dicom(data: bytes, limit: int) -> LoadedImage:
    ds = _read_dataset(data)
    warnings: list[str] = []
    _ensure_transfer_syntax(ds, warnings)
    _require_pixel_data(ds)
    rows, cols, frames = _dicom_geometry(ds)
    frames_text = f" x {frames} frames" if frames > 1 else ""
    _check_pixels(rows * cols * frames, limit, f" ({rows} rows x {cols} columns{frames_text})")
    _require_decoder(ds)
    arr = _decode_first_frame(ds, frames)
    if frames > 1:
        warnings.append(f"multi-frame DICOM ({frames} frames): only the first frame was used")
    factor = reduction_factor(cols, rows)
    if factor > 1:  # before the LUTs, which make float copies of the whole frame
        arr = _reduce_array(arr, factor)
        warnings.append(_reduction_warning(cols, rows, factor))
    photometric = _tag_str(ds, "PhotometricInterpretation")
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        pixels = _dicom_colour_to_grey(arr, ds, photometric)
    else:
        pixels = _dicom_grey(arr, ds, photometric, warnings)
    spacing, spacing_tag = _pixel_spacing(ds)
    meta = ImageMeta(
        source_format="dicom",
        width=int(cols) if factor > 1 else int(pixels.shape[1]),
        height=int(rows) if factor > 1 else int(pixels.shape[0]),
        reduction=round(cols / pixels.shape[1], 4) if factor > 1 else 1.0,
        modality=_tag_str(ds, "Modality"),
        view_position=_tag_str(ds, "ViewPosition"),
        body_part=_tag_str(ds, "BodyPartExamined"),
        photometric_interpretation=photometric,
        bits_stored=_tag_int(ds, "BitsStored"),
        pixel_spacing_mm=spacing,
        pixel_spacing_tag=spacing_tag,
        frames=frames,
        warnings=tuple(warnings),
    )
    return LoadedImage(pixels=pixels, meta=meta)


def _refuse_deflated(data: bytes) -> None:
    """Deflated datasets are inflated by pydicom without any bound (a 255 KiB upload became 256 MiB): refuse them
    from the file meta, before the dataset is read. Chest radiographs are not sent deflated in practice."""
    if data[128:132] != b"DICM":
        return
    # the file meta group is explicit VR little endian, led by its group length (0002,0000) UL
    if data[132:138] == b"\x02\x00\x00\x00UL" and len(data) >= 144:
        end = 144 + int.from_bytes(data[140:144], "little")
    else:
        end = 132 + 1024
    uid = DeflatedExplicitVRLittleEndian.encode()
    at = data.find(uid, 132, min(end, 132 + 64 * 1024))
    if at >= 0 and data[at + len(uid):at + len(uid) + 1] in (b"", b"\x00", b"\x02"):
        raise UnsupportedFormatError("DICOM transfer syntax 'Deflated Explicit VR Little Endian' is not supported")


def _read_dataset(data: bytes) -> Dataset:
    """Parse the header; ``force=True`` also accepts preamble-less ACR-NEMA style files.

    Parser messages may quote header bytes, so they are not chained into our error.
    """
    _refuse_deflated(data)
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001
        raise InvalidImageError(
            "the DICOM file is corrupt or truncated and its header cannot be read"
        ) from None


def _ensure_transfer_syntax(ds: Dataset, warnings: list[str]) -> None:
    """Old files without file meta: assume the encoding pydicom detected while parsing."""
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is False:
        syntax = ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
    else:
        syntax = ImplicitVRLittleEndian
    ds.file_meta.TransferSyntaxUID = syntax
    warnings.append(f"DICOM file has no transfer syntax (old ACR-NEMA style): {syntax.name} assumed")


def _require_pixel_data(ds: Dataset) -> None:
    if "PixelData" in ds:
        return
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise UnsupportedFormatError("DICOM files with floating-point pixel data are not supported")
    raise InvalidImageError("DICOM file has no pixel data")


def _dicom_geometry(ds: Dataset) -> tuple[int, int, int]:
    rows, cols = _tag_int(ds, "Rows"), _tag_int(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise InvalidImageError("DICOM file has no valid image size (Rows/Columns)")
    frames = _tag_int(ds, "NumberOfFrames") or 1
    return rows, cols, max(frames, 1)


def _require_decoder(ds: Dataset) -> None:
    """Refuse compressed syntaxes we cannot decode with a clear, typed error."""
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    # Only registered (public) syntax names are quoted; a private UID could be site-specific.
    if syntax.is_transfer_syntax:
        label = f"DICOM transfer syntax '{syntax.name}'"
    else:
        label = "A private or unknown DICOM transfer syntax"
    try:
        decoder = get_decoder(syntax)
    except Exception:  # noqa: BLE001 - NotImplementedError for syntaxes without any decoder
        raise UnsupportedFormatError(f"{label} is not supported") from None
    if not decoder.is_available:
        raise UnsupportedFormatError(f"{label} cannot be decoded: no decoder for it is installed")


def _decode_first_frame(ds: Dataset, frames: int) -> np.ndarray:
    """Decode one frame only (memory), YBR converted to RGB by pydicom."""
    try:
        ds.pixel_array_options(index=0 if frames > 1 else None)
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pixel-module errors carry no identifiers
        raise InvalidImageError("the DICOM pixel data is truncated or corrupt and cannot be decoded") from exc
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InvalidImageError("the DICOM pixel data has an unexpected shape")
    return arr


def _dicom_grey(arr: np.ndarray, ds: Dataset, photometric: str | None, warnings: list[str]) -> np.ndarray:
    """Modality LUT -> VOI (LUT or window, else min-max) -> [0, 1] -> MONOCHROME1 inversion."""
    try:
        values = apply_modality_lut(arr, ds)
    except Exception:  # noqa: BLE001
        warnings.append("the DICOM modality LUT / rescale could not be applied; stored values used")
        values = arr
    unit = _apply_voi_unit(np.asarray(values), ds, warnings)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return _finish(unit)


def _apply_voi_unit(values: np.ndarray, ds: Dataset, warnings: list[str]) -> np.ndarray:
    """Same precedence as ``apply_voi_lut`` (VOI LUT Sequence, then window), normalised to [0, 1]."""
    if _has_voi_lut(ds):
        try:
            return _voi_lut_unit(values, ds)
        except Exception:  # noqa: BLE001
            warnings.append("the DICOM VOI LUT is invalid; min-max scaling used instead")
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        try:
            return _window_unit(values, ds)
        except Exception:  # noqa: BLE001
            warnings.append("the DICOM window centre/width is invalid; min-max scaling used instead")
    return np.clip(_minmax(values), 0.0, 1.0)


def _has_voi_lut(ds: Dataset) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None


def _voi_lut_unit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the first VOI LUT; its output range is taken from its own entries."""
    ints = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values.astype(np.int64)
    out = apply_voi(ints, ds)
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    nr_entries, first_map = int(descriptor[0]) or 65536, int(descriptor[1])
    entries = apply_voi(np.arange(first_map, first_map + nr_entries, dtype=np.int64), ds)
    return np.clip(_rescale(out, float(entries.min()), float(entries.max())), 0.0, 1.0)


def _window_unit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply Window Center/Width; ask pydicom for its output range by windowing -inf and +inf."""
    out = apply_windowing(values, ds)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds)
    return np.clip(_rescale(out, float(lo), float(hi)), 0.0, 1.0)


def _dicom_colour_to_grey(arr: np.ndarray, ds: Dataset, photometric: str | None) -> np.ndarray:
    """RGB/YBR (already RGB from pydicom) or PALETTE COLOR -> BT.601 luma in [0, 1]."""
    try:
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            full_scale = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind in "ui" else float(rgb.max() or 1)
        else:
            rgb = arr
            full_scale = float(2 ** (_tag_int(ds, "BitsStored") or rgb.dtype.itemsize * 8) - 1)
    except Exception as exc:  # noqa: BLE001
        raise InvalidImageError("the DICOM colour pixel data cannot be converted to grey") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidImageError("the DICOM colour pixel data has an unexpected shape")
    return _finish((rgb.astype(np.float64) @ _LUMA) / full_scale)


def _tag_str(ds: Dataset, keyword: str) -> str | None:
    """A short technical string tag, stripped and upper-cased; None when absent or unreadable."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - malformed value: treat as absent, never echo it
        return None
    if value is None:
        return None
    if not isinstance(value, str):
        is_multi = isinstance(value, MultiValue) or isinstance(value, (list, tuple))
        value = "\\".join(str(v) for v in value) if is_multi else str(value)
    value = value.strip().upper()
    return value or None


def _tag_int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except Exception:  # noqa: BLE001
        return None


def _pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """(row, col) spacing in mm and the tag it came from, trying the tags of ``_SPACING_TAGS`` in order."""
    for keyword in _SPACING_TAGS:
        try:
            value = ds.get(keyword)
            if value is None:
                continue
            numbers = [float(v) for v in value]
        except Exception:  # noqa: BLE001
            continue
        if len(numbers) == 2 and all(math.isfinite(v) and v > 0 for v in numbers):
            return (numbers[0], numbers[1]), keyword
    return None, None

