"""Catch inverted polarity in MONOCHROME1 DICOMs (white lungs from a wrong Photometric Interpretation tag).

The DICOM reader follows the standard strictly: MONOCHROME1 is inverted. A file whose pixels are really
MONOCHROME2 but are tagged MONOCHROME1 then comes out as a negative, while the model was trained on positives
(air dark, bone bright). Simple intensity rules cannot tell a negative from a white-out chest (we measured
several positive NIH images with lungs brighter than the mediastinum), so the decision is data-driven and
limited to MONOCHROME1 files: both polarities are embedded and the one closer to the training radiographs wins,
by a margin, with a warning whenever the image is flipped.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: the flipped image must be this much more similar (mean kNN cosine) to training images to be preferred
FLIP_MARGIN = 0.05

FLIP_WARNING = ("the MONOCHROME1 image looked like a negative (its inverse is much closer to the training radiographs; "
                "a Photometric Interpretation tag error?) and was analysed with positive polarity")


def should_flip(pixels: np.ndarray, similarity: Callable[[np.ndarray], float]) -> bool:
    """True when the inverted image is clearly more similar to the training distribution."""
    return similarity(1.0 - pixels) > similarity(pixels) + FLIP_MARGIN
