"""Model backends behind declared stages (:mod:`cxrtriage.backends.base`): a classifier and an optional explainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cxrtriage.backends.base import Backend, BackendOutput, Explainer, SecondOpinion, Stages
from cxrtriage.config import Settings
from cxrtriage.errors import ConfigurationError

#: a loader: (the model to load, None for the backend's default; the configuration) -> the stages
Loader = Callable[[str | Path | None, Settings], Stages]


def _bundled(model_dir: str | Path | None, settings: Settings) -> Stages:
    from cxrtriage.backends.bundled import BundledOnnxBackend

    return Stages(BundledOnnxBackend(model_dir, threads=settings.threads))


def _medsiglip(model: str | Path | None, settings: Settings) -> Stages:
    """MedSigLIP embeddings + linear probe: the model given (``settings.model``), probe ``settings.classifier``.
    A directory holding an ONNX export (model.json + model.onnx) is served torch-free by BundledOnnxBackend."""
    from cxrtriage.backends.medsiglip import from_settings

    return Stages(from_settings(model, settings))


def _medgemma(model: str | Path | None, settings: Settings) -> Stages:
    """Classifier (bundled, or MedSigLIP probe via ``settings.classifier``) labels; MedGemma (the model given)
    explains and gives a second opinion."""
    from cxrtriage.backends.medgemma.backend import from_settings

    return from_settings(model, settings)


def _medgemma_gguf(model: str | Path | None, settings: Settings) -> Stages:
    """As ``medgemma``, with MedGemma as GGUF (text model + mmproj) through llama.cpp (the [edge] extra)."""
    from cxrtriage.backends.medgemma.backend import gguf_from_settings

    return gguf_from_settings(model, settings)


# name -> loader(model, settings). Heavy imports (torch, transformers) stay inside the loaders so the bundled path
# never pays for them. Add a backend by adding one entry.
BACKENDS: dict[str, Loader] = {
    "bundled": _bundled,
    "medsiglip": _medsiglip,
    "medgemma": _medgemma,
    "medgemma-gguf": _medgemma_gguf,
}


def load_stages(name: str = "bundled", model_dir: str | Path | None = None, settings: Settings | None = None) -> Stages:
    """The classifier and (for ``medgemma``, ``medgemma-gguf``) the explainer of a configuration: the factory every
    caller uses (CLI, service, UI, notebooks), through :class:`cxrtriage.pipeline.Triage`.

    ``model_dir``: the model to load (wins over ``settings``); else ``settings.model_for(name)``. ``settings``
    (classifier probe, device, threads, ...): None reads them from the environment here."""
    loader = BACKENDS.get(name)
    if loader is None:
        raise ConfigurationError(
            f"unknown backend {name!r} (CXRTRIAGE_BACKEND or --backend); available: {', '.join(sorted(BACKENDS))}"
        )
    settings = settings if settings is not None else Settings()
    return loader(model_dir or settings.model_for(name), settings)


def load_backend(
    name: str = "bundled", model_dir: str | Path | None = None, settings: Settings | None = None
) -> Backend:
    """The classifier of a configuration that has no explainer (``bundled``, ``medsiglip``)."""
    stages = load_stages(name, model_dir, settings)
    if stages.explainer is not None:
        raise ValueError(f"backend {name!r} has an explainer stage as well: use load_stages({name!r}, ...)")
    return stages.classifier


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendOutput",
    "Explainer",
    "SecondOpinion",
    "Stages",
    "load_backend",
    "load_stages",
]
