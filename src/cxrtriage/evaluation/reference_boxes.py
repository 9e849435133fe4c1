"""Reference (lesion) boxes by image id, from NIH-style CSV files or JSONL, for the localisation evaluation."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.evaluation.input_files import InputProblem, image_id, read_jsonl

__all__ = [
    "load_boxes",
]


_BOX_ID_COLUMNS = ("image_id", "image_index", "imageindex", "id", "image", "path", "file")


def _norm_column(name: str) -> str:
    """'Image Index' -> 'imageindex', 'Bbox [x' -> 'x', 'h]' -> 'h' (NIH's BBox_List header splits that way)."""
    n = re.sub(r"[^a-z0-9_]", "", name.strip().lower())
    return n[4:] if n.startswith("bbox") and len(n) > 4 else n


def _box_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not text.strip():
        raise InputProblem(f"{path} is empty (no boxes)")
    if text.lstrip().startswith("{"):
        return read_jsonl(path)
    reader = csv.reader(io.StringIO(text))
    header = [_norm_column(h) for h in next(reader)]
    rows = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        rows.append((reader.line_num, {h: v for h, v in zip(header, row) if h}))
    return rows


def load_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Reference boxes by image id, ``(x, y, w, h)`` in the pixel space of the image that was predicted on.

    CSV with an id column (``image_index`` / ``Image Index`` / ``image_id`` / ``id`` / ``image`` / ``path`` /
    ``file``) and ``x, y, w, h`` -- the headers of ``nih/boxes.csv``, ``nih/rsna_boxes.csv`` and NIH's
    ``BBox_List_2017.csv`` (1024-px space: only right for 1024-px images) -- or JSONL with the same fields.
    One box per row; an image may have several rows.
    """
    path = Path(path)
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for lineno, row in _box_rows(path):
        where = f"{path}:{lineno}"
        norm = {_norm_column(k): v for k, v in row.items()}
        id_col = next((c for c in _BOX_ID_COLUMNS if str(norm.get(c) or "").strip()), None)
        if id_col is None:
            raise InputProblem(f"{where}: missing image id field (one of {', '.join(_BOX_ID_COLUMNS)})")
        vals = []
        for k in "xywh":
            if k not in norm or str(norm[k]).strip() == "":
                raise InputProblem(f"{where}: missing field {k!r} (boxes need x, y, w, h)")
            try:
                vals.append(float(norm[k]))
            except (TypeError, ValueError):
                raise InputProblem(f"{where}: field {k!r} is not a number ({norm[k]!r})") from None
        if not all(np.isfinite(vals)) or vals[2] <= 0 or vals[3] <= 0:
            raise InputProblem(f"{where}: box {vals} needs finite x, y and positive w, h")
        boxes.setdefault(image_id(str(norm[id_col])), []).append((vals[0], vals[1], vals[2], vals[3]))
    if not boxes:
        raise InputProblem(f"{path} contains no boxes (a header only?)")
    return boxes
