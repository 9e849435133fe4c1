"""Which checkpoint a fine-tuning notebook trains: the real HAI-DEF model when it can be trained here, else a tiny
random-weight stand-in (:func:`choose_model`). Never downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: kind -> (hub id of the real model, config model_type)
REAL_MODELS = {"MedGemma": ("google/medgemma-4b-it", "gemma3"), "MedSigLIP": ("google/medsiglip-448", "siglip")}
STAND_IN_NOTE = "random weights: its outputs mean nothing medically"
HARDWARE = {
    "MedGemma": (
        "QLoRA of MedGemma 4B needs one CUDA GPU with 16-24 GB (4-bit NF4 base through bitsandbytes, bf16 "
        "compute, gradient checkpointing; an estimate, not measured here), the weights downloaded once "
        "after accepting the HAI-DEF terms: `hf download google/medgemma-4b-it`, then "
        "`cxrtriage hai-def finetune --model google/medgemma-4b-it --out ft --task urgency --qlora`"
    ),
    "MedSigLIP": (
        "embedding the split with MedSigLIP-448 takes ~2 s per image on a CPU (prototype/models/"
        "README_models.md), so the real probe is meant for a CUDA GPU: `hf download google/medsiglip-448`, "
        "then `cxrtriage hai-def train-probe --model google/medsiglip-448 --out probe`"
    ),
}


@dataclass(frozen=True)
class ModelChoice:
    """Which checkpoint a notebook trains: ``path``, whether it is a random-weight ``stand_in``, the ``device``,
    and a ``note`` saying why (shown in the notebook)."""

    kind: str
    path: str
    stand_in: bool
    device: str
    note: str


def choose_model(
    kind: str, requested: str | None, stand_in: str | Path, *, full: bool, cuda: bool | None = None
) -> ModelChoice:
    """The real HAI-DEF model when the ``full`` profile can train it here (``requested``, else a known hub id in
    the local Hugging Face cache; of the right architecture and real size; and a CUDA GPU), else ``stand_in``.
    The smoke profile always uses the stand-in. A ``requested`` model that cannot be found raises ModelError.
    Never downloads; the note says what was found and what the real run needs."""
    if kind not in REAL_MODELS:
        raise ValueError(f"kind must be one of {tuple(REAL_MODELS)}, got {kind!r}")
    hub_id, model_type = REAL_MODELS[kind]
    fallback = f"the tiny {kind} stand-in runs instead ({STAND_IN_NOTE}). Real run: {HARDWARE[kind]}"
    if not full:
        extra = f"; {requested!r} is only used by the full profile" if requested else ""
        return ModelChoice(
            kind, str(stand_in), True, "cpu", f"smoke profile: the tiny {kind} stand-in ({STAND_IN_NOTE}){extra}"
        )
    from cxrtriage.backends.model_source import checkpoint_shape, find_local_medgemma, is_stand_in, resolve_model
    from cxrtriage.errors import ModelError

    if kind == "MedGemma":  # a named model that is missing is an error (as in the 01 notebook); else probe the cache
        path = find_local_medgemma(requested)
    else:
        try:
            path = resolve_model(requested or hub_id, kind=kind)
        except ModelError:
            if requested:
                raise
            path = None
    if path is None:
        return ModelChoice(
            kind,
            str(stand_in),
            True,
            "cpu",
            f"no real {kind} weights in the local Hugging Face cache (nothing is downloaded), so " + fallback,
        )
    found_type, hidden = checkpoint_shape(path, kind)
    if found_type != model_type:
        return ModelChoice(
            kind,
            str(stand_in),
            True,
            "cpu",
            f"{path} is not a {kind} checkpoint (model_type {found_type!r}, expected {model_type!r}), so " + fallback,
        )
    if is_stand_in(path, kind):
        return ModelChoice(
            kind,
            str(path),
            True,
            "cpu",
            f"{path} is far smaller than the real {kind} (hidden size "
            f"{hidden}), so it is treated as a stand-in: its outputs mean nothing medically",
        )
    if cuda is None:
        import torch

        cuda = bool(torch.cuda.is_available())
    if not cuda:
        return ModelChoice(
            kind,
            str(stand_in),
            True,
            "cpu",
            f"{kind} weights found at {path}, but there is no CUDA GPU here, so " + fallback,
        )
    return ModelChoice(kind, str(path), False, "cuda", f"full profile: the real {kind} weights at {path}, on CUDA")
