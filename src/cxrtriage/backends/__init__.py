"""Model backends behind declared stages (:mod:`cxrtriage.backends.base`): a classifier and an optional explainer."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cxrtriage.backends.base import Backend, BackendOutput, Explainer, SecondOpinion, Stages


def _bundled(model_dir: str | Path | None) -> Stages:
    from cxrtriage.backends.bundled import BundledOnnxBackend

    return Stages(BundledOnnxBackend(model_dir))


def _medsiglip(model_dir: str | Path | None) -> Stages:
    """MedSigLIP embeddings + linear probe; model from model_dir / CXRTRIAGE_MODEL, probe from CXRTRIAGE_CLASSIFIER.
    A directory holding an ONNX export (model.json + model.onnx) is served torch-free by BundledOnnxBackend."""
    from cxrtriage.backends.medsiglip import from_env

    return Stages(from_env(model_dir))


def _medgemma(model_dir: str | Path | None) -> Stages:
    """Classifier (bundled, or MedSigLIP probe via CXRTRIAGE_CLASSIFIER) labels; MedGemma (model_dir / CXRTRIAGE_MODEL)
    explains and gives a second opinion."""
    from cxrtriage.backends.medgemma import from_env

    return from_env(model_dir)


def _medgemma_gguf(model_dir: str | Path | None) -> Stages:
    """As ``medgemma``, with MedGemma as GGUF (text model + mmproj) through llama.cpp (the [edge] extra)."""
    from cxrtriage.backends.medgemma import gguf_from_env

    return gguf_from_env(model_dir)


# name -> loader(model_dir). Heavy imports (torch, transformers) stay inside the loaders so the bundled path
# never pays for them. Add a backend by adding one entry.
BACKENDS: dict[str, Callable[[str | Path | None], Stages]] = {
    "bundled": _bundled,
    "medsiglip": _medsiglip,
    "medgemma": _medgemma,
    "medgemma-gguf": _medgemma_gguf,
}


def load_stages(name: str = "bundled", model_dir: str | Path | None = None) -> Stages:
    """The classifier and (for ``medgemma``, ``medgemma-gguf``) the explainer of a configuration: the factory every
    caller uses (CLI, service, UI, notebooks), through :class:`cxrtriage.pipeline.Triage`."""
    loader = BACKENDS.get(name)
    if loader is None:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return loader(model_dir)


def load_backend(name: str = "bundled", model_dir: str | Path | None = None) -> Backend:
    """The classifier of a configuration that has no explainer (``bundled``, ``medsiglip``)."""
    stages = load_stages(name, model_dir)
    if stages.explainer is not None:
        raise ValueError(f"backend {name!r} has an explainer stage as well: use load_stages({name!r}, ...)")
    return stages.classifier


__all__ = ["BACKENDS", "Backend", "BackendOutput", "Explainer", "SecondOpinion", "Stages", "load_backend",
           "load_stages"]
