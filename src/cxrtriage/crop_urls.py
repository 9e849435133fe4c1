"""How a stored or served result names its evidence thumbnails: by the URL the service serves them at, never by a
server path.

The engine writes each crop to the crops directory (``CXRTRIAGE_CROPS_DIR``) and names it by its file-system path; a
result that leaves the process (``POST /predict``'s answer) or is stored for readers (the worklist, filed by the
service, its UI or the DICOM node) names it by the URL under :data:`CROPS_URL` instead, so server paths stay private
and the worklist shows the same thumbnails whoever filed the study. This is a base module (no web imports), so that
the DICOM node, which must never import FastAPI or Gradio, applies the same rule as the service
(:mod:`cxrtriage.serve.crops` re-exports it for the web layer)."""

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
