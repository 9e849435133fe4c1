"""Similar training cases: nearest neighbours of an image embedding in the index shipped with the model.

The index holds IDs, labels and centred, L2-normalised embeddings only — never images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def center_and_normalise(emb: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Centre on the training mean before cosine similarity: pooled ReLU features are all positive, so raw
    cosines crowd near 1 and separate nothing."""
    x = np.asarray(emb, dtype=np.float32) - centre.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


@dataclass(frozen=True)
class Neighbour:
    key: str  # "<dataset>/<image id>"
    urgent: bool
    similarity: float


class EmbeddingIndex:
    def __init__(self, keys: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, centre: np.ndarray) -> None:
        self.keys = keys
        self.labels = labels
        self.embeddings = embeddings.astype(np.float32)
        self.centre = centre.astype(np.float32)

    @classmethod
    def load(cls, path: Path) -> "EmbeddingIndex":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["keys"], z["labels"], z["embeddings"], z["centre"])

    def similarities(self, emb: np.ndarray) -> np.ndarray:
        return self.embeddings @ center_and_normalise(emb[None], self.centre)[0]

    def knn_similarity(self, emb: np.ndarray, k: int) -> float:
        """Mean cosine similarity of the k nearest training cases (the out-of-distribution statistic)."""
        sims = self.similarities(emb)
        return float(np.sort(sims)[-k:].mean())

    def nearest(self, emb: np.ndarray, k: int = 3) -> list[Neighbour]:
        sims = self.similarities(emb)
        order = np.argsort(-sims)[:k]
        return [Neighbour(str(self.keys[i]), bool(self.labels[i]), float(sims[i])) for i in order]
