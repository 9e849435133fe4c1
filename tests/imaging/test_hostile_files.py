"""Hostile uploads against POST /predict (issue 9): bombs, truncations, polyglots, lies about the type, huge headers,
odd and mislabelled DICOMs, random bytes, empty parts.

Every file is generated here (no binaries in the repository) and sent in-process through FastAPI's TestClient to
the real app with the real bundled model engine. Each case names its expected outcome in its id:

* ``-> 4xx``: garbage or an unsafe file must get a clear client error (413 / 415 / 422) in the service's error shape
  ``{"detail": str, "error_type": str, "request_id": str}``, never a 5xx, never a 200, and never echo the (fake)
  patient identifiers the files carry;
* ``-> 200``: a well-formed file that is merely unusual (a PNG named ``.dcm``, a valid PNG with a zip appended,
  a multi-frame DICOM) is a legitimate chest image: the format comes from the bytes, extra data is ignored.

After each case the server must still be healthy (``GET /health`` 200); the last test checks that a valid image
is still triaged (200) after the whole corpus.
"""

from __future__ import annotations

import concurrent.futures
import io
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from test_io import dicom_bytes, make_dicom, png_with_header  # noqa: E402  (tests/ is on sys.path under pytest)

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402

MAX_UPLOAD_MB = 4  # small on purpose: the over-limit case stays cheap
REQUEST_TIMEOUT_S = 60  # a hang fails the case instead of the whole CI run
FAKE_PHI = ("DOE^JANE", "FAKEID0042")  # fake identifiers put into file names and DICOM headers; never echoed

# Pillow and pydicom warn about the broken files they are handed on purpose (corrupt EXIF, odd frame counts).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ----------------------------------------------------------------------------- building blocks


def _chest_phantom(size: int = 512) -> np.ndarray:
    """A synthetic frontal chest radiograph (uint8): bright body, two dark lung fields, bright mediastinum/spine.

    Accepted by the bundled model's not-a-chest-X-ray gate, so it is the "valid image" of this module.
    """
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.full((size, size), 0.75)
    for cx in (0.3, 0.7):
        img[((x - cx) / 0.17) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1] = 0.25
    mid = slice(int(0.46 * size), int(0.54 * size))
    img[:, mid] = np.maximum(img[:, mid], 0.85)
    img += rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png() -> bytes:
    return _encode(_chest_phantom(), "PNG")


def _jpeg() -> bytes:
    return _encode(_chest_phantom(), "JPEG", quality=90)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _png_with_chunk_before_idat(kind: bytes, body: bytes) -> bytes:
    chunks = _png_chunks(_png())
    at = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    chunks.insert(at, (kind, body))
    return b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(k, b) for k, b in chunks)


def _png_zlib_bomb() -> bytes:
    """A real 1-bit PNG, 30000 x 30000 (900 M pixels, ~110 MB of raw rows), about 100 KB compressed."""
    row = b"\0" + b"\0" * (30000 // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(30000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png_idat_overflow() -> bytes:
    """A 512 x 512 PNG whose IDAT inflates to 64 MiB (256 x what the header needs): a zlib bomb within the limit."""
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(b"\0" * (1 << 20)) for _ in range(64)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", 512, 512, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _ztxt_bomb() -> bytes:
    """A valid chest PNG with a zTXt chunk that inflates to 256 MiB of text."""
    comp = zlib.compressobj(9)
    text = b"".join(comp.compress(b"A" * (1 << 20)) for _ in range(256)) + comp.flush()
    return _png_with_chunk_before_idat(b"zTXt", b"Comment\0\0" + text)


def _png_bad_crc() -> bytes:
    data = bytearray(_png())
    data[29] ^= 0xFF  # last byte of the IHDR CRC
    return bytes(data)


def _png_zero_width() -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 512, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


def _png_palette_without_plte() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 3, 0, 0, 0)
    raw = b"".join(b"\0" + bytes(64) for _ in range(64))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _jpeg_with_sof_size(height: int, width: int) -> bytes:
    data = bytearray(_jpeg())
    pos = 2
    while pos < len(data):
        marker, (length,) = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        pos += 2 + length
    raise AssertionError("no SOF marker in the test JPEG")


