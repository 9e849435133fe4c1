"""Decode DICOM files with pydicom into display-polarity grey pixels plus the technical fields of an ``ImageMeta``.

Only technical tags are read out: patient identifiers, dates, institution names and UIDs never leave the
dataset, and error messages are written here rather than passed through from pydicom (parser messages may
quote header bytes). Decisions (documented because they change pixel values):

* Pixels go through modality LUT / rescale, then VOI LUT Sequence (preferred) or Window Center/Width, else
  min-max of the data, then MONOCHROME1 inversion (``1 - x``). Window output is normalised by the output range
  pydicom itself uses; a VOI LUT is normalised by the min..max of its own entries (robust against LUTs whose
  entries use fewer bits than the descriptor states).
* **Multi-frame**: only the first frame is decoded and a warning is attached.
* **Working resolution**: a frame above ``max_working`` pixels is shrunk by a chunked box mean before
  its LUTs (which make float copies of the whole frame).
* **Deflated** datasets are refused from the file meta: pydicom would inflate them without any bound.

The decoder returns ``(pixels, meta fields, DicomSource)``; :mod:`cxrtriage.imaging.load` builds the ``ImageMeta``
and keeps the :class:`DicomSource` (the header without its pixel data) beside the pixels, out of any serialised
output, so that the results that must point back at their source (SR, Secondary Capture, FHIR) do not parse the file
again. A dataset parsed elsewhere (a DICOM node's) is decoded with :func:`decode_dataset`, without re-encoding it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing, get_decoder, pixel_array
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxrtriage.errors import InvalidImageError, UnsupportedFormatError
from cxrtriage.imaging.arrays import LUMA, check_pixels, finish, minmax, reduction_factor, reduction_warning, rescale

__all__ = ["DicomSource", "decode_dataset", "decode_dicom", "header_only", "read_dataset"]

_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")


@dataclass(frozen=True, eq=False)
class DicomSource:
    """The header of a decoded DICOM input (pixel data left out), kept beside its pixels for the results that must
    file with its study (the SR, the Secondary Capture) or point at it (the FHIR report), so that none of them reads
    the file again. It holds patient identifiers: it is never serialised, logged or shown (no repr)."""

    dataset: Dataset = field(repr=False)
    study_uid: str | None = field(default=None, repr=False)


def decode_dicom(data: bytes, limit: int, max_working: int) -> tuple[np.ndarray, dict[str, Any], DicomSource]:
    """A DICOM file -> pixels, meta fields (technical tags only), its header."""
    return decode_dataset(read_dataset(data), limit, max_working)


def decode_dataset(ds: Dataset, limit: int, max_working: int) -> tuple[np.ndarray, dict[str, Any], DicomSource]:
    """A parsed DICOM dataset (e.g. what a DICOM node received) -> pixels, meta fields, its header. A dataset without
    a Transfer Syntax UID in its file meta gets the one pydicom detected while parsing (and a warning)."""
    _refuse_deflated_syntax(ds)
    warnings: list[str] = []
    _ensure_transfer_syntax(ds, warnings)
    _require_pixel_data(ds)
    rows, cols, frames = _dicom_geometry(ds)
    frames_text = f" x {frames} frames" if frames > 1 else ""
    check_pixels(rows * cols * frames, limit, f" ({rows} rows x {cols} columns{frames_text})")
    _require_decoder(ds)
    arr = _decode_first_frame(ds, frames)
    if frames > 1:
        warnings.append(f"multi-frame DICOM ({frames} frames): only the first frame was used")
    factor = reduction_factor(cols, rows, max_working)
    if factor > 1:  # before the LUTs, which make float copies of the whole frame
        arr = _reduce_array(arr, factor)
        warnings.append(reduction_warning(cols, rows, factor))
    photometric = _tag_str(ds, "PhotometricInterpretation")
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        pixels = _dicom_colour_to_grey(arr, ds, photometric)
    else:
        pixels = _dicom_grey(arr, ds, photometric, warnings)
    spacing, spacing_tag = _pixel_spacing(ds)
    meta = dict(
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
    return pixels, meta, DicomSource(header_only(ds), _study_uid(ds))


#: the elements a header-only copy leaves out: the pixels, decoded already, are the bulk of a dataset
_PIXEL_TAGS = frozenset({Tag("PixelData"), Tag("FloatPixelData"), Tag("DoubleFloatPixelData")})


def header_only(ds: Dataset) -> Dataset:
    """A new dataset holding ``ds``'s elements (the same element objects, not copies) except its pixel data, and
    its file meta. Elements added to or deleted from the copy leave ``ds`` as it is; nothing here changes a value."""
    header = Dataset({tag: ds.get_item(tag) for tag in ds.keys() if tag not in _PIXEL_TAGS})
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        header.file_meta = file_meta
    return header


def _study_uid(ds: Dataset) -> str | None:
    try:
        uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    except Exception:  # noqa: BLE001 - a malformed value is treated as absent, never echoed
        return None
    return uid or None


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
        block = arr[r0 * factor : r1 * factor, : out_w * factor].astype(np.float32)
        out[r0:r1] = block.reshape(r1 - r0, factor, out_w, factor, *arr.shape[2:]).mean(axis=(1, 3))
    if arr.dtype == np.bool_:
        return out >= 0.5
    if arr.dtype.kind in "ui":
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(arr.dtype)
    return out.astype(arr.dtype, copy=False)


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
    if at >= 0 and data[at + len(uid) : at + len(uid) + 1] in (b"", b"\x00", b"\x02"):
        raise UnsupportedFormatError("DICOM transfer syntax 'Deflated Explicit VR Little Endian' is not supported")


def _refuse_deflated_syntax(ds: Dataset) -> None:
    """The same refusal for a dataset parsed elsewhere (a DICOM node's), so both ways in answer alike."""
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None and file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        raise UnsupportedFormatError("DICOM transfer syntax 'Deflated Explicit VR Little Endian' is not supported")


def read_dataset(data: bytes) -> Dataset:
    """Parse a DICOM file (header and pixel data, the values read lazily); ``force=True`` also accepts preamble-less
    ACR-NEMA style files. Deflated files are refused first. Raises :class:`InvalidImageError` when the header cannot
    be read: parser messages may quote header bytes, so they are not chained into it.
    """
    _refuse_deflated(data)
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001
        raise InvalidImageError("the DICOM file is corrupt or truncated and its header cannot be read") from None


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
        # pydicom.pixels.pixel_array rather than ds.pixel_array: the same decode, without caching the full-size
        # array on a dataset that its caller may keep
        arr = pixel_array(ds, index=0 if frames > 1 else None)
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
    return finish(unit)


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
    return np.clip(minmax(values), 0.0, 1.0)


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
    return np.clip(rescale(out, float(entries.min()), float(entries.max())), 0.0, 1.0)


def _window_unit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply Window Center/Width; ask pydicom for its output range by windowing -inf and +inf."""
    out = apply_windowing(values, ds)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds)
    return np.clip(rescale(out, float(lo), float(hi)), 0.0, 1.0)


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
    return finish((rgb.astype(np.float64) @ LUMA) / full_scale)


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
        except Exception:  # noqa: BLE001, S112 - a malformed spacing tag: try the next one (None when none works)
            continue
        if len(numbers) == 2 and all(math.isfinite(v) and v > 0 for v in numbers):
            return (numbers[0], numbers[1]), keyword
    return None, None
