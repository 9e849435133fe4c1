"""File identity (the one sha256 helper every model, bundle and split file is named by) and the one atomic write
every output image goes through."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

_BLOB_NAME = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks. A Hugging Face cache symlink points at a blob named by its sha256,
    so multi-GB weights are not re-read."""
    path = Path(path)
    if path.is_symlink() and _BLOB_NAME.fullmatch(path.resolve().name):
        return path.resolve().name
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(files: Iterable[str | Path]) -> str:
    """One sha256 over several files, in the given order (each file's name and sha256): a model's identity."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{Path(f).name}:{sha256_file(f)}\n".encode())
    return h.hexdigest()


def replace_atomically(path: str | Path, write: Callable[[BinaryIO], None], *, mode: int | None = None) -> Path:
    """Write a file through a temp file in the same folder and ``os.replace``, so a reader never sees half a file;
    the temp file is removed when ``write`` fails. ``mode``: the file's permissions (default mkstemp's 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
