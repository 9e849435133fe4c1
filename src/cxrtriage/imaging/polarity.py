"""Catch inverted polarity in MONOCHROME1 DICOMs (white lungs from a wrong Photometric Interpretation tag).

The DICOM reader follows the standard strictly: MONOCHROME1 is inverted. A file whose pixels are really
MONOCHROME2 but are tagged MONOCHROME1 then comes out as a negative, while the model was trained on positives
(air dark, bone bright). Neither signal alone is reliable, as measured on the data here:

* intensity: on a positive frontal film the central (mediastinum/spine) column is brighter than the lateral lung
  fields, but several positive NIH images with white-out lungs break that rule;
* the CNN embedding: the inverse of the correctly tagged, low-contrast 1993 CR-MONO1 sample is *closer* to the
  training images than the image itself.

The chest-layout residual (cxrtriage.imaging.layout) separates them well (SIIM negative 0.80 as read vs 0.09 inverted;
CR-MONO1 0.20 as read vs 0.95 inverted). An image is flipped only when the intensity rule and the layout residual
agree. Only MONOCHROME1 files are checked, and every flip is reported as a warning.
"""

from __future__ import annotations

import numpy as np

from cxrtriage.imaging.layout import ChestLayoutModel
from cxrtriage.imaging.preprocess import resize_square

#: lung fields must be brighter than the central column by this much (0-1 scale) to suggest a negative
INVERSION_MARGIN = 0.05
#: the inverse's layout residual must be lower by this much
FLIP_MARGIN = 0.2

FLIP_WARNING = (
    "the MONOCHROME1 image looked like a negative (lung fields brighter than the mediastinum, and its "
    "inverse has a far more typical chest layout; a Photometric Interpretation tag error?) and was "
    "analysed with positive polarity"
)


def polarity_contrast(pixels: np.ndarray) -> float:
    """Mean of the central column minus the mean of the lateral lung fields (positive on a positive film)."""
    small = resize_square(pixels, 128)
    centre = small[26:102, 54:74].mean()
    lungs = np.concatenate([small[32:90, 19:45].ravel(), small[32:90, 83:109].ravel()]).mean()
    return float(centre - lungs)


def should_flip(pixels: np.ndarray, layout: ChestLayoutModel) -> bool:
    """True when the intensity rule and the layout residual both say the image is a negative."""
    if polarity_contrast(pixels) >= -INVERSION_MARGIN:
        return False
    return layout.residual(1.0 - pixels) < layout.residual(pixels) - FLIP_MARGIN
