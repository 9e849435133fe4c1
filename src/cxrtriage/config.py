"""The one configuration: :class:`Settings`, read from ``CXRTRIAGE_*`` environment variables.

Every entry point builds one ``Settings`` (from the environment, with its own options on top) and passes it down:
the CLI (``cxrtriage ...``), the web service (:func:`cxrtriage.serve.app.create_app`), the UI run alone, the DICOM
node and the Orthanc poller; :meth:`cxrtriage.pipeline.Triage.from_config` builds the engine from it. The library's
own entry points (``cxrtriage.predict()``, ``Triage()``, ``load_stages()``, ``load_image()`` when given no settings
or limits) build ``Settings()`` from the environment at that call. Nothing else reads these variables, and nothing
writes them to pass an option on. Empty variables count as unset; a bad value raises
:class:`cxrtriage.errors.ConfigurationError` naming the variable.

| variable | default | meaning |
|---|---|---|
| ``CXRTRIAGE_DATA_DIR`` | ``../shared/data`` beside the working directory or the checkout, when it exists | public CXR data: training, evaluation, the examples of the demo and the UI |
| ``CXRTRIAGE_CROPS_DIR`` | ``demo_app/static/crops`` in a source checkout, else ``<system temp>/cxrtriage-crops`` | where evidence crop thumbnails are written (and served from, ``/static/crops``) |
| ``CXRTRIAGE_MAX_PIXELS`` | ``36000000`` (6000 x 6000) | decoded-image pixel limit, checked from the header (decompression-bomb guard and memory bound): larger images are refused with the limit in the message |
| ``CXRTRIAGE_MAX_WORKING_PIXELS`` | ``4194304`` (2048 x 2048) | larger images are decoded at a reduced resolution (a whole factor) to bound memory; boxes are still given in original pixels |
| ``CXRTRIAGE_BACKEND`` | ``bundled`` | model configuration: ``bundled``, ``medsiglip``, ``medgemma``, ``medgemma-gguf`` |
| ``CXRTRIAGE_MODEL_DIR`` | the bundled ``cxrtriage/weights`` | model bundle directory (``model.onnx`` + ``model.json`` + ``index.npz``): the bundled classifier's (also the classifier ``medgemma`` wraps), or a MedSigLIP ONNX bundle for ``medsiglip`` when ``CXRTRIAGE_MODEL`` is unset |
| ``CXRTRIAGE_MODEL`` | unset (the backend's default) | HAI-DEF model of ``medsiglip``, ``medgemma``, ``medgemma-gguf``: hub id in the local cache, directory, MedSigLIP ONNX bundle or GGUF |
| ``CXRTRIAGE_CLASSIFIER`` | unset (``bundled`` means unset) | a MedSigLIP ``probe.json``: the classifier of ``medsiglip`` (and of ``medgemma`` instead of the bundled CNN) |
| ``CXRTRIAGE_MEDSIGLIP_MODEL`` | unset (``google/medsiglip-448``) | MedSigLIP checkpoint when ``medgemma`` uses a probe classifier |
| ``CXRTRIAGE_SITE`` | unset (the bundled operating point, not validated at this site) | a site profile folder written by ``cxrtriage commission`` (``--site``): the site's calibration, threshold and review band for the loaded model; a profile fitted for another model is refused |
| ``CXRTRIAGE_SEGMENTER_DIR`` | the bundled ``cxrtriage/weights`` | folder with the lung-and-heart segmentation (``segment.onnx`` + ``segment.json``) |
| ``CXRTRIAGE_DEVICE`` | unset (automatic) | torch device of the HAI-DEF backends |
| ``CXRTRIAGE_4BIT`` | ``false`` | ``true``/``1``: load MedGemma as bitsandbytes NF4 (CUDA only) |
| ``CXRTRIAGE_THREADS`` | ``0`` (the runtime's default) | intra-op threads of onnxruntime / llama.cpp |
| ``CXRTRIAGE_MMPROJ`` | unset | MedGemma's vision projector when ``CXRTRIAGE_MODEL`` names one text ``.gguf`` file |
| ``CXRTRIAGE_GGUF_CONVERTER`` | unset | path of llama.cpp's ``convert_hf_to_gguf.py`` (offline GGUF conversion) |
| ``CXRTRIAGE_WORKLIST_PATH`` | ``$XDG_STATE_HOME/cxrtriage/worklist.sqlite`` (``~/.local/state/...``) | the reading worklist (SQLite) shared by the service, its UI and the DICOM node; survives restarts. Its folder is the service's state folder: the API keys (``keys.json``) live beside it |
| ``CXRTRIAGE_AUDIT_PATH`` | ``audit.jsonl`` beside the worklist (``$XDG_STATE_HOME/cxrtriage/audit.jsonl``) | the service's audit trail: one hash-chained JSON record per access (``cxrtriage audit verify`` / ``export``); created owner-only |
| ``CXRTRIAGE_MONITOR_PATH`` | ``monitor.jsonl`` beside the worklist (``$XDG_STATE_HOME/cxrtriage/monitor.jsonl``) | drift monitoring: one record per result and refusal of the service and the DICOM node (score, label, review flag, similarity, image statistics; no image, identifier or file name), created owner-only; read by ``cxrtriage monitor`` and the UI's Monitoring tab |
| ``CXRTRIAGE_MONITOR_MAX_MB`` | ``64`` | disk bound of the monitoring records: the file is rotated at a quarter of this and three rotated files are kept (the oldest records go first; the first results of use are kept apart as the reference) |
| ``CXRTRIAGE_MONITOR_REFERENCE_N`` | ``200`` | without a site profile, the first this many results of use are the monitor's reference (kept in ``monitor-reference.jsonl``) |
| ``CXRTRIAGE_MONITOR_WINDOW`` | ``7d`` | the recent window the monitor compares with the reference in ``/metrics`` and first in the UI's Monitoring tab (a number and ``w``, ``d``, ``h`` or ``m``) |
| ``CXRTRIAGE_WORKLIST_MAX_WAIT_MIN`` | ``60`` | a study waiting longer than this rises to the top of its group on the worklist (urgent or routine; a routine study never rises above an urgent one) |
| ``CXRTRIAGE_HOST`` | ``127.0.0.1`` (the Docker image sets ``0.0.0.0``) | interface ``cxrtriage serve`` listens on |
| ``CXRTRIAGE_PORT`` | ``7860`` | TCP port of ``cxrtriage serve`` |
| ``CXRTRIAGE_ALLOWED_HOSTS`` | ``localhost,127.0.0.1,[::1]`` plus ``CXRTRIAGE_HOST`` when it is a name | host names the service answers to, comma-separated (``*.example.org`` matches its subdomains); an IPv6 address in brackets; a request with another ``Host:`` header gets 400 (DNS rebinding). ``*`` allows any host and is unsafe outside a closed network |
| ``CXRTRIAGE_OIDC_ISSUER`` | unset | single sign-on: the identity provider's issuer (``iss`` of its tokens); set with the audience and the JWKS, or not at all |
| ``CXRTRIAGE_OIDC_AUDIENCE`` | unset | single sign-on: the audience (``aud``) a token must name, the client id registered for cxrtriage |
| ``CXRTRIAGE_OIDC_JWKS`` | unset | single sign-on: the provider's signing keys, a JWKS file path or an ``https://`` URL (fetched and cached) |
| ``CXRTRIAGE_OIDC_ROLE_CLAIM`` | ``roles`` | the token claim that names the role (``submitter``, ``reader``, ``admin``; a string or a list; the highest wins; a dotted path reaches a nested claim, e.g. ``realm_access.roles``) |
| ``CXRTRIAGE_AUTH_FAILURES_PER_MIN`` | ``10`` | failed authentications allowed per client address per minute; beyond that 429 with ``Retry-After`` |
| ``CXRTRIAGE_SESSION_IDLE_MIN`` | ``30`` | the web UI's sign-in: a session with no activity for this many minutes ends (the person signs in again) |
| ``CXRTRIAGE_SESSION_MAX_HOURS`` | ``12`` | the web UI's sign-in: a session ends this many hours after signing in, active or not |
| ``CXRTRIAGE_SESSION_SECRET`` | unset (32 random bytes in ``session.secret`` in the state folder, made ``0600`` on first sign-in) | the secret that signs the UI's session cookies (at least 32 characters); every worker must have the same; changing it signs everyone out |
| ``CXRTRIAGE_SESSION_COOKIE_SECURE`` | ``auto`` | the session cookie's ``Secure`` flag: ``auto`` sets it when the request came over HTTPS (directly, or per a trusted proxy's ``X-Forwarded-Proto``), ``true`` always (a TLS-terminating proxy that does not say so), ``false`` never |
| ``CXRTRIAGE_SSL_CERTFILE`` | unset | TLS certificate (PEM) of ``cxrtriage serve``: with the key, the service speaks HTTPS (``--ssl-certfile``) |
| ``CXRTRIAGE_SSL_KEYFILE`` | unset | the TLS certificate's private key (PEM; ``--ssl-keyfile``) |
| ``CXRTRIAGE_MAX_UPLOAD_MB`` | ``32`` | request body limit in MiB; larger bodies get 413 before they are read |
| ``CXRTRIAGE_MAX_CONCURRENT`` | ``2`` | inferences running at the same time (each in a worker thread) |
| ``CXRTRIAGE_MAX_QUEUE`` | ``8`` | requests allowed to wait for a slot; beyond that 429 with ``Retry-After`` |
| ``CXRTRIAGE_BODY_TIMEOUT_S`` | ``10`` | a request body that sends nothing for this long gets 408 (slow or stuck clients) |
| ``CXRTRIAGE_HEADER_TIMEOUT_S`` | ``10`` | a connection whose request line and headers are not complete this long after it opened (or after its last response) gets 408 and is closed |
| ``CXRTRIAGE_SHUTDOWN_TIMEOUT_S`` | ``5`` | after SIGTERM, requests still running after this long are cancelled and the process exits |
| ``CXRTRIAGE_MAX_PRIOR_REPORT_CHARS`` | ``20000`` | longest accepted ``prior_report`` form field; longer gets 422 |
| ``CXRTRIAGE_CROPS_MAX_FILES`` | ``500`` | thumbnails kept; the oldest beyond this are deleted after each prediction |
| ``CXRTRIAGE_CROPS_MAX_AGE_S`` | ``3600`` | thumbnails older than this (seconds) are deleted |
| ``CXRTRIAGE_CROPS_MIN_AGE_S`` | ``300`` | a thumbnail named in a response is kept at least this long, whatever the load (the count limit waits) |
| ``CXRTRIAGE_CROPS_MAX_MB`` | ``200`` | disk bound of the crops directory: beyond it the oldest go first, even younger than the minimum age |
| ``CXRTRIAGE_WARMUP`` | ``true`` | the service runs one blank inference and loads medspaCy before reporting ready |
| ``CXRTRIAGE_UI`` | ``true`` | the service mounts the Gradio UI at ``/ui`` when gradio is installed |
| ``CXRTRIAGE_LATENCY_WINDOW`` | ``200`` | number of recent inferences the median / p95 latency in ``/status`` is computed over |

``CXRTRIAGE_WORKERS`` (worker processes) is read by the container's ``entrypoint.sh`` only, which passes it to
``cxrtriage serve --workers``.
"""  # noqa: E501 - Markdown table rows stay whole: variables_table() copies them into README.md

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxrtriage.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]  # the source checkout (meaningful only when running from one)
BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MAX_PIXELS = 36_000_000
DEFAULT_MAX_WORKING_PIXELS = 2048 * 2048
DEFAULT_HEADER_TIMEOUT_S = 10.0
ENV_PREFIX = "CXRTRIAGE_"


