"""What ``cxrtriage batch SOURCE...`` triages: every SOURCE becomes rows of one input schema (:data:`INPUT_SCHEMA`).

* an image file: one row;
* a folder (local or a URI): every file below it, recursively, whose suffix is PNG, JPEG or DICOM, and every file
  without a suffix or named by a UID (DICOM archives often name files so; one that is not an image becomes an error
  row, never a silent omission); hidden files and folders are left out;
* a manifest (``.csv``, ``.jsonl``, ``.parquet``) with a ``path`` column and optional ``prior_report`` and
  ``accession`` columns; a relative path is relative to the manifest's folder (the manifest travels with its images).

Only names are read here, on the driver: the images themselves are read in the workers. The rows go into Ray's
object store block by block (about 100 bytes an input: 100 MB for a million); a folder's listing is held whole by
the driver while it is made, a manifest is streamed, which is why an archive of millions of films is best given as
a manifest.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from cxrtriage.archive.storage import HIDDEN_PREFIXES, Location, is_dir, is_uri, locate

#: the suffixes a folder's images may have (any case); files without a suffix are taken too (DICOM by UID)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".parquet"})
#: optional manifest columns copied to every row
OPTIONAL_COLUMNS = ("prior_report", "accession")
#: one row per input: ``path`` as given, the folder a relative path is read from (``root``), the optional columns
INPUT_SCHEMA = pa.schema([("path", pa.string()), ("root", pa.string())] + [(c, pa.string()) for c in OPTIONAL_COLUMNS])


class SourceError(ValueError):
    """A SOURCE that cannot be read: not there, not an image, folder or manifest, or a manifest without ``path``."""


def _suffix(name: str) -> str:
    return posixpath.splitext(name)[1].lower()


def is_manifest(text: str) -> bool:
    return _suffix(text) in MANIFEST_SUFFIXES


def _is_image_name(name: str) -> bool:
    """PNG, JPEG, DICOM by suffix, or a name without one or ending in digits (a DICOM file named by its UID)."""
    base = posixpath.basename(name)
    suffix = _suffix(base)
    return not base.startswith(HIDDEN_PREFIXES) and (suffix in IMAGE_SUFFIXES or suffix[1:].isdigit() or not suffix)


def list_folder(loc: Location) -> Iterator[str]:
    """The image files below a folder, sorted, each as the user would write it (the folder as given + the relative
    path), so the row's ``path`` reads back to the same file."""
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    rel = sorted(
        posixpath.relpath(i.path, loc.path) for i in infos if i.type == pafs.FileType.File and _is_image_name(i.path)
    )
    for r in rel:
        if any(part.startswith(HIDDEN_PREFIXES) for part in r.split("/")[:-1]):
            continue  # inside a hidden folder (.git, a killed run's leftovers)
        yield posixpath.join(loc.text, r) if is_uri(loc.text) else _join_local(loc.text, r)


def _join_local(folder: str, rel: str) -> str:
    return os.path.join(folder, *rel.split("/"))


def manifest_columns(loc: Location) -> list[str]:
    """A manifest's column names, read from its header alone (checked before any work starts)."""
    suffix = _suffix(loc.path)
    if suffix == ".parquet":
        with loc.fs.open_input_file(loc.path) as fh:
            return list(pq.read_schema(fh).names)
    with loc.fs.open_input_stream(loc.path) as stream:
        first = next(_lines(stream), b"")  # the header line, however long (a JSONL line holds a whole report)
    reader = pajson.read_json if suffix == ".jsonl" else pacsv.read_csv
    return list(reader(pa.BufferReader(first + b"\n")).schema.names)


def manifest_root(text: str) -> str:
    """The folder a manifest's relative paths are read from: its own."""
    return posixpath.dirname(text) if is_uri(text) else _dirname_local(text)


def _dirname_local(text: str) -> str:
    return os.path.dirname(os.path.abspath(text))


def normalise(batch: pa.Table, root: str) -> pa.Table:
    """A manifest's batch as :data:`INPUT_SCHEMA` (other columns dropped; numbers in ``accession`` kept as text)."""
    n = batch.num_rows
    columns: dict[str, Any] = {"path": batch.column("path").cast(pa.string()), "root": pa.array([root] * n)}
    for name in OPTIONAL_COLUMNS:
        columns[name] = batch.column(name).cast(pa.string()) if name in batch.column_names else pa.nulls(n, pa.string())
    return pa.table(columns, schema=INPUT_SCHEMA)


def _records_table(records: list[dict[str, Any]]) -> pa.Table:
    columns = ("path", *OPTIONAL_COLUMNS)
    return pa.table(
        {c: pa.array([None if r.get(c) is None else str(r[c]) for r in records], pa.string()) for c in columns}
    )