def _jpeg_broken_exif() -> bytes:
    """A valid JPEG whose APP1 Exif block is garbage (orientation unreadable)."""
    data = _jpeg()
    app1 = b"Exif\0\0" + b"MM\0*\0\0\0\x08\xff\xff" + b"\xde\xad" * 40
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


_SCRIPT = b"<script>alert(document.cookie)</script>"


def _dicom(pixels: np.ndarray | None = None, **tags) -> pydicom.Dataset:
    """A plausible DX chest DICOM (16-bit phantom unless ``pixels``), carrying fake patient identifiers."""
    if pixels is None:
        pixels = _chest_phantom().astype(np.uint16) * 16
        tags.setdefault("bits_stored", 12)
    ds = make_dicom(pixels, **tags)
    ds.PatientName, ds.PatientID = FAKE_PHI
    ds.ViewPosition, ds.BodyPartExamined = "PA", "CHEST"
    return ds


def _dcm(**tags) -> bytes:
    return dicom_bytes(_dicom(**tags))


def _dcm_with(
    mutate: Callable[[pydicom.Dataset], None],
    *,
    implicit_vr: bool | None = None,
    little_endian: bool | None = None,
    **tags,
) -> bytes:
    ds = _dicom(**tags)
    mutate(ds)
    if implicit_vr is None:
        return dicom_bytes(ds)
    return dicom_bytes(ds, implicit_vr=implicit_vr, little_endian=little_endian)


def _set(**values) -> Callable[[pydicom.Dataset], None]:
    def mutate(ds: pydicom.Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)

    return mutate


def _compressed(syntax) -> Callable[[pydicom.Dataset], None]:
    def mutate(ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([np.random.default_rng(3).bytes(4096)])

    return mutate


_PRIVATE_CREATOR = 0x00090010  # (0009,0010) reserves the private elements (0009,1000)-(0009,10FF)


def _private_blob(ds: pydicom.Dataset) -> None:
    ds.add_new(_PRIVATE_CREATOR, "LO", "CXRTRIAGE FUZZ")
    ds.add_new(0x00091010, "OB", b"\xab" * (3 << 20))  # a 3 MiB private element before the pixels


def _many_elements(ds: pydicom.Dataset) -> None:
    """A long header: 20 000 private elements, in 100 items of a private sequence."""
    ds.add_new(_PRIVATE_CREATOR, "LO", "CXRTRIAGE FUZZ")
    items = []
    for _ in range(100):
        item = pydicom.Dataset()
        item.add_new(_PRIVATE_CREATOR, "LO", "CXRTRIAGE FUZZ")
        for e in range(200):
            item.add_new(0x00091020 + e, "LO", f"value {e}")
        items.append(item)
    ds.add_new(0x00091001, "SQ", pydicom.Sequence(items))


def _huge_declared_length() -> bytes:
    """A private element that claims 0xFFFFFFF0 bytes in a file of a few hundred KB."""
    data = _dcm_with(_set())
    at = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) PixelData, explicit VR little endian
    return data[:at] + struct.pack("<HH", 0x0009, 0x1011) + b"OB\0\0" + struct.pack("<I", 0xFFFFFFF0) + data[at:]


def _deflated_dicom(payload_mib: int | None = None) -> bytes:
    """A Part 10 file in Deflated Explicit VR Little Endian: the dataset after the file meta is raw deflate.

    ``payload_mib``: the dataset is one private OB element of that many MiB of zeros (a deflate bomb, ~1000:1);
    None: the "deflated" dataset is random bytes.
    """
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buf = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(buf, meta, enforce_standard=True)
    head = b"\0" * 128 + b"DICM" + buf.getvalue()
    if payload_mib is None:
        return head + np.random.default_rng(11).bytes(8192)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = comp.compress(struct.pack("<HH", 0x0009, 0x1010) + b"OB\0\0" + struct.pack("<I", payload_mib << 20))
    block = bytes(1 << 20)
    body += b"".join(comp.compress(block) for _ in range(payload_mib)) + comp.flush()
    return head + body


