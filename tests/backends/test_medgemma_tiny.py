"""MedGemma plumbing end to end on a tiny random stand-in (real weights cannot be downloaded here).

Random weights produce garbage, so the real-generation test checks the fallback contract; the happy path and
the repair retry are checked by replacing ``model.generate`` with one that emits chosen text, which still goes
through the processor, chat template, decoding and parser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from cxrtriage.backends.medgemma.explainer import PARSE_FAILURE_WARNING, MedGemmaExplainer, agrees_with  # noqa: E402
from cxrtriage.backends.medgemma.prompt import REPAIR_PROMPT  # noqa: E402

REPORT = "Frontal chest radiograph.\nThere is a large right pleural effusion.\nNo pneumothorax."
ANSWER = (
    '```json\n{"urgency": "urgent", "explanation": "Large right pleural effusion.",\n'
    '"box": [250, 500, 750, 1000], "supporting_quote": "there is a large right pleural effusion"}\n```'
)


@pytest.fixture(scope="session")
def tiny_dir(tiny_medgemma: Path) -> Path:
    return tiny_medgemma


@pytest.fixture(scope="module")
def explainer(tiny_dir: Path) -> MedGemmaExplainer:
    return MedGemmaExplainer(str(tiny_dir), device="cpu", max_new_tokens=12)


def _fake_generate(explainer: MedGemmaExplainer, texts: list[str], calls: list[str]):
    """A generate() that appends the tokens of ``texts[i]`` on call i and records the decoded prompts."""
    tok = explainer.processor.tokenizer

    def generate(input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        calls.append(tok.decode(input_ids[0]))
        assert kwargs["pixel_values"].shape[-2:] == (64, 64)
        new = tok(texts[len(calls) - 1], add_special_tokens=False, return_tensors="pt").input_ids
        eot = torch.tensor([[tok.convert_tokens_to_ids("<end_of_turn>")]])
        return torch.cat([input_ids, new, eot], dim=1)

    return generate


def test_tiny_checkpoint_loads_like_medgemma(tiny_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert type(proc).__name__ == "Gemma3Processor"
    assert proc.image_seq_length == model.config.mm_tokens_per_image == 16
    assert proc.tokenizer.chat_template and "<start_of_turn>" in proc.tokenizer.chat_template


def test_random_weights_fallback_without_raising(explainer: MedGemmaExplainer, nih_pixels: np.ndarray) -> None:
    answer, warnings = explainer.explain(nih_pixels, REPORT)
    assert explainer.last_new_token_count > 0  # generation really ran and produced new tokens
    assert (answer is None and warnings == [PARSE_FAILURE_WARNING]) or (answer is not None and warnings == [])
    if answer is None:
        assert len(explainer.raw_outputs) == 2  # one repair retry before giving up


def test_happy_path_end_to_end(
    explainer: MedGemmaExplainer, nih_pixels: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(explainer.model, "generate", _fake_generate(explainer, [ANSWER], calls))
    answer, warnings = explainer.explain(nih_pixels, REPORT)
    assert warnings == [] and answer is not None and len(calls) == 1
    assert "<start_of_image>" in calls[0] and "There is a large right pleural effusion." in calls[0]
    h, w = nih_pixels.shape
    assert answer.urgency == "Urgent" and agrees_with(answer, "Urgent") is True
    assert answer.box_xywh == (round(0.5 * w), round(0.25 * h), w - round(0.5 * w), round(0.75 * h) - round(0.25 * h))
    assert answer.supporting_quote == "There is a large right pleural effusion"  # report's own casing


def test_repair_retry_then_success(explainer: MedGemmaExplainer, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.linspace(0, 1, 80 * 100, dtype=np.float32).reshape(80, 100)
    calls: list[str] = []
    monkeypatch.setattr(explainer.model, "generate", _fake_generate(explainer, ["not json at all", ANSWER], calls))
    answer, warnings = explainer.explain(pixels, None)
    assert len(calls) == 2 and REPAIR_PROMPT in calls[1] and "not json at all" in calls[1]
    assert answer is not None and warnings == []
    assert answer.box_xywh == (50, 20, 50, 40) and answer.supporting_quote is None


def test_two_failures_fall_back(explainer: MedGemmaExplainer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(explainer.model, "generate", _fake_generate(explainer, ["nope", "<unused94>still"], calls))
    answer, warnings = explainer.explain(np.zeros((32, 32), np.float32), REPORT)
    assert answer is None and warnings == [PARSE_FAILURE_WARNING] and len(calls) == 2
    assert agrees_with(answer, "Urgent") is None
