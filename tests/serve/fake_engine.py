"""A small fake engine for the service's tests (no model): a fixed Urgent result with one crop thumbnail written to
the crops folder, through the engine's own ``load`` so the upload checks run as in the service."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from cxrtriage.schema import Crop, ModelInfo, Prediction


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Engine:
    """A fixed Urgent result with one crop thumbnail."""

    def __init__(self, crops_dir: Path) -> None:
        self.crops_dir = crops_dir
        self.info = ModelInfo(name="fake", version="1", sha256="0" * 64, backend="fake")
        self.backend = SimpleNamespace(info=self.info, footprint_mb=lambda: 1.0)
        self._lock = threading.Lock()

    def footprint_mb(self) -> float:
        return 1.0

    def load(self, image: Any, *, kind: str | None = None) -> Any:
        from cxrtriage.imaging.load import load_image

        return load_image(image, kind=kind)

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction:
        thumb = self.crops_dir / f"{os.urandom(8).hex()}.png"
        thumb.write_bytes(png_bytes())
        return Prediction(
            label="Urgent",
            score=0.9,
            explanation="fake",
            crops=[Crop(x=1, y=2, w=3, h=4, thumb_path=str(thumb))],
            threshold=0.3,
            review_band=(0.25, 0.35),
            needs_review=False,
            model=self.info,
        )

    def run(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Any:
        from cxrtriage.pipeline import Triaged

        return Triaged(self.predict(image, prior_report), image=image, pixels=image.pixels, polarity_flipped=False)
