"""Paths and URIs through one door: a local path, or any URI pyarrow's filesystems understand (``file://``,
``s3://``, ``gs://``, ``abfs://``, ``hdfs://``), so that the same command reads an archive on a laptop's disk and on
object storage. Part files are written to a hidden temporary name and then moved into place, so a reader (pandas,
DuckDB, ``--resume``) never sees half a file: a killed run leaves only complete parts (plus hidden leftovers, which
every Parquet reader skips because their names start with ``.``)."""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

#: what every Parquet reader (pyarrow.dataset, pandas, DuckDB's glob of ``part-*``) leaves out of a folder
HIDDEN_PREFIXES = (".", "_")


def is_uri(path: str) -> bool:
    """A ``scheme://`` location (read through pyarrow.fs), as opposed to a local path."""
    return "://" in path


@dataclass(frozen=True)
class Location:
    """A folder or file on some filesystem: ``fs`` and the path inside it; ``text`` is how the user wrote it."""

    fs: pafs.FileSystem
    path: str
    text: str

    def join(self, name: str) -> str:
        return posixpath.join(self.path, name)


def locate(text: str) -> Location:
    """The filesystem of ``text``: pyarrow's for a URI, the local one (absolute path) otherwise."""
    if is_uri(text):
        filesystem, path = pafs.FileSystem.from_uri(text)
        return Location(filesystem, path.rstrip("/") or "/", text)
    return Location(pafs.LocalFileSystem(), os.path.abspath(text), text)


def is_dir(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory


def read_bytes(text: str) -> bytes:
    """The whole file at a URI (a local path is read by the image loader itself, with its own messages)."""
    loc = locate(text)
    with loc.fs.open_input_stream(loc.path) as stream:
        return stream.read()


def write_atomically(fs: pafs.FileSystem, path: str, write: Callable[[Any], None]) -> str:
    """``write(stream)`` into a hidden temporary beside ``path``, then moved into place: a reader never sees half."""
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp")
    with fs.open_output_stream(tmp) as stream:
        write(stream)
    fs.move(tmp, path)
    return path


def write_part(folder: Location, table: pa.Table) -> str:
    """``table`` as ``part-<uuid>.parquet`` in ``folder``, written atomically."""
    return write_atomically(
        folder.fs, folder.join(f"part-{uuid.uuid4().hex}.parquet"), lambda stream: pq.write_table(table, stream)
    )


def part_files(folder: Location) -> list[str]:
    """The complete part files of an output folder (hidden temporaries left by a killed run are not parts)."""
    try:
        infos = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith(HIDDEN_PREFIXES)
    )
