"""The single fine-tuning recipe for the HAI-DEF models (called by the prototype's 02 notebook).

Two pieces:

* :func:`finetune` — LoRA (optionally QLoRA) on MedGemma's language model, vision tower frozen, plain PyTorch
  loop (no ``Trainer``), loss on the assistant tokens only. Saves the adapter and a merged checkpoint that
  ``AutoModelForImageTextToText.from_pretrained`` (and so :class:`~cxrtriage.backends.medgemma_explainer.MedGemmaExplainer`)
  loads as is.
* :func:`train_medsiglip_probe` — the MedSigLIP linear probe on the committed split (train / val).

Targets come from the dataset labels only (NIH ChestX-ray14 labels, Kermany folder labels): there are no
reports here, so a target never says more than the labels do. With MIMIC-CXR (credentialed, not available
here) the report's IMPRESSION section would be the "explanation" target instead of the label sentence.
The tiny stand-in models prove the plumbing on CPU, never quality.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from cxrtriage.backends.medgemma_prompt import build_messages

log = logging.getLogger(__name__)

Task = Literal["urgency", "explanation"]
TASKS = ("urgency", "explanation")

# Gemma 3 language-model projections; restricted to the language model by :func:`_lora_target_regex`.
GEMMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: seconds between progress-bar refreshes (``progress=True``)
PROGRESS_EVERY_S = 5.0

EXPLANATION_QUESTION = "Describe the main finding of this chest X-ray in one line."
NON_URGENT_SENTENCE = "No urgent finding in the training labels."
_NO_FINDING = {"", "no finding", "normal"}


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
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
        value = getattr(cfg, f.name)
        rows.append({"field": f.name, "value": show(value), "default": show(default), "changed": value != default,
                     "cli": flags.get(f.name, "--config"), "meaning": docs.get(f.name, "")})
    return rows


# ------------------------------------------------------------------------------------------ which model


#: kind -> (hub id of the real model, config model_type)
REAL_MODELS = {"MedGemma": ("google/medgemma-4b-it", "gemma3"), "MedSigLIP": ("google/medsiglip-448", "siglip")}
STAND_IN_NOTE = "random weights: its outputs mean nothing medically"
HARDWARE = {
    "MedGemma": ("QLoRA of MedGemma 4B needs one CUDA GPU with 16-24 GB (4-bit NF4 base through bitsandbytes, bf16 "
                 "compute, gradient checkpointing; an estimate, not measured here), the weights downloaded once "
                 "after accepting the HAI-DEF terms: `hf download google/medgemma-4b-it`, then "
                 "`cxrtriage hai-def finetune --model google/medgemma-4b-it --out ft --task urgency --qlora`"),
    "MedSigLIP": ("embedding the split with MedSigLIP-448 takes ~2 s per image on a CPU (prototype/models/"
                  "README_models.md), so the real probe is meant for a CUDA GPU: `hf download google/medsiglip-448`, "
                  "then `cxrtriage hai-def train-probe --model google/medsiglip-448 --out probe`"),
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


def choose_model(kind: str, requested: str | None, stand_in: str | Path, *, full: bool,
                 cuda: bool | None = None) -> ModelChoice:
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
        return ModelChoice(kind, str(stand_in), True, "cpu",
                           f"smoke profile: the tiny {kind} stand-in ({STAND_IN_NOTE}){extra}")
    from cxrtriage.errors import ModelError
    from cxrtriage.backends.model_source import checkpoint_shape, find_local_medgemma, is_stand_in, resolve_model

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
        return ModelChoice(kind, str(stand_in), True, "cpu", f"no real {kind} weights in the local Hugging Face "
                           "cache (nothing is downloaded), so " + fallback)
    found_type, hidden = checkpoint_shape(path, kind)
    if found_type != model_type:
        return ModelChoice(kind, str(stand_in), True, "cpu", f"{path} is not a {kind} checkpoint (model_type "
                           f"{found_type!r}, expected {model_type!r}), so " + fallback)
    if is_stand_in(path, kind):
        return ModelChoice(kind, str(path), True, "cpu", f"{path} is far smaller than the real {kind} (hidden size "
                           f"{hidden}), so it is treated as a stand-in: its outputs mean nothing medically")
    if cuda is None:
        import torch

        cuda = bool(torch.cuda.is_available())
    if not cuda:
        return ModelChoice(kind, str(stand_in), True, "cpu", f"{kind} weights found at {path}, but there is no CUDA "
                           "GPU here, so " + fallback)
    return ModelChoice(kind, str(path), False, "cuda", f"full profile: the real {kind} weights at {path}, on CUDA")


# ------------------------------------------------------------------------------------------ targets from labels


def _finding_names(findings: str) -> list[str]:
    """NIH 'Effusion|Infiltration' -> ['effusion', 'infiltration']; 'No Finding' / 'NORMAL' -> []."""
    names = [f.strip().replace("_", " ").lower() for f in (findings or "").split("|")]
    return [n for n in names if n not in _NO_FINDING]


def label_sentence(urgent: int, findings: str) -> str:
    """One line derived from the labels alone, never claiming more than they say."""
    if not urgent:
        return NON_URGENT_SENTENCE
    names = _finding_names(findings)
    if not names:
        return "Labelled urgent in the training data; urgent review suggested."
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Findings consistent with {listed}; urgent review suggested."


def urgency_target(urgent: int, findings: str) -> str:
    """The strict JSON answer the explainer's prompt asks for (no box, no quote: the labels have neither)."""
    return json.dumps({
        "urgency": "Urgent" if urgent else "Non-Urgent",
        "explanation": label_sentence(urgent, findings),
        "box": None,
        "supporting_quote": None,
    })


