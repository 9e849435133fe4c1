"""Option rules shared by ``cxrtriage`` and ``cxrtriage hai-def`` (kept apart so neither imports the other)."""

from __future__ import annotations

from pathlib import Path

from cxrtriage import config


def resolve_data_dir(arg: str | None) -> Path:
    """``--data-dir``, else ``CXRTRIAGE_DATA_DIR``, else ``../shared/data``; FileNotFoundError with what to do."""
    if arg:
        return Path(arg)
    found = config.data_dir(required=True)  # FileNotFoundError naming what is wrong and what to do
    assert found is not None
    return found
