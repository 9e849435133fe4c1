"""Result types shared by every caller (CLI, REST, UI, notebooks).

The first five fields of :class:`Prediction` are exactly the specification's
``{label, score, explanation, crops: [{x, y, w, h, thumb_path}], provenance: [{source, snippet}]}``;
everything after them is clearly separate extra information.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DISCLAIMER = "For clinical decision support only — not a diagnostic tool."

Label = Literal["Urgent", "Non-Urgent"]


#: the specification's 1-3 evidence crops: the schema enforces it and the pipeline keeps to it
MAX_CROPS = 3


class Crop(BaseModel):
    """One evidence region, in pixels of the original (uploaded) image."""

    model_config = ConfigDict(extra="forbid")

    x: int = Field(ge=0, description="left edge, original image pixels")
    y: int = Field(ge=0, description="top edge, original image pixels")
    w: int = Field(gt=0, description="width, original image pixels")
    h: int = Field(gt=0, description="height, original image pixels")
    thumb_path: str = Field(description="path of the PNG thumbnail of this crop")
    region: str | None = Field(default=None, description="anatomical zone, e.g. 'right lower zone'")
    strength: float | None = Field(default=None, description="share of positive activation mass in this region (0-1)")
    source: Literal["activation_map", "medgemma"] = Field(
        default="activation_map",
        description="what proposed the box: the classifier's activation map, or MedGemma (generative, unverified)",
    )


class Provenance(BaseModel):
    """Where a claim comes from: a verbatim prior-report sentence or a similar training case."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="'prior_report' or 'training_case:<dataset>/<image id>'")
    snippet: str = Field(description="verbatim quote, or a short description of the similar case")
    relation: str | None = Field(default=None, description="supports / contradicts / uncertain / similar_case")
    similarity: float | None = Field(default=None, description="cosine similarity for training cases")


class Finding(BaseModel):
    """A finding output of the classifier, with the held-out AUC that says how far to trust it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="e.g. 'lung opacity'")
    probability: float = Field(
        ge=0.0, le=1.0, description="the output's probability (its labels' prevalence: RSNA re-read NIH films)"
    )
    held_out_auc: float | None = Field(
        default=None, description="AUC on patients never fitted on (model.json finding_probes)"
    )
    named_in_explanation: bool = Field(
        description="the explanation names a finding only when its held-out AUC is >= 0.75"
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    version: str
    sha256: str
    backend: str = "bundled"


#: what a result says when no site profile is in use (interface 1 of issue 25)
UNVALIDATED_SITE_NOTE = "bundled operating point, not validated at this site"


class SiteInfo(BaseModel):
    """The site profile a result's calibration, threshold and review band come from (``cxrtriage commission``), or
    none: then the bundled operating point, which a hospital's own films may not keep (its specificity fell from
    about 0.5 to 0.05 on an adult site the model never saw), and the result says so."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="the name given to `cxrtriage commission`; null: none")
    created: str | None = Field(default=None, description="UTC date the profile was fitted (YYYY-MM-DD)")
    n_cases: int | None = Field(default=None, description="labelled films of the site the profile was fitted on")
    validated: bool = Field(default=False, description="the operating point was measured on this site's films")
    note: str = UNVALIDATED_SITE_NOTE


class Prediction(BaseModel):
    """Result of :func:`cxrtriage.predict`."""

    model_config = ConfigDict(extra="forbid")

    # --- the specification's fields ---
    label: Label
    score: float = Field(ge=0.0, le=1.0, description="calibrated probability that the study is urgent")
    explanation: str
    crops: list[Crop] = Field(default_factory=list, max_length=MAX_CROPS)
    provenance: list[Provenance] = Field(default_factory=list)
    # --- extra fields ---
    threshold: float = Field(description="operating threshold on the calibrated score")
    review_band: tuple[float, float] = Field(
        description="scores in [low, high) need human review and are labelled Urgent"
    )
    needs_review: bool
    disclaimer: str = DISCLAIMER
    model: ModelInfo = Field(
        description="the classifier that labelled and scored, under the configuration's backend name"
    )
    explainer: ModelInfo | None = Field(
        default=None,
        description="the explainer (MedGemma) that added the "
        "explanation, second opinion or box, with its own version and sha256",
    )
    model_logit: float | None = Field(
        default=None,
        description="the classifier's own uncalibrated output (logit), before any site profile's calibration: what "
        "`cxrtriage commission` fits a site's calibration on, so a stored result can be re-commissioned",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    image: dict[str, object] = Field(default_factory=dict, description="non-identifying image metadata")
    findings: list[Finding] = Field(
        default_factory=list,
        description="finding outputs of the classifier (probability and held-out AUC); empty for backends without any",
    )
    anatomy: dict[str, object] | None = Field(
        default=None,
        description="measured from the bundled lung-and-heart segmentation: lungs found, lung area "
        "fractions, cardiothoracic ratio (AP films magnify the heart), the segmenter's name; null without it",
    )
    site: SiteInfo = Field(
        default_factory=SiteInfo,
        description="the site profile whose calibration, threshold and review band labelled this film, or the "
        "bundled operating point (not validated at this site)",
    )


def prediction_json_schema() -> dict:
    """JSON Schema of the Prediction, for clients and the smoke test."""
    return Prediction.model_json_schema()


def dump_json_schema(path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(prediction_json_schema(), fh, indent=2)
        fh.write("\n")
