"""The single fine-tuning recipe for the HAI-DEF models (called by the prototype's 02 notebook).

Two pieces:

* :func:`finetune` — LoRA (optionally QLoRA) on MedGemma's language model, vision tower frozen, plain PyTorch
  loop (no ``Trainer``), loss on the assistant tokens only. Saves the adapter and a merged checkpoint that
  ``AutoModelForImageTextToText.from_pretrained`` (and so
  :class:`~cxrtriage.backends.medgemma.explainer.MedGemmaExplainer`) loads as is.
* :func:`train_medsiglip_probe` — the MedSigLIP linear probe on the committed split (train / val).

Targets come from the dataset labels only (NIH ChestX-ray14 labels, Kermany folder labels): there are no
reports here, so a target never says more than the labels do. With MIMIC-CXR (credentialed, not available
here) the report's IMPRESSION section would be the "explanation" target instead of the label sentence.
The tiny stand-in models prove the plumbing on CPU, never quality.

This module holds the training loop and the reload checks, and re-exports the names the 02 notebook calls as
``ft.<name>``. The pieces: :mod:`~cxrtriage.hai_def.finetune_config` (the hyper-parameters),
:mod:`~cxrtriage.hai_def.finetune_model_choice` (real model or stand-in), :mod:`~cxrtriage.hai_def.finetune_data`
(targets and tokenisation), :mod:`~cxrtriage.hai_def.medsiglip_probe_training` (the probe).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cxrtriage.hai_def.finetune_config import (
    GEMMA_PROJECTIONS,
    PROGRESS_EVERY_S,
    TASKS,
    FinetuneConfig,
    Task,
    config_rows,
    field_docs,
)
from cxrtriage.hai_def.finetune_data import (
    balanced_records,
    build_examples,
    collate,
    encode_example,
    example_image,
    prompt_messages,
    with_image,
)
from cxrtriage.hai_def.finetune_model_choice import choose_model
from cxrtriage.hai_def.medsiglip_probe_training import train_medsiglip_probe

__all__ = [  # what the 02 notebook calls as ``ft.<name>`` (``from cxrtriage.hai_def import finetune as ft``)
    "GEMMA_PROJECTIONS",
    "TASKS",
    "FinetuneConfig",
    "balanced_records",
    "build_examples",
    "choose_model",
    "compare_adapter_and_merged",
    "config_rows",
    "encode_example",
    "field_docs",
    "finetune",
    "train_medsiglip_probe",
    "verify_reload",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ training


def _lora_target_regex(target_modules: str | Sequence[str]) -> str:
    """peft regex matching only linear layers inside the language model (vision tower/projector stay frozen)."""
    if target_modules == "all-linear":
        names = GEMMA_PROJECTIONS
    elif isinstance(target_modules, str):
        names = (target_modules,)
    else:
        names = tuple(target_modules)
    return r".*language_model.*\.(" + "|".join(names) + r")$"


def _load_base(model_dir: str | Path, cfg: FinetuneConfig, device, quantize: bool):
    import torch
    from transformers import AutoModelForImageTextToText

    dtype = torch.bfloat16 if (device.type == "cuda" and cfg.bf16) else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantize:
        from cxrtriage.backends.model_source import four_bit_kwargs

        kwargs.update(four_bit_kwargs(str(device), dtype))
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), **kwargs)
    if not quantize:
        model.to(device)
    return model, dtype


def finetune(
    model_dir: str | Path,
    examples_with_images: Sequence[dict],
    out_dir: str | Path,
    cfg: FinetuneConfig | None = None,
    device: str | None = None,
    *,
    progress: bool = False,
) -> Path:
    """LoRA fine-tune of MedGemma on chat examples; writes ``adapter/``, ``merged/`` and ``train_log.json``
    (config, and per optimizer step: step, epoch, loss, lr).

    Examples come from :func:`build_examples` (an ``"image"`` key, else ``"image_path"`` is read).
    ``progress`` shows a progress bar over the optimizer steps with the running loss. Returns ``out_dir``.
    """
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from tqdm import tqdm
    from transformers import AutoProcessor

    cfg = cfg or FinetuneConfig()
    examples = list(examples_with_images)
    if not examples:
        raise ValueError("no training examples")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.qlora:
        from cxrtriage.backends.model_source import require_4bit

        require_4bit(str(dev))  # before any work: a clear error, not a bitsandbytes traceback
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    processor = AutoProcessor.from_pretrained(str(model_dir))
    pad_id = processor.tokenizer.pad_token_id
    encoded = [encode_example(processor, ex, cfg.max_length) for ex in examples]

    model, dtype = _load_base(model_dir, cfg, dev, quantize=cfg.qlora)
    model.config.use_cache = False
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    for p in model.parameters():  # vision tower, projector and base LM frozen; only LoRA weights train
        p.requires_grad_(False)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=_lora_target_regex(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    log.info("LoRA: %d trainable parameters (%s)", n_trainable, lora.target_modules)

    micro_per_epoch = math.ceil(len(encoded) / cfg.per_device_batch)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total_steps)
    opt = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    gen = random.Random(cfg.seed)  # noqa: S311 - seeded for a reproducible run, not a secret

    history: list[dict] = []
    model.train()
    step = 0
    # a refresh at most every few seconds: a saved notebook keeps every refresh as one more line
    bar = tqdm(
        total=total_steps, desc=f"LoRA {cfg.task}", unit="step", disable=not progress, mininterval=PROGRESS_EVERY_S
    )
    for epoch in range(cfg.epochs):
        order = list(range(len(encoded)))
        gen.shuffle(order)
        batches = [order[i : i + cfg.per_device_batch] for i in range(0, len(order), cfg.per_device_batch)]
        for start in range(0, len(batches), cfg.grad_accum):
            group = batches[start : start + cfg.grad_accum]
            n_tokens = [int((encoded[i]["labels"] != -100).sum()) for b in group for i in b]
            total_tok = max(sum(n_tokens), 1)
            loss_sum = 0.0
            for b in group:
                batch = collate([encoded[i] for i in b], pad_id)
                batch = {k: v.to(dev) for k, v in batch.items()}
                batch["pixel_values"] = batch["pixel_values"].to(dtype)
                out = model(**batch)
                # token-weighted mean over the whole accumulated step (the model's loss is a per-batch mean)
                tok = int((batch["labels"][:, 1:] != -100).sum())
                (out.loss * tok / total_tok).backward()
                loss_sum += float(out.loss.detach()) * tok
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss = loss_sum / total_tok
            history.append({"step": step, "epoch": epoch, "loss": loss, "lr": sched.get_last_lr()[0]})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if step % cfg.log_every == 0:
                log.info("step %d/%d epoch %d loss %.4f", step, total_steps, epoch, loss)

    bar.close()
    adapter_dir = out_dir / "adapter"
    model.save_pretrained(adapter_dir)
    processor.save_pretrained(adapter_dir)

    # merge into an unquantised copy of the base (a 4-bit base cannot be merged losslessly)
    del model
    base, _ = _load_base(model_dir, cfg, dev, quantize=False)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.config.use_cache = True
    merged_dir = out_dir / "merged"
    merged.save_pretrained(merged_dir)
    processor.save_pretrained(merged_dir)

    (out_dir / "train_log.json").write_text(
        json.dumps(
            {
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
                "n_examples": len(examples),
                "n_trainable_params": n_trainable,
                "steps": history,
                "device": str(dev),
                "base_model": str(model_dir),
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return out_dir


# ------------------------------------------------------------------------------------------ reload checks


def verify_reload(out_dir: str | Path, image, max_new_tokens: int = 8, task: Task = "urgency") -> str:
    """Load ``out_dir/merged`` the way the app does and generate a few tokens for one image; returns the text."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    merged_dir = Path(out_dir) / "merged"
    processor = AutoProcessor.from_pretrained(str(merged_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    pil = example_image({"image": image})
    messages = with_image(prompt_messages(task), pil)
    enc = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    n = enc["input_ids"].shape[1]
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, n:], skip_special_tokens=True)