def _lines(stream: Any, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a pyarrow input stream (which has no readline), a megabyte read at a time."""
    rest = b""
    while data := stream.read(chunk):
        *lines, rest = (rest + data).split(b"\n")
        yield from lines
    if rest:
        yield rest


def manifest_batches(text: str, block_rows: int) -> Iterator[pa.Table]:
    """A manifest's rows (``path`` and the optional columns, as text), ``block_rows`` at a time, streamed from the
    file: never the whole manifest in memory. Read here rather than by Ray's readers: its JSON reader goes through
    pandas (an accession "00123" would become 123, a missing report NaN), its Parquet reader lists files in a task
    of a whole CPU, which the actors may hold for the whole run, and a manifest read as one block went to one actor."""
    loc = locate(text)
    suffix = _suffix(loc.path)
    if suffix == ".parquet":
        with loc.fs.open_input_file(loc.path) as fh:
            pf = pq.ParquetFile(fh)
            present = [c for c in ("path", *OPTIONAL_COLUMNS) if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=block_rows, columns=present):
                yield pa.Table.from_batches([batch])
    elif suffix == ".jsonl":
        with loc.fs.open_input_stream(loc.path) as stream:
            records: list[dict[str, Any]] = []
            for line in _lines(stream):
                if line.strip():
                    records.append(json.loads(line))
                if len(records) == block_rows:
                    yield _records_table(records)
                    records = []
            if records:
                yield _records_table(records)
    else:  # every column as text: an accession "00123" must not become the number 123
        text_columns = {c: pa.string() for c in ("path", *OPTIONAL_COLUMNS)}
        with loc.fs.open_input_stream(loc.path) as stream:
            reader = pacsv.open_csv(stream, convert_options=pacsv.ConvertOptions(column_types=text_columns))
            for batch in reader:
                table = pa.Table.from_batches([batch])
                for i in range(0, table.num_rows, block_rows):
                    yield table.slice(i, block_rows)


@dataclass(frozen=True)
class Sources:
    """The SOURCE arguments sorted out (checked before Ray starts): image files (folders listed), manifests."""

    files: list[str]
    manifests: list[str]


def sort_sources(sources: list[str]) -> Sources:
    """Each SOURCE as files or a manifest; :class:`SourceError` for one that is not there, a manifest without a
    ``path`` column, or no inputs at all: said before any cluster is started."""
    files: list[str] = []
    manifests: list[str] = []
    for text in sources:
        loc = locate(text)
        if loc.fs.get_file_info(loc.path).type == pafs.FileType.NotFound:
            raise SourceError(f"{text}: no such file or folder")
        if is_dir(loc):
            files += list_folder(loc)
        elif is_manifest(text):
            columns = manifest_columns(loc)
            if "path" not in columns:
                raise SourceError(f"{text}: a manifest needs a 'path' column (it has: {', '.join(columns)})")
            manifests.append(text)
        else:
            files.append(text)
    if not files and not manifests:
        raise SourceError("no inputs: the folders hold no PNG, JPEG or DICOM files")
    return Sources(files, manifests)


def input_dataset(ray: ModuleType, sources: Sources, block_rows: int, workers: int = 1) -> tuple[Any, int]:
    """One Ray dataset of every input row in blocks of at most ``block_rows``, and how many rows there are (for the
    progress bar's ETA). Each block is put into Ray's object store as it is read, so the driver holds one block at a
    time and every block is a unit an idle actor can take (one big block would keep every other actor idle; Ray's own
    readers were no help here: see :func:`manifest_batches`). Listed files are cut into at least ``workers`` blocks,
    so that a folder of a few films keeps every worker busy too."""
    refs, total = [], 0
    files = sources.files
    block_rows = file_block_rows(len(files), block_rows, workers)
    for i in range(0, len(files), block_rows):
        block = normalise(_records_table([{"path": p} for p in files[i : i + block_rows]]), "")
        refs.append(ray.put(block))
        total += block.num_rows
    for text in sources.manifests:
        root = manifest_root(text)
        for table in manifest_batches(text, block_rows):
            block = normalise(table, root)
            refs.append(ray.put(block))
            total += block.num_rows
    if not refs:
        raise SourceError("no inputs: the manifests list no paths")
    return ray.data.from_arrow_refs(refs), total


def file_block_rows(n_files: int, block_rows: int, workers: int) -> int:
    """Rows per block for ``n_files`` listed files: ``block_rows``, or fewer when that would leave a worker idle."""
    return max(1, min(block_rows, -(-n_files // max(1, workers))))


def resolve(path: str, root: str | None) -> str:
    """Where a row's file is: ``path`` itself when absolute, a URI or without a root, else under ``root``."""
    if not root or is_uri(path) or path.startswith("/"):
        return path
    return posixpath.join(root, path) if is_uri(root) else _join_local(root, path)
