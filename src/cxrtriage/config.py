"""Settings read from environment variables, with documented defaults.

| variable | default | meaning |
|---|---|---|
| CXRTRIAGE_DATA_DIR | ``../shared/data`` relative to the working directory or repo, if it exists | public CXR data (training, evaluation, examples) |
| CXRTRIAGE_CROPS_DIR | ``demo_app/static/crops`` in a source checkout, else ``<system temp>/cxrtriage-crops`` | where evidence crop thumbnails are written (and served by the demo) |
| CXRTRIAGE_MAX_PIXELS | ``36000000`` (6000 x 6000) | decoded-image pixel limit, checked from the header (decompression-bomb guard and memory bound): larger images are refused with the limit in the message |
| CXRTRIAGE_MAX_WORKING_PIXELS | ``4194304`` (2048 x 2048) | larger images are decoded at a reduced resolution (by a whole factor) to bound memory: every model looks at 896 px or less and thumbnails are 224 px; boxes are still given in original pixels |
| CXRTRIAGE_MODEL_DIR | the bundled ``cxrtriage/weights`` | directory holding ``model.onnx`` + ``model.json`` |
| CXRTRIAGE_BACKEND | ``bundled`` | model configuration: ``bundled``, ``medsiglip``, ``medgemma``, ``medgemma-gguf`` |
| CXRTRIAGE_MODEL | unset (the backend's default) | HAI-DEF model: hub id in the local cache, directory, ONNX bundle or GGUF |
| CXRTRIAGE_CLASSIFIER | unset | a MedSigLIP ``probe.json``: the classifier of ``medsiglip`` (and of ``medgemma`` instead of the bundled CNN) |
| CXRTRIAGE_MEDSIGLIP_MODEL | ``google/medsiglip-448`` | MedSigLIP checkpoint when ``medgemma`` uses a probe classifier |
| CXRTRIAGE_DEVICE | unset (automatic) | torch device of the HAI-DEF backends |
| CXRTRIAGE_4BIT | unset | ``1``: load MedGemma as bitsandbytes NF4 (CUDA only) |
| CXRTRIAGE_THREADS | unset (runtime default) | intra-op threads of onnxruntime / llama.cpp |
| CXRTRIAGE_MMPROJ | unset | MedGemma's vision projector when CXRTRIAGE_MODEL names one text ``.gguf`` file |
| CXRTRIAGE_GGUF_CONVERTER | unset | path of llama.cpp's ``convert_hf_to_gguf.py`` (offline GGUF conversion) |

This module is the one place the core package reads the environment (the service's own knobs are
:class:`cxrtriage.serve.settings.ServerSettings`); only the CLI entry point writes to it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # the source checkout (meaningful only when running from one)
BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MAX_PIXELS = 36_000_000
DEFAULT_MAX_WORKING_PIXELS = 2048 * 2048


def data_dir(required: bool = False) -> Path | None:
    """Return the data directory, or None when it is not configured and absent."""
    env = os.environ.get("CXRTRIAGE_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():  # a data directory that is not there is no data directory
            if required:
                raise FileNotFoundError(f"CXRTRIAGE_DATA_DIR={env} is not a directory")
            return None
        return path
    for candidate in (Path.cwd() / "../shared/data", REPO_ROOT / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        raise FileNotFoundError(
            "No data directory: set CXRTRIAGE_DATA_DIR to the folder holding nih/, kermany/, ... "
            "(see prototype/data_scripts/download_datasets.sh)"
        )
    return None


def default_crops_dir() -> Path:
    """``demo_app/static/crops`` in a source checkout (git-ignored there, served by the demo), else a folder in
    the system temp dir (installed wheels: their parent folders are site-packages). The one default, for the CLI,
    the pipeline and the service alike."""
    if (REPO_ROOT / "demo_app").is_dir() and (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "demo_app" / "static" / "crops"
    return Path(tempfile.gettempdir()) / "cxrtriage-crops"


def default_worklist_path() -> Path:
    """The service's worklist database: ``$XDG_STATE_HOME/cxrtriage/worklist.sqlite`` (``~/.local/state`` when unset),
    a per-user folder that survives restarts (``CXRTRIAGE_WORKLIST_PATH`` overrides it)."""
    state = os.environ.get("XDG_STATE_HOME")
    return (Path(state) if state else Path.home() / ".local" / "state") / "cxrtriage" / "worklist.sqlite"


def crops_dir() -> Path:
    """Directory for crop thumbnails (``CXRTRIAGE_CROPS_DIR``, else :func:`default_crops_dir`); created on first use."""
    env = os.environ.get("CXRTRIAGE_CROPS_DIR")
    path = Path(env).expanduser() if env else default_crops_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_working_pixels() -> int:
    """Pixel count above which an image is decoded at a reduced resolution (``CXRTRIAGE_MAX_WORKING_PIXELS``)."""
    return _positive_int("CXRTRIAGE_MAX_WORKING_PIXELS", DEFAULT_MAX_WORKING_PIXELS)


def _positive_int(name: str, default: int) -> int:
    env = os.environ.get(name)
    if not env:
        return default
    try:
        value = int(env)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {env!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


def max_pixels() -> int:
    """Decoded-image pixel limit (``CXRTRIAGE_MAX_PIXELS``): larger images are refused from their header."""
    return _positive_int("CXRTRIAGE_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def model_dir() -> Path:
    env = os.environ.get("CXRTRIAGE_MODEL_DIR")
    return Path(env).expanduser() if env else BUNDLED_WEIGHTS_DIR


def segmenter_dir() -> Path:
    """Where ``segment.onnx`` / ``segment.json`` live: ``CXRTRIAGE_SEGMENTER_DIR``, else the bundled weights (the
    segmentation ships with the package whatever classifier ``CXRTRIAGE_MODEL_DIR`` selects)."""
    env = os.environ.get("CXRTRIAGE_SEGMENTER_DIR")
    return Path(env).expanduser() if env else BUNDLED_WEIGHTS_DIR


def _text(name: str) -> str | None:
    value = (os.environ.get(name) or "").strip()
    return value or None


def backend_name() -> str:
    """``CXRTRIAGE_BACKEND``, else ``bundled``."""
    return _text("CXRTRIAGE_BACKEND") or "bundled"


def model_ref() -> str | None:
    """``CXRTRIAGE_MODEL``: the HAI-DEF model (hub id, directory, ONNX bundle or GGUF), or None."""
    return _text("CXRTRIAGE_MODEL")


def classifier_probe() -> str | None:
    """``CXRTRIAGE_CLASSIFIER``: a MedSigLIP probe file, or None (``bundled`` counts as None)."""
    value = _text("CXRTRIAGE_CLASSIFIER")
    return None if value in (None, "bundled") else value


def medsiglip_model() -> str | None:
    return _text("CXRTRIAGE_MEDSIGLIP_MODEL")


def device() -> str | None:
    return _text("CXRTRIAGE_DEVICE")


def four_bit() -> bool:
    return (_text("CXRTRIAGE_4BIT") or "").lower() in ("1", "true", "yes")


def threads() -> int:
    """``CXRTRIAGE_THREADS`` (0 = the runtime's default)."""
    value = _text("CXRTRIAGE_THREADS")
    if value is None:
        return 0
    try:
        return max(0, int(value))
    except ValueError as exc:
        raise ValueError(f"CXRTRIAGE_THREADS must be an integer, got {value!r}") from exc


def mmproj() -> str | None:
    return _text("CXRTRIAGE_MMPROJ")


def gguf_converter() -> str | None:
    return _text("CXRTRIAGE_GGUF_CONVERTER")


def header_timeout_s(default: float) -> float:
    """``CXRTRIAGE_HEADER_TIMEOUT_S`` (seconds, > 0), else ``default`` (read per connection by serve.protocol)."""
    try:
        value = float(_text("CXRTRIAGE_HEADER_TIMEOUT_S") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def worklist_path() -> Path:
    """``CXRTRIAGE_WORKLIST_PATH`` or :func:`default_worklist_path`: the one worklist the service, its UI and the
    DICOM node share."""
    text = _text("CXRTRIAGE_WORKLIST_PATH")
    return Path(text) if text else default_worklist_path()
