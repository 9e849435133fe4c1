"""Where the service serves the evidence thumbnails, and how a result names them: the rule lives in
:mod:`cxrtriage.crop_urls` (a base module, so that the DICOM node files results by the same rule without importing
the web layer); ``create_app`` mounts the directory at :data:`CROPS_URL`, ``POST /predict`` rewrites its answer and
the UI's Worklist tab rewrites what it files, all through this re-export.
"""

from __future__ import annotations

from cxrtriage.crop_urls import CROPS_URL, with_crop_urls

__all__ = ["CROPS_URL", "with_crop_urls"]
