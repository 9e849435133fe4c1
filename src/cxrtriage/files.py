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


def private_dir(path: str | Path) -> Path:
    """Make a folder and its missing parents, each readable by the service user only (0700, whatever the umask): a
    state folder holds patient-derived results. A folder that exists already keeps its mode: it may be shared on
    purpose (``/tmp``, a group's folder), and changing it could lock others out."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: its mode is that process's choice
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    return path


def private_file(path: str | Path) -> bool:
    """Create an empty file readable and writable by the service user only (0600, whatever the umask), unless it
    exists; returns whether it was created. An existing file keeps its mode (an administrator may share it with a
    group on purpose); :func:`readable_by_others` tells the caller to warn about it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return True


def readable_by_others(path: str | Path) -> bool:
    """True when users other than the owner and its group may read ``path``."""
    return bool(os.stat(path).st_mode & 0o004)
