"""``model.json`` as one frozen type, :class:`BundleConfig`: the exporters write it and every backend reads it.

Why: the exporter used to build ``model.json`` as a dict while ``backends/bundled.py`` and ``backends/medsiglip.py``
read it with their own lookups and defaults, so a key or a default could drift between the writer and the
readers. Now ``train/export.py``, ``train/recalibrate.py``, the probe fitters and ``hai_def/onnx_export.py`` write
through :meth:`BundleConfig.save` (which validates first), and the backends read through :meth:`BundleConfig.load`.
A file either fits the type or loading it raises :class:`~cxrtriage.errors.ModelError` with a sentence that names
the file and the key (``.../model.json: key 'calibration.a': must be positive ...``). Numbers must be JSON numbers
and strings JSON strings (pydantic's strict JSON mode), and an unknown key is refused, so a misspelt key can never
fall back silently to a default. The sha256 check of ``model.onnx`` stays in the backend.

What the file holds, in three parts:

* **run-time values**, the fields of :class:`BundleConfig`: what the engine reads to turn pixels into a result
  (preprocessing, output roles, CAM head, calibration, threshold, review band, OOD gates, view and finding probes,
  the identity and sha256 of the model);
* **provenance**, :class:`BundleProvenance` (``config.provenance``): how those values were made (training command and
  configuration, the validation figures that set the calibration and operating point, the rules, quantisation,
  export parity). Typed but never read by the engine. It stays in ``model.json``, at the top level as before,
  because it is written by the same commands and changes exactly when the run-time values change; it explains
  them, and a reader of the run-time file should not need a second file to know where a threshold came from;
* **not here: measured results.** Test metrics, the anatomy evaluation, generalisation, benchmarks and the figures
  of earlier models and calibrations live in ``card.json`` beside it (:mod:`cxrtriage.evaluation.card_data`), which
  the evaluation commands rewrite without touching this file and which the engine never opens. A ``model.json``
  written before that split may still carry them (:data:`LEGACY_MEASURED_KEYS`): :meth:`BundleConfig.load` ignores
  them, and the model card reads them only while no ``card.json`` exists.

The sub-blocks (calibration, OOD settings, probes) are in :mod:`cxrtriage.backends.bundle_blocks`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError, field_validator

from cxrtriage.backends.bundle_blocks import (
    Block,
    Calibration,
    FindingProbeConfig,
    Head,
    OodSettings,
    OutputRoles,
    ProbeRef,
    ViewProbeConfig,
    jsonable,
    validation_message,
)
from cxrtriage.errors import ModelError
from cxrtriage.imaging.preprocess import PreprocessConfig

META_FILE = "model.json"
#: keys a model.json written before card.json existed may carry; measured results, never read by the engine
LEGACY_MEASURED_KEYS = (
    "test_metrics",
    "anatomy_eval",
    "bench",
    "generalisation",
    "previous_generation",
    "previous_calibration",
)


class BundleProvenance(Block):
    """How the run-time values were made. Written by the exporters, rendered by the model card, never read by the
    engine. Stored flat at the top level of ``model.json``, beside the run-time keys."""

    created: str | None = None
    task: str | None = None
    labels: tuple[str, ...] | None = None
    arch: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    outputs: dict[str, str] | None = None
    quantization: dict[str, Any] | None = None
    #: a finding head inside the CNN (candidate generations only; the shipped model has none: null)
    findings: dict[str, Any] | None = None
    #: validation figures the calibration and operating point were fitted on (AUC, ECE, per-source thresholds)
    validation: dict[str, Any] | None = None
    threshold_rule: str | None = None
    review_band_rule: str | None = None
    training_data: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    training_alternatives: list[dict[str, Any]] | None = None
    training_chosen: dict[str, Any] | None = None
    #: a seed ensemble exported as one graph (train/ensemble.py): members, their checkpoints, how they combine
    ensemble: dict[str, Any] | None = None
    # MedSigLIP ONNX bundles (hai_def/onnx_export.py)
    hai_def: bool | None = None
    terms: str | None = None
    source: dict[str, Any] | None = None
    index_source: str | None = None
    parity: dict[str, Any] | None = None
    export: dict[str, Any] | None = None


PROVENANCE_KEYS = tuple(BundleProvenance.model_fields)


class BundleConfig(Block):
    """The run-time part of ``model.json``; ``provenance`` holds the rest. Build with :meth:`load` or
    :meth:`from_mapping` (both raise ModelError naming the file and the key), write with :meth:`save`."""

    name: str
    version: str
    #: the name every Prediction reports
    backend: str = "bundled"
    #: kept as written (scalar or per-channel values, descriptive keys); parsed once into :attr:`preprocess_config`
    preprocess: dict[str, Any]
    #: None: the bundled CNN's layout (``urgency_logit`` and ``feature_map``), see backends/bundled.py
    output_roles: OutputRoles | None = None
    head: Head | None = None
    calibration: Calibration
    threshold: float = Field(ge=0.0, le=1.0)
    review_band: tuple[float, float]
    ood: OodSettings | None = None
    view_probe: ViewProbeConfig | None = None
    finding_probes: dict[str, FindingProbeConfig] | None = None
    #: the linear probe baked into a MedSigLIP ONNX bundle
    probe: ProbeRef | None = None
    # integrity: the engine checks ``sha256`` against model.onnx; ``files`` lists every file's hash for the
    # release scripts (demo_app/onnx/*.sh)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    files: dict[str, str] | None = None
    size_bytes: int | None = None
    provenance: BundleProvenance = Field(default_factory=BundleProvenance)

    _preprocess: PreprocessConfig = PrivateAttr()

    @field_validator("preprocess")
    @classmethod
    def _preprocess_is_usable(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            PreprocessConfig.from_mapping(value)
        except KeyError as exc:
            raise ValueError(f"no {exc.args[0]!r} in the preprocess block") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad preprocess block: {exc}") from exc
        return value

    @field_validator("review_band")
    @classmethod
    def _band_is_an_interval(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= value[0] <= value[1] <= 1.0:
            raise ValueError(f"must be [low, high] with 0 <= low <= high <= 1, got {list(value)}")
        return value

    def model_post_init(self, context: Any) -> None:
        self._preprocess = PreprocessConfig.from_mapping(self.preprocess)

    # -- reading -------------------------------------------------------------------------------------------------
    @property
    def preprocess_config(self) -> PreprocessConfig:
        """The ``preprocess`` block parsed once into the frozen values every inference uses."""
        return self._preprocess

    @property
    def ood_settings(self) -> OodSettings:
        """The ``ood`` block, or the defaults (k=5, no gate) when the bundle has none."""
        return self.ood or OodSettings()

    @classmethod
    def load(cls, path: str | Path) -> BundleConfig:
        """Read and check ``model.json`` (ignoring the measured keys of a pre-card.json bundle)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model metadata {path} not found: run `cxrtriage export` or reinstall the package")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path}: must hold a JSON object, not {type(data).__name__}")
        return cls.from_mapping({k: v for k, v in data.items() if k not in LEGACY_MEASURED_KEYS}, source=path)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str | Path = META_FILE) -> BundleConfig:
        """Check a ``model.json`` mapping (flat, as in the file) exactly as :meth:`load` checks the file: it is
        serialised to JSON and parsed back, so a writer cannot produce what the reader would refuse."""
        if "provenance" in data:
            raise ModelError(f"{source}: key 'provenance': not a model.json key (provenance keys sit at the top level)")
        run = {k: v for k, v in data.items() if k not in PROVENANCE_KEYS}
        run["provenance"] = {k: data[k] for k in PROVENANCE_KEYS if k in data}
        try:
            text = json.dumps(run, default=jsonable)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: cannot be written as JSON ({exc})") from exc
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ModelError(validation_message(source, exc, skip=("provenance",))) from exc

    # -- writing -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The flat ``model.json`` mapping: run-time keys, then provenance keys; only keys that were given."""
        return {**self.as_json_dict(exclude={"provenance"}), **self.provenance.as_json_dict()}

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` (a directory gets ``model.json`` inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / META_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def write_bundle_config(data: Mapping[str, Any], path: str | Path) -> BundleConfig:
    """Check a ``model.json`` mapping and write it: the one way the exporters and fitters write the file."""
    config = BundleConfig.from_mapping(data, source=path)
    config.save(path)
    return config
