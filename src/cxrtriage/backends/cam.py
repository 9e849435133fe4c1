"""Class activation map of the bundled CNN: the classifier's own spatial evidence, computed by the backend.

Because the head is linear after global average pooling, the map's mean plus the bias is exactly the urgency logit,
which is what makes it a faithful explanation; :mod:`cxrtriage.explain.evidence` turns it into boxes and crops.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_activation_map", "finite_array"]


def finite_array(value: object, name: str, ndim: int, *, keep_float: bool = False) -> np.ndarray:
    """Convert to a float64 array of the given rank, rejecting NaN/inf and empty arrays. ``keep_float``: a float
    array of another precision is checked as it is, not copied (a caller that converts only the part it uses: a
    whole 1024 px image in float64 is an 8 MB copy)."""
    try:
        floating = keep_float and np.asarray(value).dtype.kind == "f"
        arr = np.asarray(value) if floating else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def class_activation_map(feature_map: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``CAM[i, j] = weight . feature_map[:, i, j]`` as float32 of shape (h, w).

    Because the head is linear after global average pooling, ``CAM.mean() + bias`` is
    exactly the urgency logit, which is what makes the map a faithful explanation.
    """
    fmap = finite_array(feature_map, "feature_map", 3)
    w = finite_array(weight, "weight", 1)
    if fmap.shape[0] != w.shape[0]:
        raise ValueError(f"feature_map has {fmap.shape[0]} channels but weight has {w.shape[0]} entries")
    return np.tensordot(w, fmap, axes=(0, 0)).astype(np.float32)