def repo_relative(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the source checkout when it lies inside one, else as given: what logs and traces that
    get committed print, so they hold no machine's folder names (``/work/main/src/...``)."""
    given = Path(path)
    full = given.resolve()
    inside = (REPO_ROOT / "pyproject.toml").is_file() and full.is_relative_to(REPO_ROOT)
    return full.relative_to(REPO_ROOT).as_posix() if inside else str(given)


def default_crops_dir() -> Path:
    """``demo_app/static/crops`` in a source checkout (git-ignored there, served by the demo), else a folder in
    the system temp dir (installed wheels: their parent folders are site-packages). The one default, for the CLI,
    the pipeline and the service alike."""
    if (REPO_ROOT / "demo_app").is_dir() and (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "demo_app" / "static" / "crops"
    return Path(tempfile.gettempdir()) / "cxrtriage-crops"


def default_worklist_path() -> Path:
    """The worklist database: ``$XDG_STATE_HOME/cxrtriage/worklist.sqlite`` (``~/.local/state`` when unset), a
    per-user folder that survives restarts. ``XDG_STATE_HOME`` is the desktop standard's variable, not ours, so it
    is read here, when no ``CXRTRIAGE_WORKLIST_PATH`` is given."""
    import os

    state = os.environ.get("XDG_STATE_HOME")
    return (Path(state) if state else Path.home() / ".local" / "state") / "cxrtriage" / "worklist.sqlite"


def variables_table() -> str:
    """The table of variables above as Markdown (README.md's configuration section is this table)."""
    lines = (__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variable |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return "\n".join(lines[start:end]).replace("``", "`")


class Settings(BaseSettings):
    """Every knob of cxrtriage (the variables of the module docstring). Frozen and hashable: one value, passed down
    from the entry point, that may key a cache of engines (:func:`cxrtriage.pipeline.get_triage`).

    ``Settings(**values)`` takes the given values over the environment's (the CLI's options);
    :meth:`with_model` names another backend or model. Building one raises :class:`ConfigurationError` naming
    each bad variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
        populate_by_name=True,
        protected_namespaces=("settings_",),
    )

    # -- data and images
    data_dir: Path | None = None
    crops_dir: Path = Field(default_factory=default_crops_dir)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)
    max_working_pixels: int = Field(default=DEFAULT_MAX_WORKING_PIXELS, gt=0)
    # -- the engine: backend, models, runtimes
    backend: str = "bundled"
    model_dir: Path | None = None  # None: the bundled model
    model: str | None = None  # None: the HAI-DEF backend's default
    classifier: str | None = None
    medsiglip_model: str | None = None
    segmenter_dir: Path = BUNDLED_WEIGHTS_DIR
    site_dir: Path | None = Field(default=None, validation_alias="CXRTRIAGE_SITE")  # None: the bundled operating point
    device: str | None = None
    four_bit: bool = Field(default=False, validation_alias="CXRTRIAGE_4BIT")
    threads: int = Field(default=0, ge=0)
    mmproj: str | None = None
    gguf_converter: str | None = None
    # -- the reading worklist
    worklist_path: Path = Field(default_factory=default_worklist_path)
    worklist_max_wait_min: float = Field(default=60.0, gt=0)
    audit_path: Path | None = None  # None: audit.jsonl beside the worklist (the `audit_file` property)
    # -- drift monitoring (cxrtriage.monitoring)
    monitor_path: Path | None = None  # None: monitor.jsonl beside the worklist (the `monitor_file` property)
    monitor_max_mb: float = Field(default=64.0, gt=0)
    monitor_reference_n: int = Field(default=200, ge=10)
    monitor_window: str = Field(default="7d", pattern=r"^\s*\d+(\.\d+)?\s*[wdhm]\s*$")
    # -- the web service
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=0, le=65535)
    max_upload_mb: float = Field(default=32.0, gt=0)
    max_concurrent: int = Field(default=2, ge=1)
    max_queue: int = Field(default=8, ge=0)
    body_timeout_s: float = Field(default=10.0, gt=0)
    header_timeout_s: float = Field(default=DEFAULT_HEADER_TIMEOUT_S, gt=0)
    shutdown_timeout_s: float = Field(default=5.0, gt=0)
    max_prior_report_chars: int = Field(default=20_000, ge=1)
    crops_max_files: int = Field(default=500, ge=0)
    crops_max_age_s: float = Field(default=3600.0, gt=0)
    crops_min_age_s: float = Field(default=300.0, ge=0)
    crops_max_mb: float = Field(default=200.0, gt=0)
    warmup: bool = True
    ui: bool = True
    latency_window: int = Field(default=200, ge=1)
    # -- who may use the service (cxrtriage.security)
    allowed_hosts: str | None = None  # None: loopback names plus the configured host (allowed_host_list)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks: str | None = None
    oidc_role_claim: str = "roles"
    auth_failures_per_min: int = Field(default=10, ge=1)
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # -- the web UI's sign-in (cxrtriage.security.sessions, serve/login.py)
    session_idle_min: float = Field(default=30.0, gt=0)
    session_max_hours: float = Field(default=12.0, gt=0)
    session_secret: SecretStr | None = None  # never printed: repr and str show asterisks
    session_cookie_secure: str = "auto"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(describe_errors(exc)) from None

    @field_validator(
        "data_dir",
        "crops_dir",
        "model_dir",
        "segmenter_dir",
        "site_dir",
        "worklist_path",
        "audit_path",
        "monitor_path",
        "ssl_certfile",
        "ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _expand_user(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # empty is unset, for given values as for the environment
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value

    @field_validator(
        "backend",
        "model",
        "classifier",
        "medsiglip_model",
        "device",
        "mmproj",
        "gguf_converter",
        "host",
        "allowed_hosts",
        "oidc_issuer",
        "oidc_audience",
        "oidc_jwks",
        "oidc_role_claim",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator(
        "model",
        "classifier",
        "medsiglip_model",
        "device",
        "mmproj",
        "gguf_converter",
        "allowed_hosts",
        "oidc_issuer",
        "oidc_audience",
        "oidc_jwks",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("session_cookie_secure")
    @classmethod
    def _secure_choice(cls, value: str) -> str:
        choice = value.strip().lower()
        if choice not in ("auto", "true", "false"):
            raise ValueError("use auto, true or false")
        return choice

    @field_validator("session_secret", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value.strip()) < 32:
            if value.strip():  # never echo the value (describe_errors shows the input): say its length only
                raise ValueError(f"at least 32 random characters are needed, {len(value.strip())} given")
            return None
        return value

    @field_validator("classifier")
    @classmethod
    def _bundled_classifier_is_unset(cls, value: str | None) -> str | None:
        return None if value == "bundled" else value

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of a field (``four_bit`` -> ``CXRTRIAGE_4BIT``)."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()

    # -- derived values

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def audit_file(self) -> Path:
        """The audit trail: ``audit_path``, else ``audit.jsonl`` in the worklist's folder (the service's state folder),
        so that moving the worklist moves the audit trail with it."""
        return self.audit_path or self.state_dir / "audit.jsonl"

    @property
    def monitor_file(self) -> Path:
        """The drift monitor's records: ``monitor_path``, else ``monitor.jsonl`` in the service's state folder."""
        return self.monitor_path or self.state_dir / "monitor.jsonl"

    @property
    def state_dir(self) -> Path:
        """The service's state folder: the worklist's folder, where the API keys live too (one setting moves both)."""
        return self.worklist_path.parent

    @property
    def keys_path(self) -> Path:
        """The API keys (salted hashes only): ``keys.json`` in the state folder."""
        return self.state_dir / "keys.json"

    @property
    def allowed_host_list(self) -> list[str]:
        """The host names the service answers to: ``allowed_hosts`` (comma-separated), else the loopback names plus
        ``host`` when it is a name (an address such as ``0.0.0.0`` names no host a client would send)."""
        if self.allowed_hosts:
            return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        import ipaddress

        hosts = ["localhost", "127.0.0.1", "[::1]"]
        try:
            ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            if self.host and self.host.lower() not in hosts:
                hosts.append(self.host.lower())
        return hosts

    @property
    def bundle_dir(self) -> Path:
        """The bundled classifier's directory: ``model_dir``, else the bundled weights."""
        return self.model_dir or BUNDLED_WEIGHTS_DIR

    def model_for(self, backend: str | None = None) -> str | Path | None:
        """What ``backend`` (default: this configuration's) loads; None means that backend's default.

        ``bundled``: ``model_dir``. ``medsiglip``: ``model``, else ``model_dir`` (an exported MedSigLIP ONNX bundle
        is a model directory too, and the service has always taken it from there). ``medgemma``,
        ``medgemma-gguf``: ``model`` only, since their ``model_dir`` is the bundled classifier they wrap."""
        name = backend or self.backend
        if name == "bundled":
            return self.model_dir
        return self.model or (self.model_dir if name == "medsiglip" else None)

    def with_model(self, backend: str | None = None, model: str | Path | None = None) -> Settings:
        """A copy with another ``backend`` and/or ``model`` (``--backend`` / ``--model`` / ``--model-dir``): the
        model is the bundle directory of ``bundled`` (``model_dir``) and the model of a HAI-DEF backend
        (``model``), so one option names the model whatever the backend."""
        name = (backend or self.backend).strip()
        update: dict[str, Any] = {"backend": name}
        if model:
            update.update({"model_dir": Path(model).expanduser()} if name == "bundled" else {"model": str(model)})
        return self.model_copy(update=update)

    def find_data_dir(self, required: bool = False) -> Path | None:
        """The data directory: ``data_dir`` when it is a directory, else ``../shared/data`` beside the working
        directory or the checkout; None (or FileNotFoundError saying what to do, when ``required``) without one."""
        if self.data_dir is not None:
            if self.data_dir.is_dir():
                return self.data_dir
            if required:  # a data directory that is not there is no data directory
                raise FileNotFoundError(f"CXRTRIAGE_DATA_DIR={self.data_dir} is not a directory")
            return None
        for candidate in (Path.cwd() / "../shared/data", REPO_ROOT / "../shared/data"):
            if candidate.is_dir():
                return candidate.resolve()
        if required:
            raise FileNotFoundError(
                "No data directory: set CXRTRIAGE_DATA_DIR to the folder holding nih/, kermany/, ... "
                "(see prototype/data_scripts/download_datasets.sh)"
            )
        return None

    def environment(self) -> dict[str, str]:
        """These settings as ``CXRTRIAGE_*`` variables, for a child process that must run with exactly them (the
        servers ``cxrtriage pacs-demo`` starts): every field that has a value."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                out[self.env_name(name)] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


#: settings whose values are secrets: an error names the variable, never the value
_SECRET_FIELDS = frozenset({"session_secret"})


def describe_errors(exc: ValidationError) -> str:
    """One sentence per bad value, naming its variable: ``CXRTRIAGE_MAX_QUEUE='-1': Input should be ...``."""
    parts = []
    for error in exc.errors():
        where = str(error["loc"][0]) if error.get("loc") else "?"  # a field name, or an alias (CXRTRIAGE_4BIT)
        variable = Settings.env_name(where) if where in Settings.model_fields else where
        shown = "(hidden)" if where in _SECRET_FIELDS else repr(error.get("input"))  # a secret is never echoed
        parts.append(f"{variable}={shown}: {error.get('msg')}")
    return "invalid setting " + "; ".join(parts)
