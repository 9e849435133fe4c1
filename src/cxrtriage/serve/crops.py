"""Where the service serves the evidence thumbnails, and how a result names them.

The engine writes each crop to the crops directory and names it by its file-system path; a result that leaves the
server names it by the URL under :data:`CROPS_URL` instead (server paths stay private). ``create_app`` mounts the
directory there, ``POST /predict`` rewrites its answer and the UI's Worklist tab rewrites what it files: all three
read the prefix and the rewrite from here.
"""

from __future__ import annotations

from pathlib import Path

from cxrtriage.schema import Prediction

__all__ = ["CROPS_URL", "with_crop_urls"]

#: the URL prefix of the read-only crops directory
CROPS_URL = "/static/crops"


def with_crop_urls(prediction: Prediction, url_prefix: str = CROPS_URL) -> Prediction:
    """Replace each crop's file-system path by the URL the server serves it at (server paths stay private)."""
    if not prediction.crops:
        return prediction
    prefix = url_prefix.rstrip("/")
    crops = [c.model_copy(update={"thumb_path": f"{prefix}/{Path(c.thumb_path).name}"}) for c in prediction.crops]
    return prediction.model_copy(update={"crops": crops})
