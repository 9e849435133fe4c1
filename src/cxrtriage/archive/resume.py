"""``--resume``: which inputs a run (killed or finished) already wrote. An input is done when a complete part file
holds a row with its ``path`` (as given) and its content's ``sha256``: a file replaced since (same path, other
content) is triaged again, and a row without a hash (the file could not be read) is retried. Only complete part
files count: a killed run's hidden temporary file is no part (:mod:`cxrtriage.archive.storage`), and its inputs are
triaged again.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from cxrtriage.archive.storage import Location, part_files


def key(path: str, sha256: str) -> str:
    """The identity of a finished input (path as given, content hash)."""
    return f"{sha256}:{path}"


def done_keys(out: Location) -> frozenset[str]:
    """The keys of every input with a hashed row in the output's part files, read two columns at a time (the
    predictions themselves are never loaded). Shipped to every actor: about 150 bytes an input."""
    found: set[str] = set()
    for part in part_files(out):
        with out.fs.open_input_file(part) as fh:
            table = pq.read_table(fh, columns=["path", "sha256"])
        found.update(
            key(p, h) for p, h in zip(table.column("path").to_pylist(), table.column("sha256").to_pylist()) if h
        )
    return frozenset(found)
