"""Model backends behind one small interface (:class:`cxrtriage.backends.base.Backend`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cxrtriage.backends.base import Backend, BackendOutput


def _bundled(model_dir: str | Path | None) -> Backend:
    from cxrtriage.backends.bundled import BundledOnnxBackend

    return BundledOnnxBackend(model_dir)


def _medsiglip(model_dir: str | Path | None) -> Backend:
    """MedSigLIP embeddings + linear probe; model from model_dir / CXRTRIAGE_MODEL, probe from CXRTRIAGE_CLASSIFIER.
    A directory holding an ONNX export (model.json + model.onnx) is served torch-free by BundledOnnxBackend."""
    from cxrtriage.backends.medsiglip import from_env

    return from_env(model_dir)


def _medgemma(model_dir: str | Path | None) -> Backend:
    """Classifier (bundled, or MedSigLIP probe via CXRTRIAGE_CLASSIFIER) labels; MedGemma (model_dir / CXRTRIAGE_MODEL)
    explains and gives a second opinion."""
    from cxrtriage.backends.medgemma import from_env

    return from_env(model_dir)


def _medgemma_gguf(model_dir: str | Path | None) -> Backend:
    """As ``medgemma``, with MedGemma as GGUF (text model + mmproj) through llama.cpp (the [edge] extra)."""
    from cxrtriage.backends.medgemma import gguf_from_env

    return gguf_from_env(model_dir)


# name -> loader(model_dir). Heavy imports (torch, transformers) stay inside the loaders so the bundled path
# never pays for them. Add a backend by adding one entry.
BACKENDS: dict[str, Callable[[str | Path | None], Backend]] = {
    "bundled": _bundled,
    "medsiglip": _medsiglip,
    "medgemma": _medgemma,
    "medgemma-gguf": _medgemma_gguf,
}


def load_backend(name: str = "bundled", model_dir: str | Path | None = None) -> Backend:
    """Backend factory used by every caller (CLI, service, UI, notebooks)."""
    loader = BACKENDS.get(name)
    if loader is None:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return loader(model_dir)


__all__ = ["BACKENDS", "Backend", "BackendOutput", "load_backend"]
