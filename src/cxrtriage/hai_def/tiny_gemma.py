"""A tiny, randomly initialised stand-in for google/medgemma-4b-it, built offline in seconds.

Why: the real weights cannot be downloaded here (and are 8 GB), but the whole MedGemma code path — processor,
chat template, image tokens, generation, decoding, parsing, fallback — must still be exercised by tests. The
checkpoint written here has the same architecture class (Gemma3ForConditionalGeneration), processor class
(Gemma3Processor + Gemma3ImageProcessorPil, as torchvision is absent) and chat template as the real model, so
``AutoProcessor.from_pretrained`` / ``AutoModelForImageTextToText.from_pretrained`` load it identically.
Its output is random text; it proves plumbing, never quality.
"""

from __future__ import annotations

import string
from pathlib import Path

# The standard Gemma 3 chat template (folds a system message into the first user turn).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)

SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<unused94>",  # MedGemma 1.5 thinking trace delimiters
    "<unused95>",
]

IMAGE_SIZE = 64
PATCH_SIZE = 8
MM_TOKENS_PER_IMAGE = 16  # (64 / 8) = 8 patches per side, pooled 2x2 -> 4 x 4 = 16


def _vocab() -> dict[str, int]:
    """Specials, 256 byte-fallback tokens, then printable characters (▁ stands for space, as in Gemma)."""
    tokens = list(SPECIAL_TOKENS) + [f"<0x{i:02X}>" for i in range(256)] + ["▁"]
    tokens += [c for c in string.printable if not c.isspace()]
    return {tok: i for i, tok in enumerate(tokens)}


def build_tiny_tokenizer():
    """A GemmaTokenizer (BPE, byte fallback) from a small vocab dict; any text round-trips via byte fallback."""
    from transformers import GemmaTokenizer

    return GemmaTokenizer(
        vocab=_vocab(),
        merges=[],
        add_bos_token=True,
        add_eos_token=False,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>", "<unused94>", "<unused95>"],
        chat_template=GEMMA3_CHAT_TEMPLATE,
    )


#: google/medgemma-4b-it's sizes (Gemma 3 4B + SigLIP-400M at 896 px), used for random-weight speed benchmarks.
REAL_TEXT_SIZES = {
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "vocab_size": 262208,
    "sliding_window": 1024,
    "query_pre_attn_scalar": 256,
}
REAL_VISION_SIZES = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 896,
    "patch_size": 14,
}
REAL_MM_TOKENS = 256
TINY_TEXT_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "sliding_window": 512,
}
TINY_VISION_SIZES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
}


def build_medgemma_stand_in(seed: int = 0, scale: str = "tiny"):
    """(model, processor) with MedGemma's architecture and random weights; ``scale`` "tiny" (seconds) or "real"
    (google/medgemma-4b-it's layer sizes, 4.3B parameters, built in the current default dtype: wrap in
    ``torch.set_default_dtype(torch.bfloat16)`` or it needs ~17 GB). The tokenizer is always the tiny one
    (the real vocabulary size is kept for the embedding); speed benchmarks only, never quality."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        GenerationConfig,
    )

    if scale not in ("tiny", "real"):
        raise ValueError(f"scale must be 'tiny' or 'real', got {scale!r}")
    torch.manual_seed(seed)
    text_sizes, vision_sizes = (
        (TINY_TEXT_SIZES, TINY_VISION_SIZES) if scale == "tiny" else (REAL_TEXT_SIZES, REAL_VISION_SIZES)
    )
    mm_tokens = MM_TOKENS_PER_IMAGE if scale == "tiny" else REAL_MM_TOKENS
    image_size = int(vision_sizes["image_size"])

    tokenizer = build_tiny_tokenizer()
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=mm_tokens,
    )

    ids = tokenizer.convert_tokens_to_ids
    eos_ids = [ids("<eos>"), ids("<end_of_turn>")]
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            **text_sizes,
            "pad_token_id": ids("<pad>"),
            "bos_token_id": ids("<bos>"),
            "eos_token_id": eos_ids,
        },
        vision_config={**vision_sizes, "vision_use_head": False},
        mm_tokens_per_image=mm_tokens,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():  # zero-initialised in transformers: without this the image has no effect
        proj = model.model.multi_modal_projector.mm_input_projection_weight
        proj.normal_(0.0, 1.0 / proj.shape[0] ** 0.5)
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<bos>"), eos_token_id=eos_ids, pad_token_id=ids("<pad>"), do_sample=False
    )
    return model.eval(), processor


def build_tiny_medgemma(out_dir: Path, seed: int = 0) -> Path:
    """Build, save and return ``out_dir`` holding a tiny MedGemma-shaped checkpoint with its processor."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, processor = build_medgemma_stand_in(seed, "tiny")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
