"""Model loading and warm-up used by the service (implemented in :mod:`cxrtriage.serve.runtime`, re-exported by
:mod:`cxrtriage.serve.app`)."""

from cxrtriage.serve.app import EngineState, load_engine, warm_up

__all__ = ["EngineState", "load_engine", "warm_up"]
