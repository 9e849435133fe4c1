"""The one record a radiograph carries through :class:`cxrtriage.pipeline.Triage`'s stages (kept apart from the
stages themselves so that ``pipeline.py`` holds the order and the rules, and this the state they pass on)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrtriage.anatomy.measure import Anatomy
from cxrtriage.backends.base import BackendOutput
from cxrtriage.decision import Decision
from cxrtriage.explain.evidence import EvidenceBox
from cxrtriage.explain.report import ReportAnalysis
from cxrtriage.imaging.exposed_field import ExposedField, whole
from cxrtriage.imaging.load import LoadedImage
from cxrtriage.schema import Finding, Provenance


@dataclass(eq=False)
class Case:
    """One radiograph on its way through :class:`Triage`'s stages: each stage reads what the earlier ones wrote.
    ``doubts`` are the image's reasons for review (atypical film), which only :mod:`cxrtriage.decision` turns into
    a label, a review flag and warnings."""

    loaded: LoadedImage
    prior_report: str | None
    pixels: np.ndarray  # the exposed field, box-averaged for analysis, display polarity (flipped by the gate if needed)
    warnings: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    scale: int = 1  # the field in the decoded image is this many times ``pixels`` (imaging/analysis_size.py)
    flipped: bool = False
    exposed: ExposedField | None = None  # where the field lies in the decoded image (set by the field stage)
    model_pixels: np.ndarray = None  # type: ignore[assignment]  # what the classifier gets (set by the gate)
    residual: float | None = None  # coarse layout residual
    anatomy: Anatomy | None = None
    doubts: list[str] = field(default_factory=list)
    output: BackendOutput = None  # type: ignore[assignment]  # set by the classify stage
    knn_similarity: float | None = None
    neighbours: list[Any] = field(default_factory=list)
    decision: Decision = None  # type: ignore[assignment]  # set by the decide stage
    boxes: list[EvidenceBox] = field(default_factory=list)
    report: ReportAnalysis | None = None
    findings: list[Finding] = field(default_factory=list)
    explanation: str = ""
    provenance: list[Provenance] = field(default_factory=list)

    def settle(self, new: Decision) -> None:
        """Take the decision's latest word, with the warnings of the escalations it added, in the order made."""
        known = len(self.decision.reasons) if self.decision is not None else 0
        self.warnings += [r.warning for r in new.reasons[known:] if r.warning]
        self.decision = new

    @functools.cached_property
    def display(self) -> np.ndarray:
        """The decoded image (its working resolution, not the analysis image's) in display polarity: read once the
        gate has settled the polarity, and made once (a flipped film is a full-size copy)."""
        return (1.0 - self.loaded.pixels).astype(np.float32) if self.flipped else self.loaded.pixels

    def field(self) -> ExposedField:
        """Where the analysed field lies in the decoded image (the whole of it before the field stage has run)."""
        if self.exposed is not None:
            return self.exposed
        height, width = self.loaded.pixels.shape[:2]
        return whole((height, width))