def prompt_messages(task: Task) -> list[dict]:
    """The prompt turns (no answer) of one example; the urgency task reuses the explainer's exact prompt."""
    if task == "urgency":
        return build_messages(None)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": EXPLANATION_QUESTION}]}]


def build_examples(records: Sequence[Any], task: Task) -> list[dict]:
    """Chat examples from labelled records (``.urgent``, ``.findings``, ``.path``, ``.key``).

    Each example: ``{"key", "image_path", "messages" (prompt turns + assistant answer), "target"}``. Add an
    ``"image"`` (PIL or (H, W) array) to skip reading ``image_path`` at training time.
    With MIMIC-CXR the impression section would replace :func:`label_sentence` as the explanation target.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out = []
    for rec in records:
        target = urgency_target(rec.urgent, rec.findings) if task == "urgency" else label_sentence(rec.urgent, rec.findings)
        messages = prompt_messages(task) + [{"role": "assistant", "content": [{"type": "text", "text": target}]}]
        out.append({"key": getattr(rec, "key", str(rec.path)), "image_path": str(rec.path), "messages": messages,
                    "target": target})
    return out


# ------------------------------------------------------------------------------------------ tokenisation


def _example_image(ex: dict):
    from cxrtriage.backends.medgemma_explainer import grey_to_pil

    img = ex.get("image")
    if img is None:
        from cxrtriage.imaging.load import load_image

        img = load_image(ex["image_path"]).pixels
    if hasattr(img, "convert"):
        return img.convert("RGB")
    return grey_to_pil(img)


def _with_image(messages: list[dict], image) -> list[dict]:
    """Copy of the messages with the image put into the (first) image slot."""
    out = []
    for m in messages:
        content = [dict(c) for c in m["content"]] if isinstance(m["content"], list) else m["content"]
        out.append({"role": m["role"], "content": content})
    for m in out:
        if isinstance(m["content"], list):
            for c in m["content"]:
                if c.get("type") == "image":
                    c["image"] = image
                    return out
    raise ValueError("example messages have no image slot")


def encode_example(processor, ex: dict, max_length: int) -> dict:
    """input_ids / attention_mask / token_type_ids / pixel_values / labels (prompt masked with -100)."""
    import torch

    image = _example_image(ex)
    messages = _with_image(ex["messages"], image)
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"example {ex.get('key')} does not end with an assistant answer")
    kw = dict(tokenize=True, return_dict=True, return_tensors="pt")
    full = processor.apply_chat_template(messages, add_generation_prompt=False, **kw)
    prompt = processor.apply_chat_template(messages[:-1], add_generation_prompt=True, **kw)
    ids, p_ids = full["input_ids"][0], prompt["input_ids"][0]
    n_prompt = int(p_ids.shape[0])
    if not torch.equal(ids[:n_prompt], p_ids):
        raise ValueError("chat template: the prompt is not a prefix of the full conversation")
    if n_prompt >= max_length:
        raise ValueError(f"prompt of example {ex.get('key')} has {n_prompt} tokens >= max_length={max_length}: "
                         "raise FinetuneConfig.max_length")
    if ids.shape[0] > max_length:
        log.warning("example %s truncated from %d to %d tokens", ex.get("key"), ids.shape[0], max_length)
    ids = ids[:max_length]
    labels = ids.clone()
    labels[:n_prompt] = -100
    n = int(ids.shape[0])
    tt = full.get("token_type_ids")
    return {
        "input_ids": ids,
        "attention_mask": full["attention_mask"][0][:n],
        "token_type_ids": (tt[0][:n] if tt is not None else torch.zeros_like(ids)),
        "pixel_values": full["pixel_values"][0],
        "labels": labels,
    }


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad a micro-batch; padded labels are -100."""
    import torch

    n = max(int(it["input_ids"].shape[0]) for it in items)

    def pad(key: str, value: int):
        return torch.stack([torch.nn.functional.pad(it[key], (0, n - it[key].shape[0]), value=value) for it in items])

    return {
        "input_ids": pad("input_ids", pad_id),
        "attention_mask": pad("attention_mask", 0),
        "token_type_ids": pad("token_type_ids", 0),
        "labels": pad("labels", -100),
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
    }


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


