"""Safety rules: the not-a-chest-X-ray gate and the review-band decision.

The gate runs in three stages. Cheap checks on the DICOM header and image statistics reject what is obviously
not a frontal chest radiograph (CT/MR slices, lateral views, blank, noise or smooth synthetic images, colour
photographs, strange aspect ratios). Then the coarse layout of the image must be explained by the principal
components of training radiographs (cxrtriage.imaging.layout; the bound is set on validation images at export time).
Last, after the model has run, the image embedding must lie close enough to the training images (mean cosine
similarity of its k nearest training cases); this catches little on its own, see cxrtriage.imaging.layout.
"""

from __future__ import annotations

import numpy as np

from cxrtriage.errors import InvalidImageError, NotAChestXrayError
from cxrtriage.imaging.load import ImageMeta
from cxrtriage.imaging.preprocess import resize_square

NON_RADIOGRAPH_MODALITIES = {
    "CT",
    "MR",
    "US",
    "NM",
    "PT",
    "MG",
    "XA",
    "RF",
    "OCT",
    "OP",
    "SM",
    "ES",
    "IVUS",
    "ECG",
    "SR",
    "PX",
    "IO",
    "RTDOSE",
    "RTSTRUCT",
    "RTPLAN",
    "RTIMAGE",
    "SEG",
    "REG",
    "KO",
    "PR",
    "DOC",
    "GM",
    "XC",
    "BMD",
}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
NON_CHEST_BODY_PARTS = {
    "HEAD",
    "BRAIN",
    "SKULL",
    "KNEE",
    "HAND",
    "FOOT",
    "ANKLE",
    "WRIST",
    "ELBOW",
    "HIP",
    "PELVIS",
    "SPINE",
    "CSPINE",
    "LSPINE",
    "ABDOMEN",
    "BREAST",
    "SHOULDER",
    "LEG",
    "ARM",
    "EXTREMITY",
}
MIN_SIDE = 64
MAX_ASPECT = 2.0
MIN_STD = 0.05
#: below MIN_STD, an image whose 1st..99th percentile spread is at least this is "low contrast", not blank: real
#: films can be that flat (a JSRT radiograph measured std 0.013, spread 0.06), and only the lungs can tell
MIN_LOW_CONTRAST_SPREAD = 0.03
BLANK_MESSAGE = "the image is blank or has almost no contrast"
MAX_COLOURFULNESS = 0.08
MAX_ROUGHNESS = 0.45
MIN_ROUGHNESS = 0.01


def image_statistics(pixels: np.ndarray) -> dict[str, float]:
    """Statistics on a 128 px copy: contrast (std) and roughness (mean |Laplacian| relative to std), which is
    high for noise and text-like screenshots and low for radiographs, whose content is smooth at that scale."""
    small = resize_square(pixels, 128).astype(np.float64)
    std = float(small.std())
    lap = np.abs(4 * small[1:-1, 1:-1] - small[:-2, 1:-1] - small[2:, 1:-1] - small[1:-1, :-2] - small[1:-1, 2:])
    roughness = float(lap.mean() / max(std, 1e-6))
    return {"std": std, "roughness": roughness}


def check_header_and_statistics(
    pixels: np.ndarray, meta: ImageMeta, *, allow_low_contrast: bool = False
) -> dict[str, float]:
    """Raise NotAChestXrayError / InvalidImageError for inputs that are clearly not frontal chest radiographs.

    ``allow_low_contrast``: a very flat image that is not blank passes with ``stats["low_contrast"] = 1.0``, for a
    caller that can still check it (the pipeline with the lung segmentation: a typical pair of lungs is triaged for
    review, anything else is refused as blank)."""
    if meta.modality and meta.modality.upper() in NON_RADIOGRAPH_MODALITIES:
        raise NotAChestXrayError(f"this DICOM is a {meta.modality} image, not a chest radiograph (expected CR or DX)")
    if meta.view_position and meta.view_position.upper() in LATERAL_VIEWS:
        raise NotAChestXrayError(
            f"this is a lateral view ({meta.view_position}); cxrtriage only triages frontal (PA/AP) chest radiographs"
        )
    if meta.body_part and meta.body_part.upper().replace(" ", "") in NON_CHEST_BODY_PARTS:
        raise NotAChestXrayError(f"the DICOM header says the body part is {meta.body_part}, not the chest")
    h, w = pixels.shape
    if min(h, w) < MIN_SIDE:
        raise InvalidImageError(f"image is {w}x{h} pixels; at least {MIN_SIDE} px on each side is needed")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        raise NotAChestXrayError(f"aspect ratio {max(h, w) / min(h, w):.1f}:1 is not that of a chest radiograph")
    if meta.colourfulness is not None and meta.colourfulness > MAX_COLOURFULNESS:
        raise NotAChestXrayError(
            "this is a colour image (a photograph or screenshot?), not a grey-scale chest radiograph"
        )
    stats = image_statistics(pixels)
    if stats["std"] < MIN_STD:
        lo, hi = np.percentile(pixels, (1.0, 99.0))
        if not allow_low_contrast or hi - lo < MIN_LOW_CONTRAST_SPREAD:
            raise NotAChestXrayError(BLANK_MESSAGE)
        stats["low_contrast"] = 1.0
    if stats["roughness"] > MAX_ROUGHNESS:
        raise NotAChestXrayError("the image looks like noise or a screenshot, not a chest radiograph")
    if stats["roughness"] < MIN_ROUGHNESS:
        raise NotAChestXrayError("the image is a smooth synthetic pattern, not a chest radiograph")
    return stats


def check_layout(residual: float | None, max_residual: float | None) -> None:
    """Reject images whose coarse layout is unlike the training chest radiographs (see cxrtriage.imaging.layout)."""
    if residual is None or max_residual is None:
        return
    if residual > max_residual:
        raise NotAChestXrayError(
            "the image does not have the layout of a frontal chest radiograph "
            f"(layout residual {residual:.2f} > {max_residual:.2f})"
        )


def check_embedding(knn_similarity: float | None, min_similarity: float | None) -> None:
    """Reject images whose embedding is far from every training chest radiograph."""
    if knn_similarity is None or min_similarity is None:
        return
    if knn_similarity < min_similarity:
        raise NotAChestXrayError(
            "the image does not resemble the frontal chest radiographs the model was trained on "
            f"(similarity {knn_similarity:.2f} < {min_similarity:.2f})"
        )
