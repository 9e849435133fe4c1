"""What every evaluation input file shares: the :class:`InputProblem` error (the file, the line and the field),
JSONL reading and writing, and the image id that joins gold, prediction and box rows (the file name without
its directory, so files written on different machines match).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "InputProblem",
    "MAX_LISTED_IDS",
    "image_id",
    "is_number",
    "listed_ids",
    "read_jsonl",
    "row_image_id",
    "write_jsonl",
]


#: How many ids an error message or the printed report lists before "... and N more".
MAX_LISTED_IDS = 10


class InputProblem(ValueError):
    """The inputs cannot be evaluated; the message is shown to the user as is (exit code 2 in the CLIs)."""


def listed_ids(ids: Iterable[str], limit: int = MAX_LISTED_IDS) -> str:
    """The sorted ids, the first ``limit`` of them, then "... and N more"."""
    ids = sorted(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f", ... and {len(ids) - limit} more" if len(ids) > limit else "")


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; malformed lines are fatal, not skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputProblem(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InputProblem(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append((lineno, obj))
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write one JSON object per line (UTF-8, creating parent folders); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def image_id(ref: str) -> str:
    """The file name without its directory (either separator): the join key of every file here."""
    return re.split(r"[\\/]", str(ref).strip())[-1]


def row_image_id(row: dict[str, Any], where: str) -> str:
    """Image id of a gold / prediction / box row from ``path``, ``image_id`` or ``id``.

    When a row gives both a path and an id they must name the same file: a silent choice between two
    different images would score the wrong one.
    """
    refs = {name: row[name] for name in ("path", "image_id", "id") if row.get(name) not in (None, "")}
    if not refs:
        raise InputProblem(f"{where}: has neither 'path' nor 'id'/'image_id' (rows are joined by image file name)")
    ids = {name: image_id(str(value)) for name, value in refs.items()}
    if len(set(ids.values())) > 1:
        shown = ", ".join(f"{name}={value!r}" for name, value in ids.items())
        raise InputProblem(f"{where}: the fields name different images ({shown})")
    key = next(iter(ids.values()))
    if not key:
        raise InputProblem(f"{where}: {next(iter(refs))!r} ends with a separator, no file name to join on")
    return key
