"""The MedGemma LoRA recipe's settings: :class:`FinetuneConfig` (every hyper-parameter, documented in its docstring),
the ``cxrtriage hai-def finetune`` flags that set them, and the table of them the 02 notebook shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["urgency", "explanation"]
TASKS = ("urgency", "explanation")

# Gemma 3 language-model projections; restricted to the language model by :func:`_lora_target_regex`.
GEMMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: seconds between progress-bar refreshes (``progress=True``)
PROGRESS_EVERY_S = 5.0


@dataclass
class FinetuneConfig:
    """Every hyper-parameter of the MedGemma LoRA recipe. Defaults target one 24-40 GB GPU (4B model, bf16);
    with ``qlora=True`` one 16-24 GB GPU is expected to suffice (not measured here: no GPU, no real weights).

    task: "urgency" (strict JSON answer, the explainer's prompt) or "explanation" (one-line sentence).
    lora_r: LoRA rank (size of the low-rank update).
    lora_alpha: LoRA scaling numerator (the update is scaled by lora_alpha / lora_r).
    lora_dropout: dropout on the LoRA branch's input.
    target_modules: "all-linear" or a tuple of module names; either way only modules inside the language
        model are adapted (the vision tower and projector stay frozen).
    learning_rate: AdamW learning rate (linear warm-up, then constant).
    weight_decay: AdamW weight decay on the LoRA weights.
    warmup_ratio: fraction of the optimizer steps spent in the linear learning-rate warm-up.
    epochs: passes over the examples.
    per_device_batch: examples per forward pass.
    grad_accum: forward passes per optimizer step (effective batch = per_device_batch * grad_accum).
    max_length: token budget per example (prompt incl. image tokens + answer); answers are cut at the end,
        an example whose prompt alone exceeds it is an error.
    max_grad_norm: gradient clipping.
    gradient_checkpointing: trade compute for memory (non-reentrant checkpointing).
    qlora: load the base in 4-bit NF4 via bitsandbytes (CUDA only; a clear error elsewhere).
    bf16: bf16 weights/compute on CUDA (ignored on CPU, which trains in fp32).
    seed: torch / python RNG seed (LoRA init and shuffling).
    log_every: log the loss every N optimizer steps.
    """

    task: Task = "urgency"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = GEMMA_PROJECTIONS
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    epochs: int = 1
    per_device_batch: int = 4
    grad_accum: int = 4
    max_length: int = 768  # urgency task: ~165 text + 258 image + ~60 answer tokens (text at ~4 chars per token)
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    qlora: bool = False
    bf16: bool = True
    seed: int = 0
    log_every: int = 1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.per_device_batch < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ValueError("per_device_batch, grad_accum and epochs must be >= 1")


def field_docs(cls: type = FinetuneConfig) -> dict[str, str]:
    """Field name -> its sentence in the class docstring (entries ``name: text`` or ``a / b / c: text``, continued
    on deeper-indented lines). The hyper-parameter table of the 02 notebook is built from this, never retyped."""
    import inspect
    import re

    doc = inspect.cleandoc(cls.__doc__ or "")
    entries: list[tuple[list[str], list[str]]] = []
    for line in doc.splitlines():
        m = re.match(r"^([A-Za-z_]\w*(?:\s*/\s*[A-Za-z_]\w*)*):\s+(.*)$", line)
        if m:
            entries.append(([n.strip() for n in m.group(1).split("/")], [m.group(2).strip()]))
        elif entries and line.startswith((" ", "\t")) and line.strip():
            entries[-1][1].append(line.strip())
        elif not line.strip() and entries:
            entries.append(([], []))  # a blank line ends the current entry
    out: dict[str, str] = {}
    for names, text in entries:
        for name in names:
            out.setdefault(name, " ".join(text))
    return out


#: CLI flag (argparse dest) -> FinetuneConfig field
FINETUNE_FLAGS = {
    "task": "task",
    "epochs": "epochs",
    "lr": "learning_rate",
    "lora_r": "lora_r",
    "batch": "per_device_batch",
    "grad_accum": "grad_accum",
    "max_length": "max_length",
}


def config_rows(cfg: FinetuneConfig | None = None) -> list[dict[str, Any]]:
    """One row per :class:`FinetuneConfig` field: ``field``, ``value`` (of ``cfg``), ``default``, ``changed``,
    ``cli`` (the ``cxrtriage hai-def finetune`` flag; every field is also settable with ``--config cfg.json``)
    and ``meaning`` (from the docstring)."""
    from dataclasses import MISSING, fields

    cfg = cfg or FinetuneConfig()
    docs = field_docs(type(cfg))
    flags = {fld: "--" + flag.replace("_", "-") for flag, fld in FINETUNE_FLAGS.items()}
    flags.update({"qlora": "--qlora", "gradient_checkpointing": "--no-gradient-checkpointing"})

    def show(v: Any) -> Any:
        return ", ".join(v) if isinstance(v, tuple) else v

    rows = []
    for f in fields(cfg):
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else None)
        )
        value = getattr(cfg, f.name)
        rows.append(
            {
                "field": f.name,
                "value": show(value),
                "default": show(default),
                "changed": value != default,
                "cli": flags.get(f.name, "--config"),
                "meaning": docs.get(f.name, ""),
            }
        )
    return rows
