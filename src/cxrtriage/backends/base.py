"""The one interface every model backend implements, so CLI, REST, UI and notebooks share one code path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from cxrtriage.backends.embedding_index import EmbeddingIndex
from cxrtriage.imaging.layout import ChestLayoutModel
from cxrtriage.schema import ModelInfo


@dataclass
class BackendOutput:
    logit: float
    score: float  # calibrated probability of Urgent
    cam: np.ndarray | None = None  # (h, w) class activation map over the squashed input, positive = urgent
    embedding: np.ndarray | None = None  # image embedding for similar cases / OOD gate
    timings_ms: dict[str, float] = field(default_factory=dict)


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

    def analyze(self, pixels: np.ndarray) -> BackendOutput:
        """Score a (H, W) float [0,1] grey image."""
        ...

    def footprint_mb(self) -> float:
        """Size of the model file(s) on disk."""
        ...
