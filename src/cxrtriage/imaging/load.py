"""Read PNG, JPEG and DICOM chest radiographs into normalised grey pixels plus non-identifying metadata.

This is the entry point, :func:`load_image`. Everything downstream (safety gate, model, evidence crops) sees one
representation: a float32 ``(H, W)`` array in ``[0, 1]`` in *display polarity* (MONOCHROME2: air and lungs dark,
bone bright), and an :class:`ImageMeta` that holds only technical fields. A DICOM input's header (patient and
study attributes, no pixel data) travels beside them as ``LoadedImage.source``, never serialised, so that the outputs
that must file with its study (SR, Secondary Capture, FHIR) need not parse the input again. Error messages are
written by this package rather than passed through from pydicom/Pillow, because callers show them to users verbatim;
they do not repeat the file name either (upload names often contain patient names); callers that know the path may
prefix it.

The work is split by stage, each module documenting the decisions that change pixel values:
:mod:`~cxrtriage.imaging.sniff` (the format, from magic bytes only), :mod:`~cxrtriage.imaging.raster` (PNG/JPEG),
:mod:`~cxrtriage.imaging.dicom` (DICOM) and :mod:`~cxrtriage.imaging.arrays` (any array to ``[0, 1]`` grey).
Here: the **pixel limit** (``max_pixels``) and a file-size bound derived from it, both checked before decoding; an
image above ``max_working_pixels`` is decoded at 1/k of its size and ``ImageMeta`` keeps the original size and the
``reduction``. Both limits are the caller's (the engine's and the UI's settings); a caller that gives none gets the
configured ones (:class:`cxrtriage.config.Settings`, read at that call: ``cxrtriage.load_image`` is a library entry
point).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from cxrtriage import config
from cxrtriage.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError
from cxrtriage.imaging.arrays import array_to_unit, check_pixels, colourfulness
from cxrtriage.imaging.dicom import DicomSource, decode_dataset, decode_dicom
from cxrtriage.imaging.raster import decode_pil, decode_raster
from cxrtriage.imaging.sniff import SNIFF_BYTES, describe_unknown, sniff_format

__all__ = ["DicomSource", "ImageMeta", "LoadedImage", "ImageSource", "load_image"]

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, Image.Image, Dataset]

# A PNG/JPEG/DICOM of N pixels never needs more than this many bytes per pixel (16-bit RGBA raw,
# 32-bit RGB DICOM); files far beyond it are refused before being read into memory.
_MAX_BYTES_PER_PIXEL = 16
_FILE_SIZE_HEADROOM = 16 * 1024 * 1024


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
    #: ``max_working_pixels``); 1 = full resolution. Boxes are always reported in original pixels.
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
    """Grey pixels (float32, ``(H, W)``, ``[0, 1]``, display polarity) and their metadata; for a DICOM input also its
    header (``source``: patient and study attributes, never serialised, not in the repr), for the outputs that file
    beside it."""

    pixels: np.ndarray
    meta: ImageMeta
    source: DicomSource | None = field(default=None, repr=False)
    #: how long decoding took (reported as the result's ``decode`` timing, also when a caller decoded beforehand)
    decode_ms: float = field(default=0.0, repr=False)


def load_image(
    src: ImageSource, *, max_pixels: int | None = None, max_working_pixels: int | None = None, kind: str | None = None
) -> LoadedImage:
    """Load a PNG, JPEG or DICOM (path or bytes), a parsed pydicom ``Dataset`` (with its ``file_meta``), a numpy
    array or a PIL image. ``kind`` is the format a caller already sniffed from the same bytes
    (:func:`~cxrtriage.imaging.sniff.sniff_format`: ``"png"``, ``"jpeg"``, ``"dicom"``), so they are not sniffed twice.

    ``max_pixels`` / ``max_working_pixels``: None takes the configured value (``Settings()``, read here).
    Raises :class:`InvalidImageError` (empty, truncated, corrupt, missing file, no pixel data),
    :class:`ImageTooLargeError` (above ``max_pixels``) or :class:`UnsupportedFormatError`.
    """
    if max_pixels is None or max_working_pixels is None:
        configured = config.Settings()
        max_pixels = configured.max_pixels if max_pixels is None else max_pixels
        max_working_pixels = configured.max_working_pixels if max_working_pixels is None else max_working_pixels
    limit, work = int(max_pixels), int(max_working_pixels)
    if limit <= 0 or work <= 0:
        raise ValueError("max_pixels and max_working_pixels must be positive")
    started = time.perf_counter()
    loaded = _load(src, limit, work, kind)
    return replace(loaded, decode_ms=(time.perf_counter() - started) * 1e3)


def _load(src: ImageSource, limit: int, work: int, kind: str | None) -> LoadedImage:
    if isinstance(src, np.ndarray):
        return _load_array(src, limit)
    if isinstance(src, Image.Image):
        return _load_pil_object(src, limit, work)
    if isinstance(src, Dataset):
        return _loaded(*decode_dataset(src, limit, work))
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        _check_file_size(len(data), limit)
        return _load_bytes(data, limit, work, kind)
    if isinstance(src, (str, os.PathLike)):
        return _load_bytes(_read_file(Path(src), limit), limit, work, kind)
    raise TypeError(f"load_image() cannot read a {type(src).__name__}; pass a path, bytes, ndarray or PIL image")


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


def _load_bytes(data: bytes, limit: int, work: int, kind: str | None = None) -> LoadedImage:
    if not data:
        raise InvalidImageError("empty file")
    kind = kind or sniff_format(data[:SNIFF_BYTES])
    if kind is None:
        detected = describe_unknown(data)
        raise UnsupportedFormatError(f"the file is not a PNG, JPEG or DICOM file (detected: {detected})")
    if kind == "dicom":
        return _loaded(*decode_dicom(data, limit, work))
    return _loaded(*decode_raster(data, kind, limit, work))


def _load_pil_object(img: Image.Image, limit: int, work: int) -> LoadedImage:
    """A PIL image handed over in memory: only PNG/JPEG or in-memory (format-less) images."""
    fmt = (img.format or "").upper()
    kind = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "": "array"}.get(fmt)
    if kind is None:
        raise UnsupportedFormatError(f"the image is not a PNG, JPEG or DICOM file (detected: {img.format})")
    check_pixels(img.width * img.height, limit, f" ({img.width} x {img.height})")
    return _loaded(*decode_pil(img, kind, limit, work, owned=False))


def _load_array(arr: np.ndarray, limit: int) -> LoadedImage:
    """An in-memory array: (H, W), (H, W, 1|2|3|4) = grey, grey+alpha, RGB, RGBA."""
    if arr.ndim < 2:
        raise InvalidImageError("an image array must have shape (H, W) or (H, W, channels)")
    check_pixels(int(arr.shape[0]) * int(arr.shape[1]), limit, f" ({arr.shape[1]} x {arr.shape[0]})")
    pixels = array_to_unit(arr)
    bits = 1 if arr.dtype == np.bool_ else arr.dtype.itemsize * 8 if arr.dtype.kind in "ui" else None
    height, width = pixels.shape
    meta = ImageMeta(
        source_format="array", width=int(width), height=int(height), bits_stored=bits, colourfulness=colourfulness(arr)
    )
    return LoadedImage(pixels=pixels, meta=meta)


def _loaded(pixels: np.ndarray, meta: dict[str, Any], source: DicomSource | None = None) -> LoadedImage:
    """A decoder's ``(pixels, meta fields[, DICOM header])`` as the one type callers see."""
    return LoadedImage(pixels=pixels, meta=ImageMeta(**meta), source=source)