def compare_adapter_and_merged(
    out_dir: str | Path, base_model_dir: str | Path, image, task: Task = "urgency", max_new_tokens: int = 16
) -> dict[str, Any]:
    """Reload both saved forms of one fine-tune — the base + ``out_dir/adapter`` (peft, unmerged) and
    ``out_dir/merged`` — on CPU in fp32, run the same prompt and image through each, and compare: the largest
    absolute difference of the next-token logits over the prompt, and whether greedy decoding gives the same
    tokens. Returns ``{"max_abs_logit_diff", "same_greedy_text", "adapter_text", "merged_text", "prompt_tokens"}``.
    (After QLoRA the adapter was trained on a 4-bit base but is merged into the unquantised one, so expect a
    larger difference there.)"""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out_dir = Path(out_dir)
    processor = AutoProcessor.from_pretrained(str(out_dir / "merged"))
    messages = with_image(prompt_messages(task), example_image({"image": image}))
    enc = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    n = int(enc["input_ids"].shape[1])

    def run(model) -> tuple[Any, str]:
        model.eval()
        with torch.inference_mode():
            logits = model(**enc).logits.float()
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        return logits, processor.decode(gen[0, n:], skip_special_tokens=True)

    base = AutoModelForImageTextToText.from_pretrained(str(base_model_dir), dtype=torch.float32)
    adapter_logits, adapter_text = run(PeftModel.from_pretrained(base, str(out_dir / "adapter")))
    merged_logits, merged_text = run(
        AutoModelForImageTextToText.from_pretrained(str(out_dir / "merged"), dtype=torch.float32)
    )
    return {
        "max_abs_logit_diff": float((adapter_logits - merged_logits).abs().max()),
        "same_greedy_text": adapter_text == merged_text,
        "adapter_text": adapter_text,
        "merged_text": merged_text,
        "prompt_tokens": n,
    }
