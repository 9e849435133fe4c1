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


KNN_QUANTILES = (0.0, 0.005, 0.01, 0.05, 0.5)
OOD_MARGIN = 0.1  # gate below the lowest validation kNN similarity minus this margin


def build_index_and_ood(index_emb: np.ndarray, val_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(centre, centred-normalised index embeddings, ``ood`` block) from raw training (index) and validation
    embeddings: the validation images' mean similarity to their k nearest training cases sets the gate, so every
    validation image passes it. One rule for every backend that ships an index (bundled CNN, MedSigLIP probe)."""
    centre = np.asarray(index_emb, dtype=np.float32).mean(axis=0)
    index = center_and_normalise(index_emb, centre)
    val = center_and_normalise(val_emb, centre)
    k = max(1, min(int(k), len(index)))
    sims = np.sort(val @ index.T, axis=1)[:, -k:].mean(axis=1)
    ood = {
        "k": k,
        "val_knn_similarity_quantiles": {str(q): float(np.quantile(sims, q)) for q in KNN_QUANTILES},
        "min_knn_similarity": float(np.quantile(sims, 0.0) - OOD_MARGIN),
    }
    return centre, index, ood


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
    def load(cls, path: Path) -> EmbeddingIndex:
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
