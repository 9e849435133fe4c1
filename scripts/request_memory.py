#!/usr/bin/env python3
"""Peak memory of one triage request over the idle process, for large and hostile inputs (issue 9.3).

Each case runs in a fresh Python process: the bundled engine is loaded and warmed up, the peak-RSS counter of
the process is reset (``/proc/self/clear_refs``), one ``Triage.predict`` runs on the case's bytes, and the new
peak (``VmHWM``) minus the RSS just before the request is the request's cost. Inputs are generated here (nothing
from the data directory is needed): the cases of the issue (a 7071 x 7071 16-bit RGBA PNG, an RLE DICOM of the
same size), the largest accepted images of each format, and a 20,000-character prior report.

    python scripts/request_memory.py [--out prototype/eval/request_memory.json] [--cases a,b]

Linux only (reads /proc). Prints one line per case and writes the JSON file the README's reliability section
quotes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _smooth(height: int, width: int, channels: int, dtype):
    """A chest-sized smooth gradient: compresses well, so a small file decodes to many pixels (the bomb shape)."""
    import numpy as np

    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    top = np.iinfo(dtype).max
    plane = ((0.25 + 0.5 * (y * 0.7 + x * 0.3)) * top).astype(dtype)
    return plane if channels == 1 else np.repeat(plane[..., None], channels, axis=2)


def _png(arr) -> bytes:
    """Write a PNG of any bit depth and channel count with zlib (Pillow cannot write 16-bit RGBA)."""
    import struct
    import zlib

    import numpy as np

    height, width = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(">"))).reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, arr.dtype.itemsize * 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _jpeg(height: int, width: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_smooth(height, width, 1, __import__("numpy").uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _dicom(height: int, width: int, rle: bool) -> bytes:
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = height, width, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    arr = (_smooth(height, width, 1, np.uint16) >> 4).astype(np.uint16)
    if rle:
        ds.compress(RLELossless, arr, encoding_plugin="pydicom")
    else:
        ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _chest_png() -> bytes | None:
    """A real chest radiograph from the data directory (None without one: the case is skipped)."""
    from cxrtriage import config

    root = config.Settings().find_data_dir()
    images = sorted((root / "nih" / "images").glob("*.png")) if root is not None else []
    return images[0].read_bytes() if images else None


def _report(chars: int) -> str:
    sentence = "No focal consolidation, pleural effusion or pneumothorax. "
    return (sentence * (chars // len(sentence) + 1))[:chars]


#: name -> (what it is, builder of (image bytes, prior report))
CASES = {
    "nih_like_png_1024": (
        "1024 x 1024 8-bit grey PNG (an NIH-sized image)",
        lambda: (_png(_smooth(1024, 1024, 1, __import__("numpy").uint8)), None),
    ),
    "png16_rgba_7071": (
        "7071 x 7071 16-bit RGBA PNG (a 389 KB file: a decompression bomb)",
        lambda: (_png(_smooth(7071, 7071, 4, __import__("numpy").uint16)), None),
    ),
    "png8_rgba_6000": (
        "6000 x 6000 8-bit RGBA PNG (the largest accepted: CXRTRIAGE_MAX_PIXELS)",
        lambda: (_png(_smooth(6000, 6000, 4, __import__("numpy").uint8)), None),
    ),
    "png16_grey_7071": (
        "7071 x 7071 16-bit grey PNG",
        lambda: (_png(_smooth(7071, 7071, 1, __import__("numpy").uint16)), None),
    ),
    "png8_rgb_2048": (
        "2048 x 2048 8-bit RGB PNG (the largest size analysed at full resolution)",
        lambda: (_png(_smooth(2048, 2048, 3, __import__("numpy").uint8)), None),
    ),
    "dicom_raw_2048": (
        "2048 x 2048 12-bit uncompressed DICOM (the largest analysed at full resolution)",
        lambda: (_dicom(2048, 2048, False), None),
    ),
    "png16_grey_6000": (
        "6000 x 6000 16-bit grey PNG",
        lambda: (_png(_smooth(6000, 6000, 1, __import__("numpy").uint16)), None),
    ),
    "jpeg_6000": ("6000 x 6000 8-bit JPEG", lambda: (_jpeg(6000, 6000), None)),
    "dicom_rle_7071": (
        "7071 x 7071 12-bit RLE DICOM (a 2.3 MB file)",
        lambda: (_dicom(7071, 7071, True), None),
    ),
    "dicom_rle_6000": ("6000 x 6000 12-bit RLE DICOM", lambda: (_dicom(6000, 6000, True), None)),
    "dicom_raw_4000": ("4000 x 4000 12-bit uncompressed DICOM (32 MB)", lambda: (_dicom(4000, 4000, False), None)),
    "report_20000": (
        "a real NIH radiograph from the data directory with a 20,000-character prior report",
        lambda: (_chest_png(), _report(20_000)),
    ),
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(name: str) -> dict:
    """In this (fresh) process: warm engine, reset the peak, one request, the peak over the RSS before it."""
    import gc
    import tempfile

    import numpy as np

    from cxrtriage.errors import InputError
    from cxrtriage.pipeline import Triage

    what, build = CASES[name]
    data, report = build()
    if data is None:
        return {"case": name, "input": what, "outcome": "skipped: no data directory", "peak_over_idle_mb": None}
    with tempfile.TemporaryDirectory() as crops:
        engine = Triage(crops_dir=crops)
        # warm-up: model session and, with a real radiograph, medspaCy (loaded at the first analysed report)
        warm = _chest_png() or np.zeros((512, 512), dtype=np.float32)
        try:
            engine.predict(warm, "No acute findings.")
        except InputError:
            pass  # a blank image is rejected by the safety gate, after the model ran
        gc.collect()
        idle_kb = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        t0 = time.perf_counter()
        try:
            pred = engine.predict(data, report)
            outcome = f"200 {pred.label}" + (f" ({len(pred.warnings)} warnings)" if pred.warnings else "")
        except InputError as exc:
            outcome = f"rejected: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        peak_kb = _status_kb("VmHWM")
    return {
        "case": name,
        "input": what,
        "file_bytes": len(data),
        "outcome": outcome,
        "seconds": round(seconds, 3),
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "peak_over_idle_mb": round((peak_kb - idle_kb) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "prototype" / "eval" / "request_memory.json")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one)))
        return 0
    if not Path("/proc/self/clear_refs").exists():
        print("request_memory.py needs Linux /proc (clear_refs, VmHWM)", file=sys.stderr)
        return 2
    results = []
    for name in args.cases.split(","):
        if name not in CASES:
            print(f"unknown case {name!r}; choose from {', '.join(CASES)}", file=sys.stderr)
            return 2
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, timeout=600)  # noqa: S603 - this script again (sys.executable), a case name from CASES
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            results.append(
                {"case": name, "input": CASES[name][0], "outcome": f"crashed: {tail[0]}", "peak_over_idle_mb": None}
            )
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{name:20s} {r.get('peak_over_idle_mb')!s:>8} MB over idle  {r.get('seconds', '-')!s:>7} s  "
            f"{r['outcome'][:110]}"
        )
    measured = [r["peak_over_idle_mb"] for r in results if r.get("peak_over_idle_mb") is not None]
    from cxrtriage import config

    settings = config.Settings()
    summary = {
        "what": "peak RSS of one Triage.predict over the idle, warmed-up process (VmHWM after clear_refs)",
        "command": "python scripts/request_memory.py",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "limits": {"max_pixels": settings.max_pixels, "max_working_pixels": settings.max_working_pixels},
        "max_peak_over_idle_mb": max(measured) if measured else None,
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"largest: {summary['max_peak_over_idle_mb']} MB over idle; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
