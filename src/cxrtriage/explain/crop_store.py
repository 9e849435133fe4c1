"""Retention of crop thumbnails: the service must not fill the disk, and old crops should not linger.

Only files that look like the engine's own thumbnails (16 hex characters + ``.png``, see
:func:`cxrtriage.explain.evidence.save_crop_thumbnails`) are ever deleted or served, so pointing the crops
directory at the wrong folder cannot destroy or expose other files.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

__all__ = ["CROP_NAME", "is_crop_name", "list_crops", "prune_crops"]

CROP_NAME = re.compile(r"[0-9a-f]{16}\.png")


def is_crop_name(name: str) -> bool:
    """True for a bare file name the engine could have written (no directories)."""
    return CROP_NAME.fullmatch(name) is not None


def list_crops(directory: str | os.PathLike[str]) -> list[tuple[float, Path]]:
    """``(mtime, path)`` of every thumbnail in ``directory`` (regular files only, symlinks skipped), oldest first."""
    found: list[tuple[float, Path]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not is_crop_name(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            found.append((entry.stat(follow_symlinks=False).st_mtime, Path(entry.path)))
        except FileNotFoundError:  # deleted meanwhile by a concurrent prune
            continue
    found.sort(key=lambda item: item[0])
    return found


def prune_crops(
    directory: str | os.PathLike[str],
    max_files: int,
    max_age_s: float,
    *,
    now: float | None = None,
    min_age_s: float = 0.0,
    max_bytes: int | None = None,
) -> int:
    """Delete thumbnails older than ``max_age_s`` seconds, then the oldest beyond ``max_files`` that are older than
    ``min_age_s``, then, if the rest still exceeds ``max_bytes``, the oldest until it fits.

    ``min_age_s`` is the promise to clients: a crop named in a response stays for at least that long whatever the
    load; ``max_bytes`` is the disk bound that overrides it. Returns the number of files deleted. Safe to run
    concurrently with itself and with the engine writing new thumbnails (files that vanish meanwhile are skipped).
    """
    if max_files < 0:
        raise ValueError("max_files must be >= 0")
    if min_age_s < 0 or (max_bytes is not None and max_bytes < 0):
        raise ValueError("min_age_s and max_bytes must be >= 0")
    now = time.time() if now is None else now
    crops = list_crops(directory)
    doomed = [path for mtime, path in crops if now - mtime > max_age_s]
    kept = [(mtime, path) for mtime, path in crops if now - mtime <= max_age_s]
    excess = max(0, len(kept) - max_files)
    # oldest first, so the crops old enough to evict are a prefix of the excess
    evictable = [item for item in kept[:excess] if now - item[0] >= min_age_s]
    doomed += [path for _, path in evictable]
    kept = kept[len(evictable) :]
    if max_bytes is not None:
        sizes = []
        for _, path in kept:
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        total = sum(sizes)
        for (_, path), size in zip(kept, sizes):
            if total <= max_bytes:
                break
            doomed.append(path)
            total -= size
    deleted = 0
    for path in doomed:
        try:
            path.unlink()
            deleted += 1
        except FileNotFoundError:
            pass
    return deleted
