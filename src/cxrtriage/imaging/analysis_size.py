"""The analysis image: every stage after the exposed field reads a film of at most ``2 * ANALYSIS_SIDE - 1`` px a side.

Why: the classifier sees 256 px and the segmentation 192 px; the gate's layout works on a 256 px copy. Analysing a
1024 px film whole spent about a fifth of a prediction resizing and scanning pixels that no stage needs
(``scripts/profile_predict.py``, issue 26). The exposed field (:mod:`~cxrtriage.imaging.exposed_field`, found on the
decoded image) whose longer side is ``k * ANALYSIS_SIDE`` px or more (``k >= 2``) is shrunk by the whole factor
``k``, a box mean over ``k x k`` blocks; NIH's 512 px films, and any field below 1024 px, are analysed exactly as
decoded. The factor follows the field, not the image: a small film on a wide canvas is not shrunk. The evidence
thumbnails and the DICOM Secondary Capture are still cut from the decoded resolution (:mod:`cxrtriage.pipeline`),
and boxes are reported in original pixels.

How: the last ``H mod k`` rows and ``W mod k`` columns are left out (at most ``k - 1`` px, at the bottom and right
edges); each block is summed in float64 in the order rows then columns of the block, starting from zero, then
divided by ``k * k`` and rounded to float32. The browser page sums in the same order in JavaScript's doubles
(``demo_app/browser/decode.js``), so both get the same bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ANALYSIS_SIDE", "analysis_factor", "analysis_image"]

#: twice the largest model input (the classifier's 256 px): the smallest longer side an analysis image has after a
#: reduction
ANALYSIS_SIDE = 512


def analysis_factor(height: int, width: int) -> int:
    """The whole factor an image of this size is shrunk by for analysis (1: analysed as decoded)."""
    return max(1, max(int(height), int(width)) // ANALYSIS_SIDE)


def analysis_image(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """``(analysis pixels, k)``: the (H, W) float32 image box-averaged over ``k x k`` blocks, or itself when k is 1."""
    height, width = pixels.shape
    k = analysis_factor(height, width)
    if k == 1:
        return pixels, 1
    h, w = height // k * k, width // k * k
    total = np.zeros((h // k, w // k), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            total += pixels[i:h:k, j:w:k]
    total /= k * k
    return total.astype(np.float32), k
