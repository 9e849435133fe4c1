"""Settings read from environment variables, with documented defaults.

| variable | default | meaning |
|---|---|---|
| CXRTRIAGE_DATA_DIR | ``../shared/data`` relative to the working directory or repo, if it exists | public CXR data (training, evaluation, examples) |
| CXRTRIAGE_CROPS_DIR | ``<system temp>/cxrtriage-crops`` | where evidence crop thumbnails are written |
| CXRTRIAGE_MAX_PIXELS | ``50000000`` | decoded-image pixel limit (decompression-bomb guard) |
| CXRTRIAGE_MODEL_DIR | the bundled ``cxrtriage/weights`` | directory holding ``model.onnx`` + ``model.json`` |
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MAX_PIXELS = 50_000_000


def data_dir(required: bool = False) -> Path | None:
    """Return the data directory, or None when it is not configured and absent."""
    env = os.environ.get("CXRTRIAGE_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if required and not path.is_dir():
            raise FileNotFoundError(f"CXRTRIAGE_DATA_DIR={env} is not a directory")
        return path
    for candidate in (Path.cwd() / "../shared/data", _REPO_ROOT / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        raise FileNotFoundError(
            "No data directory: set CXRTRIAGE_DATA_DIR to the folder holding nih/, kermany/, ... "
            "(see prototype/data_scripts/download_datasets.sh)"
        )
    return None


def crops_dir() -> Path:
    """Directory for crop thumbnails; created on first use."""
    env = os.environ.get("CXRTRIAGE_CROPS_DIR")
    path = Path(env).expanduser() if env else Path(tempfile.gettempdir()) / "cxrtriage-crops"
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_pixels() -> int:
    env = os.environ.get("CXRTRIAGE_MAX_PIXELS")
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(env)
    except ValueError as exc:
        raise ValueError(f"CXRTRIAGE_MAX_PIXELS must be an integer, got {env!r}") from exc
    if value <= 0:
        raise ValueError("CXRTRIAGE_MAX_PIXELS must be positive")
    return value


def model_dir() -> Path:
    env = os.environ.get("CXRTRIAGE_MODEL_DIR")
    return Path(env).expanduser() if env else BUNDLED_WEIGHTS_DIR
