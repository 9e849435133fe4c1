"""Google HAI-DEF models (MedSigLIP, later MedGemma): offline model resolution, tiny stand-ins for tests,
and linear-probe training. Importing this package pulls in nothing heavy; torch/transformers load lazily."""

from cxrtriage.backends.model_source import pick_device_dtype, resolve_model

__all__ = ["pick_device_dtype", "resolve_model"]
