"""The typed blocks of a model bundle's files (``model.json``, ``probe.json``) and how their errors are worded.

Each block states its defaults once (an OOD ``k`` of 5, a view probe that never refuses with two lungs, a finding
named only when ``named_in_explanation``...), so the bundled ONNX backend and the MedSigLIP backend cannot give
the same file two meanings. All blocks are frozen, refuse unknown keys and take JSON types strictly; the parts that
only describe how a value was made (``fit``, ``validation``, ``cv_auc_by_c``...) are typed loosely and never read
by the engine. :class:`cxrtriage.backends.bundle_config.BundleConfig` assembles them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxrtriage.errors import ModelError

PROBE_FILE = "probe.json"
#: how many validation errors one message lists before "and N more"
MAX_ERRORS_SHOWN = 5
#: pydantic error types -> the words the message uses instead of pydantic's own
PLAIN_WORDS = {"missing": "missing", "extra_forbidden": "not a key of this file (misspelt?)"}


def jsonable(obj: Any) -> Any:
    """``json.dumps`` default for what exporters hand over besides plain JSON values (numpy numbers, paths)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def key_path(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as the key a person looks for in the file: ``view_probe.mean[3]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_message(source: str | Path, exc: ValidationError, skip: tuple[str, ...] = ()) -> str:
    """One sentence per problem, each naming the file and the key: ``<file>: key 'calibration.a': must be ...``.
    ``skip``: leading location parts that exist in the type but not in the file (a grouping such as provenance)."""
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if loc and loc[0] in skip:
            loc = loc[1:]
        msg = PLAIN_WORDS.get(err["type"]) or str(err["msg"]).removeprefix("Value error, ")
        if err["type"].endswith("_type") or err["type"].endswith("_parsing"):
            msg += f" (got {json.dumps(err.get('input'), default=str)[:40]})"
        parts.append(f"key '{key_path(loc)}': {msg}" if loc else msg)
    more = len(parts) - MAX_ERRORS_SHOWN
    text = "; ".join(parts[:MAX_ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
    return f"{source}: {text}"


class Block(BaseModel):
    """Frozen, strict, no unknown keys: the base of every typed block of a bundle file."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def as_json_dict(self, **exclude: Any) -> dict[str, Any]:
        """The block as plain JSON values, with only the keys that were given. Not pydantic's JSON mode, which
        would write a NaN (an AUC on a one-class sample) as null: ``json`` keeps it, as the writers always did."""
        return json.loads(json.dumps(self.model_dump(exclude_unset=True, **exclude), default=jsonable))


def check_linear_model(mean: tuple[float, ...], scale: tuple[float, ...], coef: tuple[float, ...]) -> None:
    """A standardised logistic regression stored as mean, scale and coef: the three must have the same length."""
    if not len(mean) == len(scale) == len(coef) or not mean:
        raise ValueError(
            f"mean, scale and coef must have the same non-zero length, got {len(mean)}, {len(scale)}, {len(coef)}"
        )
    if any(s == 0 for s in scale):
        raise ValueError("scale must not contain 0")


class Calibration(Block):
    """Platt scaling of the urgency logit; ``warning`` and ``left_out_of_fit`` reach every result as warnings."""

    type: Literal["platt"] = "platt"
    a: float
    b: float
    fit_on: str | None = None
    #: a degenerate fit (:data:`cxrtriage.backends.calibration.DEGENERATE_WARNING`)
    warning: str | None = None
    #: sources left out of the fit because the classifier ranks them worse than chance (ablation bundles only)
    left_out_of_fit: dict[str, str] | None = None

    @field_validator("a")
    @classmethod
    def _slope_is_positive(cls, a: float) -> float:
        if not a > 0:
            raise ValueError(f"must be positive: a slope of {a} would invert every decision")
        return a


class OutputRoles(Block):
    """Which ONNX output is the urgency logit, the CAM's feature map and the embedding."""

    logit: str | None = None
    feature_map: str | None = None
    embedding: str | None = None

    @field_validator("logit")
    @classmethod
    def _logit_is_named(cls, logit: str | None) -> str | None:
        if logit is None:
            raise ValueError("output_roles must name the logit output")
        return logit


class Head(Block):
    """The CNN's linear urgency head: its weight turns the feature map into the class activation map."""

    weight: tuple[float, ...] = Field(min_length=1)
    bias: float | None = None


class OodSettings(Block):
    """Out-of-distribution gates: chest layout (bundled CNN) and similarity to the k nearest training cases."""

    k: int = Field(default=5, ge=1)
    min_knn_similarity: float | None = None
    max_layout_residual: float | None = None
    # how the gates were set (provenance)
    val_knn_similarity_quantiles: dict[str, float] | None = None
    layout_components: int | None = None

    @classmethod
    def from_block(cls, block: Mapping[str, Any] | None, *, source: str | Path = "ood") -> OodSettings:
        """The settings of an ``ood`` block (None or empty: the defaults); ModelError naming ``source``."""
        try:
            return cls.model_validate_json(json.dumps(dict(block or {}), default=jsonable))
        except ValidationError as exc:
            raise ModelError(validation_message(source, exc)) from exc


class ViewProbeConfig(Block):
    """The lateral-view probe (:mod:`cxrtriage.backends.view_probe`), fitted by ``cxrtriage fit-view-probe``."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    reject_above: float
    review_above: float
    #: refused above this even when two lungs were segmented (1.0: never; bundles fitted before it existed)
    reject_with_lungs_above: float = 1.0
    anatomy_features: tuple[str, ...] = ()
    inputs: str | None = None
    fit: str | None = None
    #: cross-validated and held-out counts of the fit (provenance, rendered by the model card)
    validation: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _shapes_agree(self) -> ViewProbeConfig:
        check_linear_model(self.mean, self.scale, self.coef)
        return self


class HeldOut(Block):
    """A finding probe's figures on patients it was never fitted on; ``auc`` is reported in every result."""

    model_config = ConfigDict(extra="allow")  # per-finding counts (n_opacity, ...) are descriptive

    auc: float | None = None
    auc_ci95: tuple[float, float] | None = None
    n: int | None = None
    patients: str | None = None


class FindingProbeConfig(Block):
    """One finding output (:mod:`cxrtriage.backends.finding_probe`), fitted by ``cxrtriage fit-finding-probe``."""

    #: None: the key with spaces for underscores
    name: str | None = None
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    likely_above: float = 0.5
    named_in_explanation: bool = False
    held_out: HeldOut | None = None
    inputs: str | None = None
    labels: str | None = None
    fit: str | None = None
    rule: str | None = None
    cv_auc_by_c: dict[str, float] | None = None

    @model_validator(mode="after")
    def _shapes_agree(self) -> FindingProbeConfig:
        check_linear_model(self.mean, self.scale, self.coef)
        return self


class ProbeRef(Block):
    """The linear probe baked into a MedSigLIP ONNX bundle: its fingerprint is compared with CXRTRIAGE_CLASSIFIER."""

    fingerprint: str
    dim: int | None = None
    source: str | None = None
    meta: dict[str, Any] | None = None


class ProbeMeta(Block):
    """``probe.json``'s free-form ``meta`` (model id, sizes, rules, validation figures) with its typed ``ood``."""

    model_config = ConfigDict(extra="allow")

    ood: OodSettings | None = None


class ProbeFile(Block):
    """``probe.json``: the MedSigLIP linear probe (:class:`cxrtriage.backends.medsiglip.LinearProbe`) as stored."""

    weight: tuple[float, ...] = Field(min_length=1)
    bias: float
    platt_a: float = 1.0
    platt_b: float = 0.0
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    review_band: tuple[float, float] = (0.4, 0.6)
    meta: ProbeMeta = Field(default_factory=ProbeMeta)

    @field_validator("platt_a")
    @classmethod
    def _slope_is_positive(cls, a: float) -> float:
        if not a > 0:
            raise ValueError(f"must be positive: a slope of {a} would invert every decision")
        return a

    @classmethod
    def load(cls, path: Path) -> ProbeFile:
        if not path.is_file():
            raise ModelError(
                f"linear probe {path} not found (train one with cxrtriage.hai_def.probe.train_linear_probe)"
            )
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise ModelError(validation_message(path, exc)) from exc
