"""The request -> Prediction step of ``POST /predict`` (implemented in :mod:`cxrtriage.serve.routes.predict` and
:mod:`cxrtriage.serve.crops`, re-exported by :mod:`cxrtriage.serve.app`)."""

from cxrtriage.serve.app import check_upload, predict_upload, with_crop_urls

__all__ = ["check_upload", "predict_upload", "with_crop_urls"]
