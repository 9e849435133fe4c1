"""Image -> model input, driven entirely by the model's metadata (``preprocess`` block of model.json).

Training and inference both call :func:`to_model_input`, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import Image


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a float [0,1] (H, W) image to (size, size) without keeping the aspect ratio.

    Squashing (not letterboxing) matches how the training images were prepared: NIH images are square and
    the pediatric set was already squashed by its publisher.
    """
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32)


def to_model_input(pixels: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
    """(H, W) float [0,1] -> (1, 1, S, S) float32 normalised with the model's mean/std."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {pixels.shape}")
    size = int(cfg["input_size"])
    x = resize_square(np.clip(pixels, 0.0, 1.0), size)
    x = (x - float(cfg["mean"])) / float(cfg["std"])
    return x[None, None].astype(np.float32)