def _png_1bit(width: int, height: int) -> bytes:
    """A real, all-black 1-bit PNG: 5999 x 5999 is 36.0 M pixels (just under the 36 M limit) in about 5 KB."""
    comp = zlib.compressobj(9)
    row = b"\0" + bytes((width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Hostile:
    id: str
    make: Callable[[], bytes]
    status: int
    error_type: str | None = None  # checked when given (200 cases and 4xx cases whose error type may vary: None)
    name: str = "DOE^JANE_chest.png"  # fake patient name in the file name: must never be echoed
    content_type: str = "application/octet-stream"
    marks: tuple = ()


def _cuts(name: str, make: Callable[[], bytes], cuts: dict[str, Callable[[int], int]], error: str) -> list[Hostile]:
    def truncate(make: Callable[[], bytes], cut: Callable[[int], int]) -> Callable[[], bytes]:
        return lambda: (lambda data: data[: cut(len(data))])(make())

    return [Hostile(f"truncated-{name}-{label}->422", truncate(make, cut), 422, error) for label, cut in cuts.items()]


CASES: list[Hostile] = [
    # --- decompression bombs: refused from the header, before decoding
    Hostile(
        "png-header-30000x30000-1bit->422-too-large", lambda: png_with_header(30000, 30000), 422, "ImageTooLargeError"
    ),
    Hostile("png-zlib-bomb-30000x30000-real-idat->422-too-large", _png_zlib_bomb, 422, "ImageTooLargeError"),
    Hostile(
        "png-header-7072x7072-just-under-pillow-limit->422-too-large",
        lambda: png_with_header(7072, 7072),
        422,
        "ImageTooLargeError",
    ),
    # The decoder stops at the bytes the header needs; what it read is blank, refused by the gate.
    Hostile("png-idat-inflates-256x-past-its-512x512-header->422", _png_idat_overflow, 422, "NotAChestXrayError"),
    # Within the pixel limit, so it is decoded (at reduced resolution: CXRTRIAGE_MAX_WORKING_PIXELS), then refused
    # as blank. Before the working-resolution decode this cost about 1.4 GiB and seconds at 7064 x 7064.
    Hostile(
        "png-1bit-5999x5999-5KB-just-under-the-pixel-limit->422-blank",
        lambda: _png_1bit(5999, 5999),
        422,
        "NotAChestXrayError",
    ),
    Hostile(
        "png-1bit-7064x7064-6KB-over-the-pixel-limit->422-from-header",
        lambda: _png_1bit(7064, 7064),
        422,
        "ImageTooLargeError",
    ),
    Hostile("png-ztxt-bomb-256MiB-text->422-pillow-text-limit", _ztxt_bomb, 422, "InvalidImageError"),
    Hostile(
        "jpeg-sof-65535x65535->422-too-large", lambda: _jpeg_with_sof_size(65535, 65535), 422, "ImageTooLargeError"
    ),
    Hostile("jpeg-sof-0x0->422", lambda: _jpeg_with_sof_size(0, 0), 422, "InvalidImageError"),
    Hostile(
        "dicom-rows-columns-65535->422-too-large",
        lambda: _dcm_with(_set(Rows=65535, Columns=65535)),
        422,
        "ImageTooLargeError",
    ),
    Hostile(
        "dicom-1000-frames-declared-1-stored->422-too-large",
        lambda: _dcm_with(_set(NumberOfFrames=1000)),
        422,
        "ImageTooLargeError",
    ),
    # --- truncated files at several cut points
    *_cuts(
        "png",
        _png,
        {
            "signature-only": lambda n: 8,
            "mid-ihdr": lambda n: 20,
            "after-ihdr": lambda n: 33,
            "half": lambda n: n // 2,
            "idat-tail-missing": lambda n: n - 40,
        },
        "InvalidImageError",
    ),
    *_cuts(
        "jpeg",
        _jpeg,
        {"soi-only": lambda n: 3, "in-app0": lambda n: 12, "quarter": lambda n: n // 4, "half": lambda n: n // 2},
        "InvalidImageError",
    ),
    *_cuts(
        "dicom",
        _dcm,
        {
            "preamble-and-dicm": lambda n: 132,
            "in-file-meta": lambda n: 180,
            "in-dataset": lambda n: 400,
            "half-pixel-data": lambda n: n // 2,
            "last-byte-missing": lambda n: n - 1,
        },
        "InvalidImageError",
    ),
    # Only the IEND chunk (or the last IDAT CRC byte) missing: every pixel is there, Pillow decodes it; fine.
    Hostile("truncated-png-only-iend-missing->200-all-pixels-present", lambda: _png()[:-12], 200),
    Hostile("truncated-png-iend-and-a-crc-byte-missing->200-all-pixels-present", lambda: _png()[:-13], 200),
    # --- polyglots
    Hostile(
        "png-with-zip-appended->200-valid-png-trailing-data-ignored",
        lambda: _png() + _zip({"payload.sh": b"#!/bin/sh\necho owned\n"}),
        200,
    ),
    Hostile(
        "png-magic-then-zip->422", lambda: b"\x89PNG\r\n\x1a\n" + _zip({"a.txt": b"x" * 1000}), 422, "InvalidImageError"
    ),
    Hostile("zip-containing-a-png->415", lambda: _zip({"chest.png": _png()}), 415, "UnsupportedFormatError"),
    Hostile("gif-header-then-png->415", lambda: b"GIF89a" + _png(), 415, "UnsupportedFormatError"),
    Hostile(
        "html-with-script->415",
        lambda: b"<!DOCTYPE html><html><body>" + _SCRIPT + b"</body></html>",
        415,
        "UnsupportedFormatError",
    ),
    Hostile(
        "svg-with-script->415",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg">' + _SCRIPT + b"</svg>",
        415,
        "UnsupportedFormatError",
        name="chest.svg",
        content_type="image/svg+xml",
    ),
    Hostile("png-magic-then-html-script->422", lambda: b"\x89PNG\r\n\x1a\n" + _SCRIPT * 20, 422, "InvalidImageError"),
    Hostile("jpeg-magic-then-pdf->422", lambda: b"\xff\xd8\xff\xe0" + _pdf(), 422, "InvalidImageError"),
    Hostile("dicm-at-128-then-png->422", lambda: b"\0" * 128 + b"DICM" + _png(), 422, "InvalidImageError"),
    # --- wrong extensions and content types: the format comes from the bytes
    Hostile("pdf-named-png->415", _pdf, 415, "UnsupportedFormatError", name="chest.png", content_type="image/png"),
    Hostile("png-named-dcm->200-decoded-as-png", _png, 200, name="chest.dcm", content_type="application/dicom"),
    Hostile("jpeg-named-png->200-decoded-as-jpeg", _jpeg, 200, name="chest.png", content_type="image/png"),
    Hostile("dicom-named-jpg->200-decoded-as-dicom", _dcm, 200, name="chest.jpg", content_type="image/jpeg"),
    Hostile(
        "text-named-dcm->415",
        lambda: b"PatientName=DOE^JANE\n",
        415,
        "UnsupportedFormatError",
        name="chest.dcm",
        content_type="application/dicom",
    ),
    # --- huge headers
    Hostile(
        "png-3MiB-text-chunk->200-metadata-ignored",
        lambda: _png_with_chunk_before_idat(b"tEXt", b"Comment\0" + b"A" * (3 << 20)),
        200,
    ),
    Hostile(
        "png-5MiB-text-chunk-over-upload-limit->413",
        lambda: _png_with_chunk_before_idat(b"tEXt", b"Comment\0" + b"A" * (5 << 20)),
        413,
        "PayloadTooLarge",
    ),
    Hostile("png-bad-ihdr-crc->422", _png_bad_crc, 422, "InvalidImageError"),
    Hostile("png-width-0->422", _png_zero_width, 422, "InvalidImageError"),
    # Pillow tolerates the missing PLTE; the all-index-0 image is then refused by the gate (blank): 422 either way.
    Hostile("png-palette-without-plte->422", _png_palette_without_plte, 422),
    Hostile("jpeg-garbage-exif->200-orientation-ignored-with-warning", _jpeg_broken_exif, 200),
    Hostile("dicom-3MiB-private-element->200-header-ignored", lambda: _dcm_with(_private_blob), 200),
    Hostile("dicom-20000-element-private-header->200", lambda: _dcm_with(_many_elements), 200),
    Hostile("dicom-element-length-0xfffffff0->422", _huge_declared_length, 422, "InvalidImageError"),
    # A header of 1 MiB of empty (0000,0000) elements: parsed (about 0.5 s per MiB), no pixel data.
    Hostile(
        "dicom-preamble-then-1MiB-of-empty-elements->422",
        lambda: b"\0" * 128 + b"DICM" + bytes(1 << 20),
        422,
        "InvalidImageError",
    ),
    Hostile("dicom-deflated-syntax->415-refused-before-inflating", _deflated_dicom, 415, "UnsupportedFormatError"),
    # --- multi-frame
    Hostile(
        "dicom-3-frames->200-first-frame-used", lambda: _dcm(pixels=np.stack([_chest_phantom()] * 3), frames=3), 200
    ),
    Hostile("dicom-number-of-frames-0->200-treated-as-1", lambda: _dcm_with(_set(NumberOfFrames=0)), 200),
    Hostile(
        "dicom-2-frames-declared-1-stored->422", lambda: _dcm_with(_set(NumberOfFrames=2)), 422, "InvalidImageError"
    ),
    # --- mislabelled DICOMs
    Hostile(
        "dicom-modality-ct->422-not-a-chest-xray", lambda: _dcm_with(_set(Modality="CT")), 422, "NotAChestXrayError"
    ),
    Hostile(
        "dicom-lateral-view->422-not-a-chest-xray",
        lambda: _dcm_with(_set(ViewPosition="LL")),
        422,
        "NotAChestXrayError",
    ),
    # One sample per pixel wins over the photometric label: the data is decoded as the grey image it is.
    Hostile(
        "dicom-rgb-photometric-on-1-sample->200-decoded-as-grey",
        lambda: _dcm_with(_set(PhotometricInterpretation="RGB")),
        200,
    ),
    Hostile(
        "dicom-palette-colour-without-lut->422",
        lambda: _dcm_with(_set(PhotometricInterpretation="PALETTE COLOR")),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-bits-allocated-16-on-8-bit-data->422",
        lambda: _dcm_with(_set(BitsAllocated=16, BitsStored=16, HighBit=15), pixels=_chest_phantom()),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-bits-allocated-8-on-16-bit-data->422",
        lambda: _dcm_with(_set(BitsAllocated=8, BitsStored=8, HighBit=7)),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-bits-stored-above-allocated->422",
        lambda: _dcm_with(_set(BitsStored=24, HighBit=23)),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-samples-per-pixel-3-on-grey-data->422",
        lambda: _dcm_with(_set(SamplesPerPixel=3)),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-without-pixel-data->422", lambda: dicom_bytes(_dicom(with_pixel_data=False)), 422, "InvalidImageError"
    ),
    Hostile("dicom-rows-0->422", lambda: _dcm_with(_set(Rows=0)), 422, "InvalidImageError"),
    Hostile(
        "dicom-float-pixel-data->415",
        lambda: _dcm_with(
            lambda ds: (delattr(ds, "PixelData"), setattr(ds, "FloatPixelData", b"\0" * (512 * 512 * 4)))
        ),
        415,
        "UnsupportedFormatError",
    ),
    Hostile(
        "dicom-jpeg-baseline-syntax-garbage-fragments->422",
        lambda: _dcm_with(_compressed(JPEGBaseline8Bit)),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-jpeg2000-syntax-garbage-fragments->422",
        lambda: _dcm_with(_compressed(JPEG2000Lossless)),
        422,
        "InvalidImageError",
    ),
    Hostile(
        "dicom-rle-syntax-garbage-fragments->422", lambda: _dcm_with(_compressed(RLELossless)), 422, "InvalidImageError"
    ),
    Hostile(
        "dicom-private-transfer-syntax->415",
        lambda: _dcm_with(
            lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.826.0.1.3680043.9.9999.1"),
            implicit_vr=False,
            little_endian=True,
        ),
        415,
        "UnsupportedFormatError",
    ),
    # --- random bytes, empty
    Hostile(
        "random-bytes-64KiB->415",
        lambda: b"\x01" + np.random.default_rng(5).bytes(65535),
        415,
        "UnsupportedFormatError",
    ),
    Hostile("empty-file->422", lambda: b"", 422, "InvalidImageError"),
    # A zero-length part with an empty file name is not a file to Starlette: "missing form field 'file'".
    Hostile("zero-length-part-with-empty-filename->422", lambda: b"", 422, "RequestValidationError", name=""),
    Hostile("one-byte-png-magic-prefix->415", lambda: b"\x89", 415, "UnsupportedFormatError"),
]


# ----------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        crops_dir=tmp_path_factory.mktemp("hostile-crops"), ui=False, warmup=True, max_upload_mb=MAX_UPLOAD_MB
    )
    with TestClient(create_app(settings)) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c: TestClient, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while (r := c.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout} s: {r.json()}"
        time.sleep(0.05)


def _post(c: TestClient, data: bytes, name: str = "chest.png", content_type: str = "application/octet-stream"):
    """POST /predict in a worker thread, so that a hang fails this case after REQUEST_TIMEOUT_S."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        future = pool.submit(c.post, "/predict", files={"file": (name, data, content_type)})
        try:
            return future.result(timeout=REQUEST_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            pytest.fail(f"POST /predict did not answer within {REQUEST_TIMEOUT_S} s")
    finally:
        pool.shutdown(wait=False)  # a hung request must not block the test run


def _assert_error_shape(r) -> dict:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert {"detail", "error_type", "request_id"} <= set(body), body
    assert all(isinstance(body[k], str) and body[k] for k in ("detail", "error_type", "request_id")), body
    assert body["request_id"] == r.headers["x-request-id"]
    return body


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_upload(client: TestClient, case: Hostile) -> None:
    r = _post(client, case.make(), case.name, case.content_type)
    assert r.status_code < 500, f"server error {r.status_code}: {r.text[:500]}"
    assert r.status_code == case.status, r.text[:500]
    if case.status == 200:
        assert r.json()["label"] in ("Urgent", "Non-Urgent")
    else:
        body = _assert_error_shape(r)
        if case.error_type is not None:
            assert body["error_type"] == case.error_type, body
    for secret in (*FAKE_PHI, "<script"):
        assert secret.lower() not in r.text.lower(), "the response echoes the upload's content or name"
    assert client.get("/health").status_code == 200


def test_file_sent_as_a_plain_form_field_is_422(client: TestClient) -> None:
    """A ``file`` part without a file name is a text field to the multipart parser, not an upload."""
    boundary = "hostileboundary42"
    body = (
        (f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n').encode()
        + b"\x89PNG\r\n\x1a\n"
        + b"A" * 64
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = client.post("/predict", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 422, r.text[:500]
    assert _assert_error_shape(r)["error_type"] == "RequestValidationError"
    assert client.get("/health").status_code == 200


def test_deflated_dicom_bomb_is_refused_before_inflating(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pixel limit of 512 x 512 makes any bound derived from it (like the one on file sizes: 16 bytes a pixel
    # plus 16 MiB) far smaller than the 256 MiB the dataset inflates to. The limit is in the settings of a service
    # and engine built for this test (the loaded model reused); the variable too, for code that decodes with the
    # configured limit.
    from cxrtriage.pipeline import Triage

    monkeypatch.setenv("CXRTRIAGE_MAX_PIXELS", str(512 * 512))
    settings = Settings(crops_dir=tmp_path, ui=False, warmup=False, max_upload_mb=MAX_UPLOAD_MB, max_pixels=512 * 512)
    engine = Triage(client.app.state.runtime.state.get_engine().backend, settings=settings)
    data = _deflated_dicom(payload_mib=256)
    assert len(data) < 300_000
    with TestClient(create_app(settings, engine=engine)) as limited:
        tracemalloc.start()
        try:
            r = _post(limited, data, "chest.dcm", "application/dicom")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert r.status_code in (413, 415, 422), r.text[:500]
        _assert_error_shape(r)
        assert limited.get("/health").status_code == 200
    assert peak < 128 << 20, f"{peak / 2**20:.0f} MiB allocated for a {len(data) // 1024} KiB upload"


def test_server_is_healthy_after_the_corpus(client: TestClient) -> None:
    """Runs after the corpus (file order): the process answers and a valid chest PNG is still triaged."""
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    r = _post(client, _png(), "chest.png", "image/png")
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["label"] in ("Urgent", "Non-Urgent") and 0.0 <= body["score"] <= 1.0
    status = client.get("/status").json()
    assert status["ready"] is True
