"""Where HAI-DEF weights come from: a local directory or the local Hugging Face cache, never the network.

The models are gated (the HAI-DEF terms must be accepted on huggingface.co), so the app never downloads at run
time: a clinic machine is often offline, and a silent multi-GB download is not acceptable. When the weights are
missing the error tells the user exactly what to do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrtriage.errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("cxrtriage.hai_def")

#: Shown in every "model not found" message: the bundled ONNX model always works offline.
FALLBACK_HINT = "or use the bundled model: CXRTRIAGE_BACKEND=bundled"


def missing_model_message(repo_id: str, kind: str) -> str:
    """The user-facing text for an absent hub model (separate so docs/tests can show the exact wording)."""
    return (
        f"{kind} model {repo_id!r} is not in the local Hugging Face cache and cxrtriage never downloads at run time. "
        f"Accept the HAI-DEF terms at https://huggingface.co/{repo_id}, then run `hf auth login` and "
        f"`hf download {repo_id}` (older huggingface_hub: `huggingface-cli download {repo_id}`), "
        f"or set CXRTRIAGE_MODEL to a local directory with the weights; {FALLBACK_HINT}"
    )


def resolve_model(name_or_path: str, *, kind: str) -> str:
    """A local directory as is, else the snapshot directory of a hub id from the local HF cache only.

    ``kind`` ("MedSigLIP", "MedGemma") only words the error message. Honours HF_HOME / HF_HUB_CACHE.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelError(f"{kind} model path {str(path)!r} is a file, not a model directory; {FALLBACK_HINT}")
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1
    if looks_local:
        raise ModelError(f"{kind} model directory {name_or_path!r} does not exist; {FALLBACK_HINT}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelError(f"huggingface_hub is not installed, cannot resolve {name_or_path!r}; {FALLBACK_HINT}") from exc
    try:
        return str(snapshot_download(name_or_path, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...: all mean "not usable offline"
        raise ModelError(missing_model_message(name_or_path, kind)) from exc


def pick_device_dtype(prefer: str | None = None, *, large: bool = False) -> tuple[str, torch.dtype]:
    """CUDA with bf16 when available, else CPU (bf16 too: halves memory; fp32 for MedGemma 4B needs ~16 GB).

    ``prefer`` ("cpu", "cuda", "cuda:1") overrides the automatic choice; ``large`` logs a memory warning on CPU.
    """
    import torch

    if prefer:
        device = prefer
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {prefer!r} requested but CUDA is not available; use device='cpu'")
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and large:
        log.warning("running a large model on CPU in bf16: expect several GB of RAM and slow inference")
    return device, torch.bfloat16


def require_4bit(device: str) -> None:
    """Raise ModelError unless 4-bit NF4 (bitsandbytes) can run on ``device``: CUDA only, bitsandbytes installed."""
    if not str(device).startswith("cuda"):
        raise ModelError(
            f"4-bit loading (bitsandbytes NF4) needs a CUDA GPU, the device is {str(device)!r}: "
            "unset CXRTRIAGE_4BIT / drop --qlora, or run on a GPU"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ModelError("4-bit loading needs bitsandbytes: pip install bitsandbytes (CUDA only)") from exc


def four_bit_kwargs(device: str, compute_dtype: Any) -> dict[str, Any]:
    """``from_pretrained`` kwargs for a 4-bit NF4 base (bitsandbytes, CUDA only); a clear ModelError elsewhere.
    Shared by inference (CXRTRIAGE_4BIT=1) and QLoRA fine-tuning."""
    require_4bit(device)
    from transformers import BitsAndBytesConfig

    index = int(str(device).split(":")[1]) if ":" in str(device) else 0
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        ),
        "device_map": {"": index},
    }


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weight_files(model_dir: str | Path) -> list[Path]:
    """The weight files of a local checkpoint directory (for its fingerprint and its size on disk)."""
    return sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


#: The MedGemma 4B multimodal checkpoints tried, newest first, when no model is named.
MEDGEMMA_CANDIDATES = ("google/medgemma-1.5-4b-it", "google/medgemma-4b-it")


def find_local_medgemma(named: str | None = None) -> str | None:
    """A real MedGemma available offline: ``named`` (hub id or directory) if given, else the first of
    :data:`MEDGEMMA_CANDIDATES` in the local Hugging Face cache; None when there is none (never downloads).

    A named model that cannot be found is an error (the user asked for it); the candidates are only probed.
    """
    if named:
        return resolve_model(named, kind="MedGemma")
    for repo_id in MEDGEMMA_CANDIDATES:
        try:
            return resolve_model(repo_id, kind="MedGemma")
        except ModelError:
            continue
    return None


#: hidden sizes below this are stand-ins (the tiny ones have 32-64; the real models 1152 / 2560)
REAL_MIN_HIDDEN = 512


def checkpoint_shape(model_dir: str | Path, kind: str) -> tuple[str | None, int | None]:
    """(model_type, hidden size of the language model for MedGemma / of the vision tower for MedSigLIP) read from a
    checkpoint's config.json; (None, None) when there is none."""
    import json

    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return None, None
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    sub = cfg.get("text_config" if kind == "MedGemma" else "vision_config") or {}
    return cfg.get("model_type"), sub.get("hidden_size")


def is_stand_in(model_dir: str | Path, kind: str) -> bool:
    """True for a checkpoint far smaller than the real model (a random-weight stand-in): its outputs must be
    labelled as meaningless wherever they are shown."""
    _, hidden = checkpoint_shape(model_dir, kind)
    return hidden is None or hidden < REAL_MIN_HIDDEN
