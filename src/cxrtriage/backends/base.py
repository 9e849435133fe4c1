"""The declared stages every model plugs into, so CLI, REST, UI and notebooks share one code path.

* :class:`Backend` — the classifier: a calibrated score (and optionally a map and an embedding) for one image.
* :class:`Explainer` — optional: MedGemma's explanation, second opinion and box for an image already labelled.

The pipeline uses exactly what these protocols declare; it never probes for attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from cxrtriage.backends.embedding_index import EmbeddingIndex
from cxrtriage.backends.finding_probe import FindingProbe
from cxrtriage.backends.view_probe import ViewProbe
from cxrtriage.imaging.layout import ChestLayoutModel
from cxrtriage.schema import ModelInfo, Provenance


@dataclass
class BackendOutput:
    logit: float
    score: float  # calibrated probability of Urgent
    cam: np.ndarray | None = None  # (h, w) class activation map over the squashed input, positive = urgent
    embedding: np.ndarray | None = None  # image embedding for similar cases / OOD gate
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: (S, S) float32: the image squashed to the model size before quantizing, when the backend resized it itself
    #: (``classify_full.onnx``'s ``resized``): the layout gate reads it instead of resizing again
    resized: np.ndarray | None = None


@dataclass(frozen=True)
class OperatingPointNotes:
    """How a model's score was calibrated and its threshold and review band were set, in the words its metadata
    records them (None: not recorded). Shown beside the numbers so a reader learns what they mean (the web UI's
    Details); nothing decides on them."""

    calibration: str | None = None
    threshold_rule: str | None = None
    review_band_rule: str | None = None


@runtime_checkable
class Backend(Protocol):
    info: ModelInfo
    threshold: float
    review_band: tuple[float, float]
    index: EmbeddingIndex | None
    min_knn_similarity: float | None
    knn_k: int
    layout: ChestLayoutModel | None
    max_layout_residual: float | None
    warnings: list[str]  # load-time warnings every result carries (e.g. an uncalibrated zero-shot head)
    view_probe: ViewProbe | None  # the lateral-view probe on the embedding, None when the model has none
    finding_probes: Sequence[FindingProbe]  # the finding outputs (lung opacity), empty when the model has none
    operating_point_notes: OperatingPointNotes  # how calibration, threshold and review band were set, in words

    def analyze(self, pixels: np.ndarray) -> BackendOutput:
        """Score a (H, W) float [0,1] grey image."""
        ...

    def accepts_squashed(self, size: int) -> bool:
        """True when ``analyze`` gives the same result for an image already squashed to ``size`` x ``size`` (the
        pipeline then reuses the gate's resize instead of a second full-size one)."""
        ...

    def returns_resized(self, size: int) -> bool:
        """True when ``analyze`` of the field returns it squashed to ``size`` x ``size`` (``BackendOutput.resized``):
        the pipeline then runs the classifier before the layout gate and hands it that image, as the browser page
        does (one resize, inside the graph)."""
        ...

    def footprint_mb(self) -> float:
        """Size of the model file(s) on disk."""
        ...


@dataclass(frozen=True)
class SecondOpinion:
    """What an :class:`Explainer` adds to a result; it never changes the label or the score."""

    explanation: str | None
    provenance: list[Provenance]
    warnings: list[str]
    box_xywh: tuple[int, int, int, int] | None = None  # the explainer's evidence box, original-image pixels
    disagrees: bool = False  # its own urgency differs from the classifier's label: the result goes to review


@runtime_checkable
class Explainer(Protocol):
    info: ModelInfo  # the explainer's own identity (name, version, sha256), reported beside the classifier's

    def explain(self, pixels: np.ndarray, prior_report: str | None, label: str) -> SecondOpinion:
        """Explanation, provenance, warnings and box for an image the classifier labelled ``label``."""
        ...

    def footprint_mb(self) -> float:
        """Size of the explainer's model files on disk."""
        ...


class Stages(NamedTuple):
    """A configured model: the classifier, and the explainer when the configuration has one."""

    classifier: Backend
    explainer: Explainer | None = None
