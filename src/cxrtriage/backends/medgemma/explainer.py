"""MedGemma as an explainer and second opinion, never as the labeller.

Design: the Urgent / Non-Urgent label and its score stay with the calibrated classifier. MedGemma supplies a
one-line explanation, an optional localising box, an optional verbatim quote from the prior report, and its own
urgency, which callers only compare with the classifier's label (an agreement flag, see :func:`agrees_with`).
Why: generative output is not calibrated (there is no probability to threshold or to tune for sensitivity), and
MedGemma 4B follows instructions poorly, so its free text is parsed defensively
(:mod:`cxrtriage.backends.medgemma.output`), retried once with a repair prompt, and on failure dropped in favour
of the classifier's own explanation — the triage result never depends on MedGemma producing valid JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.backends.medgemma.output import MedGemmaAnswer, parse_medgemma_output
from cxrtriage.backends.medgemma.prompt import build_messages, repair_turns
from cxrtriage.errors import ModelError

log = logging.getLogger(__name__)

PARSE_FAILURE_WARNING = "MedGemma output could not be parsed; the classifier's explanation is shown"
GENERATION_FAILURE_WARNING = "MedGemma failed to generate an answer; the classifier's explanation is shown"


def ask_with_one_repair(
    generate: Callable[[list[dict]], str],
    messages: list[dict],
    repair: Callable[[str], list[dict]],
    image_size: tuple[int, int],
    prior_report: str | None,
    raw_outputs: list[str],
    name: str,
) -> tuple[MedGemmaAnswer | None, list[str]]:
    """The protocol every MedGemma runtime (transformers, llama.cpp) follows: generate, parse defensively, one
    retry with the repair prompt, then a fallback warning. Never raises: an optional explainer must not break
    triage. ``repair`` builds the runtime's own message format for the retry turns."""
    try:
        text = generate(messages)
        raw_outputs.append(text)
        answer = parse_medgemma_output(text, image_size, prior_report)
        if answer is not None:
            return answer, []
        log.info("%s answer not parseable, retrying once with the repair prompt", name)
        text = generate(messages + repair(text))
        raw_outputs.append(text)
        answer = parse_medgemma_output(text, image_size, prior_report)
    except Exception:
        log.exception("%s generation failed", name)
        return None, [GENERATION_FAILURE_WARNING]
    if answer is None:
        return None, [PARSE_FAILURE_WARNING]
    return answer, []


def grey_to_pil(pixels: np.ndarray):
    """(H, W) float [0, 1] grey (or uint8 / RGB) array -> RGB PIL image, as MedGemma expects 3 channels."""
    from PIL import Image

    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
        arr = (arr * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert("RGB")


def agrees_with(answer: MedGemmaAnswer | None, label: str) -> bool | None:
    """Second-opinion flag: does MedGemma's urgency match the classifier's label? None if it gave none."""
    if answer is None or answer.urgency is None:
        return None
    return answer.urgency == label


class MedGemmaExplainer:
    """Loads a MedGemma checkpoint (or the tiny stand-in) and explains one image at a time."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str | None = None,
        dtype: Any = None,
        max_new_tokens: int = 160,
        load_in_4bit: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from cxrtriage.backends.model_source import four_bit_kwargs, pick_device_dtype

        # bf16 on CUDA and CPU: halves memory and is faster than fp32 on these CPUs for the 4B model (CPU warns)
        device_name, default_dtype = pick_device_dtype(device, large=True)
        self.device = torch.device(device_name)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype or default_dtype
        extra = four_bit_kwargs(device_name, self.dtype) if load_in_4bit else {}
        self.max_new_tokens = int(max_new_tokens)
        self.model_dir = str(model_dir)
        # audit / test hooks of the last explain() call (one explainer per thread: not shared across threads)
        self.raw_outputs: list[str] = []
        self.last_new_token_count = 0
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_dir)
            self.model = AutoModelForImageTextToText.from_pretrained(self.model_dir, dtype=self.dtype, **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"Could not load MedGemma from {self.model_dir}: {exc}") from exc
        if not extra:  # a 4-bit model is already placed by device_map
            self.model.to(self.device)
        self.model.eval()

    # ----------------------------------------------------------------- generation

    def _generate(self, messages: list[dict]) -> str:
        """Greedy generation; returns only the new text, special tokens kept so thinking traces can be cut."""
        import torch

        enc = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        inputs = {}
        for key, value in enc.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            inputs[key] = value
        prompt_len = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = out[0, prompt_len:]
        self.last_new_token_count = int(new_tokens.shape[0])
        return self.processor.decode(new_tokens, skip_special_tokens=False)

    def explain(self, pixels: np.ndarray, prior_report: str | None) -> tuple[MedGemmaAnswer | None, list[str]]:
        """Ask MedGemma about one image; (answer, warnings), answer None when unusable after one repair retry."""
        image = grey_to_pil(pixels)
        image_size = (int(np.asarray(pixels).shape[0]), int(np.asarray(pixels).shape[1]))
        messages = build_messages(prior_report)
        messages[1]["content"][0]["image"] = image  # the single image slot of the user turn
        self.raw_outputs = []
        return ask_with_one_repair(
            self._generate, messages, repair_turns, image_size, prior_report, self.raw_outputs, "MedGemma"
        )
