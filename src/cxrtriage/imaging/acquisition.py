"""Acquisition variants of a frontal film: the frames and geometries a hospital's export can put around the same
thorax, which the gate must triage and never refuse (issue 24: a film in the corner of a larger black canvas with its
own black borders, wide borders, rotation up to 15 degrees, squashed or stretched to aspect 0.75..1.33).

Used by the gate-robustness measurement (``scripts/gate_robustness.py``) and its tests; each variant takes and returns
a grey float32 ``(H, W)`` image in ``[0, 1]``, deterministic (no randomness), so a result can be reproduced.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

#: the film's own black border on the canvas variants, and the wide borders variant, as shares of the film's size
FILM_BORDER = 0.08
WIDE_BORDER = 0.2


def with_borders(pixels: np.ndarray, share: float = WIDE_BORDER, level: float = 0.0) -> np.ndarray:
    """The film inside a uniform border ``share`` of its height/width wide on every side."""
    h, w = pixels.shape
    by, bx = round(share * h), round(share * w)
    out = np.full((h + 2 * by, w + 2 * bx), level, dtype=np.float32)
    out[by : by + h, bx : bx + w] = pixels
    return out


def on_canvas(pixels: np.ndarray, *, noise: float = 0.0, marker: bool = False) -> np.ndarray:
    """The film, with its own black borders, in the top-left corner of a black canvas twice its size in each
    direction (the two refused films of issue 24); optional Gaussian ``noise`` on the canvas and the film's borders
    (not on the film: a JSRT film spans only 0.07 of grey, and such noise would bury it) and a bright text-like
    ``marker`` on the canvas, apart from the film."""
    film = with_borders(pixels, FILM_BORDER)
    h, w = film.shape
    out = np.zeros((2 * h, 2 * w), dtype=np.float32)
    out[:h, :w] = film
    if marker:  # three short bright bars, like a burned-in label
        for i in range(3):
            y = h + h // 3 + i * max(3, h // 30)
            out[y : y + max(2, h // 60), w + w // 4 : w + w // 4 + w // 3] = 0.9
    if noise:
        background = np.ones(out.shape, dtype=bool)
        by, bx = round(FILM_BORDER * pixels.shape[0]), round(FILM_BORDER * pixels.shape[1])
        background[by : by + pixels.shape[0], bx : bx + pixels.shape[1]] = False
        out[background] += np.random.default_rng(0).normal(0.0, noise, int(background.sum())).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def rotated(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about its centre (corners filled black, size kept), as a film placed askew on the detector."""
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=0.0), dtype=np.float32)


def reshaped(pixels: np.ndarray, aspect: float) -> np.ndarray:
    """Width scaled by ``aspect`` (0.75: squashed, 1.33: stretched), as a publisher's resize to another shape does."""
    h, w = pixels.shape
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.resize((max(1, round(w * aspect)), h), Image.Resampling.BILINEAR), dtype=np.float32)


#: every variant the gate must triage, by name (the measurement's and the tests' one list)
VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda x: np.asarray(x, dtype=np.float32),
    "canvas": on_canvas,
    "canvas_noise_marker": lambda x: on_canvas(x, noise=0.02, marker=True),
    "wide_borders": with_borders,
    "rotated_+15": lambda x: rotated(x, 15.0),
    "rotated_-15": lambda x: rotated(x, -15.0),
    "aspect_0.75": lambda x: reshaped(x, 0.75),
    "aspect_1.33": lambda x: reshaped(x, 1.33),
}
