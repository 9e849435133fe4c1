"""cxrtriage: offline, safety-first chest X-ray triage (decision support only — not a diagnostic tool).

Public surface::

    import cxrtriage
    result = cxrtriage.predict("chest.dcm", prior_report="No pneumothorax.")
    print(result.label, result.score, result.explanation)

Attributes are resolved lazily so that ``import cxrtriage`` stays cheap and side-effect free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["predict", "Prediction", "load_image", "Triage", "DISCLAIMER", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from cxrtriage.imaging.load import load_image
    from cxrtriage.pipeline import Triage, predict
    from cxrtriage.schema import DISCLAIMER, Prediction

_LAZY = {
    "predict": ("cxrtriage.pipeline", "predict"),
    "Triage": ("cxrtriage.pipeline", "Triage"),
    "Prediction": ("cxrtriage.schema", "Prediction"),
    "DISCLAIMER": ("cxrtriage.schema", "DISCLAIMER"),
    "load_image": ("cxrtriage.imaging.load", "load_image"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cxrtriage' has no attribute {name!r}")
