"""Fine-tuning examples: chat targets derived from the dataset labels alone, and their tokenisation for MedGemma
(prompt masked out of the loss, right-padded micro-batches).

Targets come from the dataset labels only (NIH ChestX-ray14 labels, Kermany folder labels): there are no reports
here, so a target never says more than the labels do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from cxrtriage.backends.medgemma.prompt import build_messages
from cxrtriage.hai_def.finetune_config import TASKS, Task

log = logging.getLogger(__name__)

EXPLANATION_QUESTION = "Describe the main finding of this chest X-ray in one line."
NON_URGENT_SENTENCE = "No urgent finding in the training labels."
_NO_FINDING = {"", "no finding", "normal"}


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
    return json.dumps(
        {
            "urgency": "Urgent" if urgent else "Non-Urgent",
            "explanation": label_sentence(urgent, findings),
            "box": None,
            "supporting_quote": None,
        }
    )


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
        target = (
            urgency_target(rec.urgent, rec.findings) if task == "urgency" else label_sentence(rec.urgent, rec.findings)
        )
        messages = prompt_messages(task) + [{"role": "assistant", "content": [{"type": "text", "text": target}]}]
        out.append(
            {
                "key": getattr(rec, "key", str(rec.path)),
                "image_path": str(rec.path),
                "messages": messages,
                "target": target,
            }
        )
    return out


# ------------------------------------------------------------------------------------------ tokenisation


def example_image(ex: dict):
    """The example's image as RGB PIL: its ``"image"`` (PIL or (H, W) array), else ``image_path`` read."""
    from cxrtriage.backends.medgemma.explainer import grey_to_pil

    img = ex.get("image")
    if img is None:
        from cxrtriage.imaging.load import load_image

        img = load_image(ex["image_path"]).pixels
    if hasattr(img, "convert"):
        return img.convert("RGB")
    return grey_to_pil(img)


def with_image(messages: list[dict], image) -> list[dict]:
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

    image = example_image(ex)
    messages = with_image(ex["messages"], image)
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
        raise ValueError(
            f"prompt of example {ex.get('key')} has {n_prompt} tokens >= max_length={max_length}: "
            "raise FinetuneConfig.max_length"
        )
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


# ------------------------------------------------------------------------------------------ which records


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