def finetune(model_dir: str | Path, examples_with_images: Sequence[dict], out_dir: str | Path,
             cfg: FinetuneConfig | None = None, device: str | None = None, *, progress: bool = False) -> Path:
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
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=_lora_target_regex(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
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
    gen = random.Random(cfg.seed)

    history: list[dict] = []
    model.train()
    step = 0
    # a refresh at most every few seconds: a saved notebook keeps every refresh as one more line
    bar = tqdm(total=total_steps, desc=f"LoRA {cfg.task}", unit="step", disable=not progress,
               mininterval=PROGRESS_EVERY_S)
    for epoch in range(cfg.epochs):
        order = list(range(len(encoded)))
        gen.shuffle(order)
        batches = [order[i:i + cfg.per_device_batch] for i in range(0, len(order), cfg.per_device_batch)]
        for start in range(0, len(batches), cfg.grad_accum):
            group = batches[start:start + cfg.grad_accum]
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

    (out_dir / "train_log.json").write_text(json.dumps({
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "n_examples": len(examples), "n_trainable_params": n_trainable, "steps": history,
        "device": str(dev), "base_model": str(model_dir),
    }, indent=1), encoding="utf-8")
    return out_dir


def verify_reload(out_dir: str | Path, image, max_new_tokens: int = 8, task: Task = "urgency") -> str:
    """Load ``out_dir/merged`` the way the app does and generate a few tokens for one image; returns the text."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    merged_dir = Path(out_dir) / "merged"
    processor = AutoProcessor.from_pretrained(str(merged_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    pil = _example_image({"image": image})
    messages = _with_image(prompt_messages(task), pil)
    enc = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt")
    n = enc["input_ids"].shape[1]
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, n:], skip_special_tokens=True)


def compare_adapter_and_merged(out_dir: str | Path, base_model_dir: str | Path, image, task: Task = "urgency",
                               max_new_tokens: int = 16) -> dict[str, Any]:
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
    messages = _with_image(prompt_messages(task), _example_image({"image": image}))
    enc = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt")
    n = int(enc["input_ids"].shape[1])

    def run(model) -> tuple[Any, str]:
        model.eval()
        with torch.inference_mode():
            logits = model(**enc).logits.float()
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        return logits, processor.decode(gen[0, n:], skip_special_tokens=True)

    base = AutoModelForImageTextToText.from_pretrained(str(base_model_dir), dtype=torch.float32)
    adapter_logits, adapter_text = run(PeftModel.from_pretrained(base, str(out_dir / "adapter")))
    merged_logits, merged_text = run(AutoModelForImageTextToText.from_pretrained(str(out_dir / "merged"),
                                                                                 dtype=torch.float32))
    return {"max_abs_logit_diff": float((adapter_logits - merged_logits).abs().max()),
            "same_greedy_text": adapter_text == merged_text, "adapter_text": adapter_text,
            "merged_text": merged_text, "prompt_tokens": n}


# ------------------------------------------------------------------------------------------ MedSigLIP probe


def balanced_records(records: list, limit: int | None) -> list:
    """Up to ``limit`` records per dataset, half urgent and half not where possible (deterministic order);
    all records when ``limit`` is None. Used for the probe's train/val and the CLI's fine-tuning examples."""
    if limit is None:
        return list(records)
    out = []
    for ds in sorted({r.dataset for r in records}):
        half = max(1, limit // 2)
        for y in (1, 0):
            out += [r for r in records if r.dataset == ds and r.urgent == y][:half]
    return out


def train_medsiglip_probe(model_dir: str | Path, data_dir: str | Path, out_path: str | Path,
                          limit: int | None = None, *, device: str | None = None, n_boot: int = 1000,
                          datasets: tuple[str, ...] = ("nih", "kermany"), progress: bool = False) -> dict:
    """Embed the split's train/val records with MedSigLIP, train the linear probe, save ``probe.json`` and, beside
    it, ``index.npz`` (training IDs, labels and embeddings for similar cases; its OOD gate is in the probe's meta).

    ``limit`` caps records per dataset and split (balanced by label) for quick runs. Images are decoded one batch
    at a time (a whole split's decoded pixels would take GBs of memory); ``progress`` shows a bar per split.
    Returns the validation metrics (AUC of the calibrated score, threshold, review band, sizes) plus ``probe_path``.
    """
    import numpy as np

    from cxrtriage.evaluation import metrics
    from cxrtriage.backends.medsiglip import INDEX_FILE, PROBE_FILE, MedSigLIPBackend
    from cxrtriage.backends.embedding_index import build_index_and_ood
    from cxrtriage.data import load_split_records
    from cxrtriage.hai_def.probe import train_linear_probe
    from cxrtriage.imaging.load import load_image
    from tqdm import tqdm

    parts = load_split_records(Path(data_dir), datasets)
    train, val = balanced_records(parts["train"], limit), balanced_records(parts["val"], limit)
    backend = MedSigLIPBackend(str(model_dir), device=device)

    def embed(recs, desc: str):
        step = max(1, int(getattr(backend, "batch_size", 16)))
        chunks = []
        with tqdm(total=len(recs), desc=f"MedSigLIP embeddings ({desc})", unit="img", disable=not progress,
                  mininterval=PROGRESS_EVERY_S) as bar:
            for i in range(0, len(recs), step):
                chunks.append(backend.embed([load_image(r.path).pixels for r in recs[i:i + step]]))
                bar.update(len(recs[i:i + step]))
        return np.concatenate(chunks) if chunks else backend.embed([])

    x, xv = embed(train, "train"), embed(val, "val")
    y = np.array([r.urgent for r in train])
    yv = np.array([r.urgent for r in val])
    groups = np.array([r.patient for r in val])
    # the similar-case index: training embeddings (IDs and labels only, no images); OOD gate from validation
    centre, index_emb, ood = build_index_and_ood(x, xv, k=5)
    probe = train_linear_probe(x, y, xv, yv, groups, n_boot=n_boot, meta={
        "model": str(model_dir), "datasets": list(datasets), "limit": limit, "split": "cxrtriage/splits/split.csv",
        "ood": ood})
    out_path = Path(out_path)
    if out_path.is_dir() or not out_path.suffix:
        out_path.mkdir(parents=True, exist_ok=True)
        out_path = out_path / PROBE_FILE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    probe.save(out_path)
    np.savez_compressed(out_path.parent / INDEX_FILE, keys=np.array([r.key for r in train]),
                        labels=y.astype(np.int8), embeddings=index_emb.astype(np.float16), centre=centre.astype(np.float32))
    return {
        "val_auc": metrics.roc_auc(yv, probe.score(xv)),
        "threshold": probe.threshold,
        "review_band": list(probe.review_band),
        "n_train": int(len(y)), "n_val": int(len(yv)),
        "probe_path": str(out_path),
        "index_path": str(out_path.parent / INDEX_FILE),
        "min_knn_similarity": ood["min_knn_similarity"],
    }
