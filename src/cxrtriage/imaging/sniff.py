"""Name a file's format from its first bytes: PNG, JPEG or DICOM, and a best-effort name for anything else.

The format comes from magic bytes only, never from the file name or a client's content type (both are chosen by
the sender and often wrong). This is its own module so that the loader and the service's cheap upload check
(``serve.routes.predict.check_upload``, before anything is queued) apply the same rule and read the same number of
bytes.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

__all__ = ["SNIFF_BYTES", "DESCRIBE_BYTES", "sniff_format", "describe_unknown"]

#: bytes :func:`sniff_format` looks at (a Part 10 DICOM has its ``DICM`` marker at 128..132)
SNIFF_BYTES = 132
#: bytes :func:`describe_unknown` looks at to name an unsupported file
DESCRIBE_BYTES = 4096
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
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


def sniff_format(head: bytes) -> str | None:
    """Return ``"png"``, ``"jpeg"``, ``"dicom"`` or None from the first bytes (>= 132 for Part 10 DICOM)."""
    head = bytes(head[:SNIFF_BYTES])
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


def describe_unknown(head: bytes) -> str:
    """Best-effort name of a non-supported file type, for the error message (reads ``DESCRIBE_BYTES`` at most)."""
    head = bytes(head[:DESCRIBE_BYTES])
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and struct.unpack("<I", head[14:18])[0]
        in (
            12,
            40,
            52,
            56,
            64,
            108,
            124,
        )
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
