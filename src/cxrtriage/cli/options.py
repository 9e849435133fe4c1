"""Option rules shared by ``cxrtriage`` and ``cxrtriage hai-def`` (kept apart so neither imports the other)."""

from __future__ import annotations

from pathlib import Path

from cxrtriage import config


def resolve_data_dir(arg: str | None) -> Path:
    """``--data-dir``, else ``CXRTRIAGE_DATA_DIR``, else ``../shared/data``; FileNotFoundError with what to do."""
    if arg:
        return Path(arg)
    found = config.data_dir()
    if found is None:
        raise FileNotFoundError("no data directory; pass --data-dir or set CXRTRIAGE_DATA_DIR "
                                "(see prototype/data_scripts/download_datasets.sh)")
    return found
