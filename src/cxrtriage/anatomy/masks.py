"""Lung and heart masks of one image at its original size, for ``cxrtriage segment`` and Python callers::

from cxrtriage.anatomy.masks import segment_image
result = segment_image("film.png")
result.lungs      # (H, W) bool, both lungs, the original image's size and orientation
result.heart      # (H, W) bool
result.summary()  # cardiothoracic ratio, lung areas, lungs found
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cxrtriage.anatomy.measure import Anatomy, measure
from cxrtriage.anatomy.segmenter import HEART, LEFT_LUNG, RIGHT_LUNG, Segmentation, Segmenter
from cxrtriage.imaging.load import LoadedImage, load_image

ImageLike = str | os.PathLike | bytes | np.ndarray | Image.Image | LoadedImage


@functools.lru_cache(maxsize=2)
def get_segmenter(model_dir: str | None = None) -> Segmenter:
    """Process-wide cached segmenter (the ONNX session loads once)."""
    return Segmenter(model_dir)


@dataclass
class MaskResult:
    """Masks at the ORIGINAL image size (``ImageMeta`` width x height, also for images decoded at reduced size)."""

    segmentation: Segmentation
    anatomy: Anatomy
    width: int
    height: int
    pixel_spacing_mm: tuple[float, float] | None = None

    @property
    def right_lung(self) -> np.ndarray:
        return self.segmentation.mask(RIGHT_LUNG, (self.height, self.width))

    @property
    def left_lung(self) -> np.ndarray:
        return self.segmentation.mask(LEFT_LUNG, (self.height, self.width))

    @property
    def lungs(self) -> np.ndarray:
        return self.right_lung | self.left_lung

    @property
    def heart(self) -> np.ndarray:
        return self.segmentation.mask(HEART, (self.height, self.width))

    def summary(self) -> dict:
        """Cardiothoracic ratio, lung areas in pixels (and cm² when the DICOM gives a pixel spacing), lungs found."""
        out = {
            **self.anatomy.measurements(),
            "width": self.width,
            "height": self.height,
            "right_lung_area_px": int(self.right_lung.sum()),
            "left_lung_area_px": int(self.left_lung.sum()),
            "heart_area_px": int(self.heart.sum()),
        }
        if self.pixel_spacing_mm:
            mm2 = self.pixel_spacing_mm[0] * self.pixel_spacing_mm[1]
            for side in ("right", "left"):
                out[f"{side}_lung_area_cm2"] = round(out[f"{side}_lung_area_px"] * mm2 / 100.0, 1)
        return out


def segment_image(image: ImageLike, segmenter: Segmenter | None = None) -> MaskResult:
    """Decode (any input ``load_image`` takes) and segment one frontal chest radiograph."""
    loaded = image if isinstance(image, LoadedImage) else load_image(image)
    seg = (segmenter or get_segmenter()).segment(loaded.pixels)
    meta = loaded.meta
    return MaskResult(
        segmentation=seg,
        anatomy=measure(seg),
        width=meta.width,
        height=meta.height,
        pixel_spacing_mm=meta.pixel_spacing_mm,
    )
