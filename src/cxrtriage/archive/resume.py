"""``--resume``: which inputs a run (killed or finished) already wrote. An input is done when a complete part file
holds a row with its ``path`` (as given) and its content's ``sha256``: a file replaced since (same path, other
content) is triaged again, and a row without a hash (the file could not be read) is retried. Only complete part
files count: a killed run's hidden temporary file is no part (:mod:`cxrtriage.archive.storage`), and its inputs are
triaged again.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from cxrtriage.archive.storage import Location, part_files
from cxrtriage.config import Settings


def key(path: str, sha256: str) -> str:
    """The identity of a finished input (path as given, content hash)."""
    return f"{sha256}:{path}"


def done_keys(out: Location) -> frozenset[str]:
    """The keys of every input with a hashed row in the output's part files, read two columns at a time (the
    predictions themselves are never loaded). Each actor reads them itself: about 150 bytes an input in its memory."""
    found: set[str] = set()
    for part in part_files(out):
        with out.fs.open_input_file(part) as fh:
            table = pq.read_table(fh, columns=["path", "sha256"])
        found.update(
            key(p, h) for p, h in zip(table.column("path").to_pylist(), table.column("sha256").to_pylist()) if h
        )
    return frozenset(found)


def models_in(out: Location) -> set[str]:
    """The model sha256s the output's rows were triaged with (``--resume`` refuses to mix two models' results)."""
    found: set[str] = set()
    for part in part_files(out):
        with out.fs.open_input_file(part) as fh:
            found.update(m for m in pq.read_table(fh, columns=["model_sha256"]).column("model_sha256").to_pylist() if m)
    return found


def check_same_model(out: Location, settings: Settings, where: str) -> None:
    """FileExistsError (one sentence) when ``--resume`` would add this engine's results to another model's: a
    results file answers for one model, or its summary and any audit of it mean nothing."""
    earlier = models_in(out)
    if not earlier:
        return
    from cxrtriage.pipeline import Triage

    current = Triage.from_config(settings).info.sha256
    if earlier != {current}:
        named = ", ".join(sorted(m[:12] for m in earlier))
        raise FileExistsError(
            f"{where} holds results of model {named}, and this run's model is {current[:12]}: "
            "--resume adds to results of the same model only; choose another --out"
        )
