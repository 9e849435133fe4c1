"""Settings of the web service (``cxrtriage serve``), read from ``CXRTRIAGE_*`` environment variables.

Kept apart from :mod:`cxrtriage.serve.app` so that the CLI can read host and port without importing FastAPI.
Needs the ``[demo]`` extra (pydantic-settings).

| variable | default | meaning |
|---|---|---|
| ``CXRTRIAGE_HOST`` | ``127.0.0.1`` (the Docker image sets ``0.0.0.0``) | interface ``cxrtriage serve`` listens on |
| ``CXRTRIAGE_PORT`` | ``7860`` | TCP port |
| ``CXRTRIAGE_CROPS_DIR`` | ``<repo>/demo_app/static/crops`` in a source checkout, else ``<system temp>/cxrtriage-crops`` | where crop thumbnails are written and served from (``/static/crops``) |
| ``CXRTRIAGE_MAX_UPLOAD_MB`` | ``32`` | request body limit in MiB; larger bodies get 413 before they are read |
| ``CXRTRIAGE_MAX_CONCURRENT`` | ``2`` | inferences running at the same time (each in a worker thread) |
| ``CXRTRIAGE_BODY_TIMEOUT_S`` | ``10`` | a request body that sends nothing for this long gets 408 (slow or stuck clients) |
| ``CXRTRIAGE_HEADER_TIMEOUT_S`` | ``10`` | a connection whose request line and headers are not complete this long after it opened (or after its last response) gets 408 and is closed |
| ``CXRTRIAGE_SHUTDOWN_TIMEOUT_S`` | ``5`` | after SIGTERM, requests still running after this long are cancelled and the process exits |
| ``CXRTRIAGE_MAX_QUEUE`` | ``8`` | requests allowed to wait for a slot; beyond that 429 with ``Retry-After`` |
| ``CXRTRIAGE_MAX_PRIOR_REPORT_CHARS`` | ``20000`` | longest accepted ``prior_report`` form field; longer gets 422 |
| ``CXRTRIAGE_CROPS_MAX_FILES`` | ``500`` | thumbnails kept; the oldest beyond this are deleted after each prediction |
| ``CXRTRIAGE_CROPS_MAX_AGE_S`` | ``3600`` | thumbnails older than this (seconds) are deleted |
| ``CXRTRIAGE_CROPS_MIN_AGE_S`` | ``300`` | a thumbnail named in a response is kept at least this long, whatever the load (the count limit waits) |
| ``CXRTRIAGE_CROPS_MAX_MB`` | ``200`` | disk bound of the crops directory: beyond it the oldest go first, even younger than the minimum age |
| ``CXRTRIAGE_BACKEND`` | ``bundled`` | model backend (same variable as the core package) |
| ``CXRTRIAGE_MODEL_DIR`` | unset: the bundled model | model bundle directory (same variable as the core package) |
| ``CXRTRIAGE_DATA_DIR`` | unset: ``cxrtriage.config.data_dir()`` | data directory the UI takes example images from |
| ``CXRTRIAGE_WARMUP`` | ``true`` | run one blank inference and load medspaCy before reporting ready |
| ``CXRTRIAGE_UI`` | ``true`` | mount the Gradio UI at ``/ui`` when ``cxrtriage.serve.webui`` and gradio are available |
| ``CXRTRIAGE_LATENCY_WINDOW`` | ``200`` | number of recent inferences the median / p95 latency in ``/status`` is computed over |

Empty variables are ignored (treated as unset).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxrtriage import config

DEFAULT_HEADER_TIMEOUT_S = 10.0


class ServerSettings(BaseSettings):
    """Every knob of the service; see the module docstring for the environment variables."""

    model_config = SettingsConfigDict(env_prefix="CXRTRIAGE_", extra="ignore", env_ignore_empty=True,
                                      protected_namespaces=("settings_",))

    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=0, le=65535)
    crops_dir: Path = Field(default_factory=config.default_crops_dir)
    max_upload_mb: float = Field(default=32.0, gt=0)
    max_concurrent: int = Field(default=2, ge=1)
    max_queue: int = Field(default=8, ge=0)
    body_timeout_s: float = Field(default=10.0, gt=0)
    header_timeout_s: float = Field(default=DEFAULT_HEADER_TIMEOUT_S, gt=0)  # read by cxrtriage.serve.protocol
    shutdown_timeout_s: float = Field(default=5.0, gt=0)
    max_prior_report_chars: int = Field(default=20_000, ge=1)
    crops_max_files: int = Field(default=500, ge=0)
    crops_max_age_s: float = Field(default=3600.0, gt=0)
    crops_min_age_s: float = Field(default=300.0, ge=0)
    crops_max_mb: float = Field(default=200.0, gt=0)
    backend: str = "bundled"
    model_dir: Path | None = None
    data_dir: Path | None = None
    warmup: bool = True
    ui: bool = True
    latency_window: int = Field(default=200, ge=1)
    #: the reading worklist (SQLite; GET /worklist) and the wait after which any study rises to its top
    worklist_path: Path = Field(default_factory=config.default_worklist_path)
    worklist_max_wait_min: float = Field(default=60.0, gt=0)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
