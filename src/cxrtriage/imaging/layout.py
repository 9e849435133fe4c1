"""Chest-layout model: how well a 32x32 thumbnail is explained by the principal components of training radiographs.

Frontal chest radiographs share a coarse layout (bright mediastinum and spine between two dark lung fields,
shoulders above, abdomen below). A handful of principal components of standardised 32x32 thumbnails of the
training images explain most of that layout; photographs, screenshots, colour bars and other modalities leave a
large residual. The same residual also tells a negative from a positive film, which the polarity check uses.

Measured when designing it (k = 10 components): residuals of all NIH images <= 0.59 and of 800 pediatric images
<= 0.44, while non-chest images that pass the cheap statistics gate started at 0.68 (scikit-image's camera).
The supervised CNN embedding, by contrast, placed photographs (moon 0.96, clock 0.95 kNN cosine) among chest
images, so it cannot be the main out-of-distribution signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrtriage.imaging.preprocess import resize_square

THUMB = 32


def layout_features(pixels: np.ndarray, input_size: int) -> np.ndarray:
    """Standardised (zero mean, unit variance) 32x32 thumbnail, made via the model's input size so that
    training-time (cached at input size) and run-time features match."""
    x = resize_square(resize_square(pixels, input_size), THUMB).ravel().astype(np.float64)
    x = x - x.mean()
    return x / max(float(x.std()), 1e-6)


@dataclass(frozen=True)
class ChestLayoutModel:
    mean: np.ndarray  # (1024,)
    components: np.ndarray  # (k, 1024), orthonormal rows
    input_size: int

    @classmethod
    def fit(cls, features: np.ndarray, k: int, input_size: int) -> ChestLayoutModel:
        mean = features.mean(axis=0)
        _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
        return cls(mean=mean, components=vt[:k], input_size=input_size)

    def residual_of_features(self, x: np.ndarray) -> float:
        z = x - self.mean
        r = z - self.components.T @ (self.components @ z)
        return float(r @ r / max(float(x @ x), 1e-9))

    def residual(self, pixels: np.ndarray) -> float:
        """Share of the thumbnail's variance NOT explained by the chest components (0 = typical chest film)."""
        return self.residual_of_features(layout_features(pixels, self.input_size))
