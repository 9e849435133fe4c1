"""The view probe: a logistic regression that tells a lateral view from a frontal film, on the classifier's image
embedding (L2-normalised) followed by the anatomy's view features (``cxrtriage.anatomy.measure.VIEW_FEATURES``).

It is fitted when a classifier bundle is exported (:mod:`cxrtriage.train.view_probe`) and stored in model.json
under ``view_probe`` (typed, with its defaults, by :class:`~cxrtriage.backends.bundle_blocks.ViewProbeConfig`), with
two cut-offs: above ``reject_above`` the image is refused as a lateral view (the cut-off lies above every frontal
film's cross-validated score); above ``review_above`` it is triaged as Urgent with ``needs_review`` ("may be a
lateral view"). An image on which two lungs were segmented is refused only above the higher
``reject_with_lungs_above``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrtriage.backends.bundle_blocks import ViewProbeConfig


@dataclass(frozen=True)
class ViewProbe:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    reject_above: float
    review_above: float
    features: tuple[str, ...]
    #: refused above this even when two lungs were segmented
    reject_with_lungs_above: float

    @classmethod
    def from_config(cls, block: ViewProbeConfig) -> ViewProbe:
        """The probe of a checked ``view_probe`` block (its defaults are the block's)."""
        return cls(
            mean=np.asarray(block.mean, np.float64),
            scale=np.asarray(block.scale, np.float64),
            coef=np.asarray(block.coef, np.float64),
            intercept=block.intercept,
            reject_above=block.reject_above,
            review_above=block.review_above,
            features=block.anatomy_features,
            reject_with_lungs_above=block.reject_with_lungs_above,
        )

    @staticmethod
    def inputs(embedding: np.ndarray, anatomy_features: list[float]) -> np.ndarray:
        e = np.asarray(embedding, np.float64).ravel()
        e = e / max(float(np.linalg.norm(e)), 1e-12)
        return np.concatenate([e, np.asarray(anatomy_features, np.float64)])

    def score(self, embedding: np.ndarray, anatomy_features: list[float]) -> float | None:
        """Probability that the image is a lateral view; None when the embedding does not fit the probe."""
        x = self.inputs(embedding, anatomy_features)
        if x.shape != self.mean.shape:
            return None
        z = float(((x - self.mean) / self.scale) @ self.coef + self.intercept)
        return float(1.0 / (1.0 + np.exp(-z)))
