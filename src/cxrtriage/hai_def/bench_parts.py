"""Each part of ``cxrtriage hai-def bench`` (``--parts``, :mod:`cxrtriage.hai_def.bench`) measured on models at the
real (or tiny) sizes with RANDOM weights: the MedSigLIP-448 vision tower (torch fp32 / bf16, onnxruntime fp32 /
dynamic int8), MedGemma through transformers (time to first token, time per token) and the same MedGemma as a
Q4_K_M GGUF through llama.cpp. The driver, the table and the command line stay in :mod:`cxrtriage.hai_def.bench`.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.evaluation.bench import peak_rss_mb, times_ms

#: MedSigLIP-448's vision tower (SigLIP so400m/14 at 448 px, 429M parameters).
SIGLIP_448_VISION = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 448,
    "patch_size": 14,
}
TINY_SIGLIP_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
GGUF_QUANT = "Q4_K_M"


def _seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall times in seconds (the bundled bench's timer; these models take seconds, not milliseconds)."""
    return [ms / 1e3 for ms in times_ms(fn, repeats, warmup)]


def _summary(sec: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(sec), 4), "min_s": round(min(sec), 4), "n": len(sec)}


def _n_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


# ----------------------------------------------------------------------------------------------- MedSigLIP


def bench_medsiglip_vision(scale: str, work: Path, repeats: int) -> dict:
    """SigLIP vision tower at MedSigLIP-448's size: torch fp32 / bf16, ORT fp32 / dynamic int8, per image."""
    import onnxruntime as ort
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from cxrtriage.hai_def.onnx_quantize import quantize_dynamic_int8

    sizes = SIGLIP_448_VISION if scale == "real" else TINY_SIGLIP_VISION
    torch.manual_seed(0)
    model = SiglipVisionModel(SiglipVisionConfig(**sizes)).eval()
    side = int(sizes["image_size"])
    x = torch.randn(1, 3, side, side)
    res: dict[str, Any] = {
        "config": dict(sizes),
        "params_m": round(_n_params(model) / 1e6, 1),
        "input": f"1x3x{side}x{side}",
    }

    def run(m, inp):
        with torch.inference_mode():
            return m(pixel_values=inp).pooler_output

    ref = run(model, x).float().numpy()
    res["torch_fp32"] = _summary(_seconds(lambda: run(model, x), repeats))

    class Pooled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).pooler_output

    fp32_path, int8_path = work / "siglip_vision.onnx", work / "siglip_vision.int8.onnx"
    t = time.perf_counter()
    torch.onnx.export(
        Pooled(model),
        (x,),
        str(fp32_path),
        input_names=["pixel_values"],
        output_names=["pooled"],
        opset_version=17,
        dynamo=False,
    )
    res["onnx_export_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    quantize_dynamic_int8(fp32_path, int8_path)
    res["quantize_s"] = round(time.perf_counter() - t, 1)
    res["onnx_size_mb"] = {
        "fp32": round(fp32_path.stat().st_size / 1e6, 1),
        "int8": round(int8_path.stat().st_size / 1e6, 1),
    }

    bf16 = model.to(torch.bfloat16)  # in place: the fp32 copy is no longer needed
    xb = x.to(torch.bfloat16)
    res["torch_bf16"] = _summary(_seconds(lambda: run(bf16, xb), repeats))
    res["cosine_bf16_vs_fp32"] = round(_cosine(run(bf16, xb).float().numpy(), ref), 5)
    gc.collect()

    xn = x.numpy()
    for tag, path in (("ort_fp32", fp32_path), ("ort_int8_dynamic", int8_path)):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out = sess.run(None, {"pixel_values": xn})[0]
        res[tag] = _summary(_seconds(lambda sess=sess: sess.run(None, {"pixel_values": xn}), repeats))
        res[f"cosine_{tag}_vs_torch_fp32"] = round(_cosine(out, ref), 5)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return res


# ----------------------------------------------------------------------------------------------- MedGemma


def _medgemma_inputs(model: Any, n_text: int, seed: int = 0) -> dict:
    """input_ids = <bos> + n_text random text tokens + <start_of_image> + image tokens + <end_of_image> + turn end,
    with token_type_ids marking image tokens, and random pixel values at the vision tower's size."""
    import torch

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    n_img = int(cfg.mm_tokens_per_image)
    text_ids = torch.randint(20, 300, (n_text,), generator=g)  # ordinary tokens of the stand-in vocabulary
    ids = torch.cat(
        [
            torch.tensor([cfg.text_config.bos_token_id]),
            text_ids,
            torch.tensor([cfg.boi_token_index]),
            torch.full((n_img,), cfg.image_token_index),
            torch.tensor([cfg.eoi_token_index]),
        ]
    )[None]
    side = int(cfg.vision_config.image_size)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": (ids == cfg.image_token_index).long(),
        "pixel_values": torch.randn(1, 3, side, side, generator=g),
    }


def build_random_medgemma(scale: str):
    """MedGemma's architecture at ``scale`` with random weights, built directly in bf16 (fp32 would need ~17 GB)."""
    import torch

    from cxrtriage.hai_def.tiny_gemma import build_medgemma_stand_in

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        return build_medgemma_stand_in(0, scale)
    finally:
        torch.set_default_dtype(previous)


def bench_medgemma(model: Any, n_text: int, new_tokens: int, repeats: int) -> dict:
    """Greedy generation of ``new_tokens`` tokens, ``repeats`` times; a stopping criterion that never stops
    timestamps every generated token, so time to first token (prefill incl. the vision tower) and the time per
    further token come from the same calls."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class TokenClock(StoppingCriteria):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def __call__(self, input_ids, scores, **kwargs):
            self.stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    inputs = _medgemma_inputs(model, n_text)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    prompt_len = int(inputs["input_ids"].shape[1])

    def gen() -> tuple[float, list[float]]:
        clock = TokenClock()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([clock]),
            )
        if out.shape[1] - prompt_len != new_tokens or len(clock.stamps) != new_tokens:
            raise RuntimeError(f"expected {new_tokens} new tokens, got {out.shape[1] - prompt_len}")
        return clock.stamps[0] - t0, list(np.diff(clock.stamps))

    gen()  # warm-up
    runs = [gen() for _ in range(repeats)]
    ttft = [r[0] for r in runs]
    gaps = [g for r in runs for g in r[1]]
    per_token = statistics.median(gaps) if gaps else float("nan")
    return {
        "params_m": round(_n_params(model) / 1e6, 1),
        "dtype": "bfloat16",
        "device": "cpu",
        "prompt_tokens": prompt_len,
        "image_tokens": int(model.config.mm_tokens_per_image),
        "image_size": int(model.config.vision_config.image_size),
        "new_tokens": new_tokens,
        "time_to_first_token": _summary(ttft),
        "per_token_s": round(per_token, 4),
        "per_token_p90_s": round(float(np.percentile(gaps, 90)), 4) if gaps else None,
        "tokens_per_s": round(1.0 / per_token, 2) if per_token > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


# ----------------------------------------------------------------------------------------------- GGUF


def bench_gguf(hf_dir: Path, work: Path, n_text: int, new_tokens: int, converter: str | None) -> dict:
    """Convert the saved random MedGemma (f16 text GGUF + f16 mmproj), quantise the text model, time llama.cpp."""
    from cxrtriage.backends.medgemma.gguf import GgufExplainer, import_llama_cpp
    from cxrtriage.hai_def.gguf import convert_to_gguf, quantize_gguf

    llama_cpp = import_llama_cpp()
    res: dict[str, Any] = {}
    t = time.perf_counter()
    model_f16, mmproj = convert_to_gguf(
        hf_dir, work / "gguf", converter=converter, outtype="f16", synthesize_tokenizer_model=True
    )
    res["convert_s"] = round(time.perf_counter() - t, 1)
    shutil.rmtree(hf_dir, ignore_errors=True)
    q_path = work / "gguf" / f"model-{GGUF_QUANT}.gguf"
    t = time.perf_counter()
    quantize_gguf(model_f16, q_path, GGUF_QUANT)
    res["quantize_s"] = round(time.perf_counter() - t, 1)
    res["size_mb"] = {
        "text_f16": round(model_f16.stat().st_size / 1e6, 1),
        f"text_{GGUF_QUANT}": round(q_path.stat().st_size / 1e6, 1),
        "mmproj_f16": round(mmproj.stat().st_size / 1e6, 1),
    }
    model_f16.unlink()
    threads = os.cpu_count() or 1
    res["threads"] = threads

    # text only: llama.cpp's own prompt-eval and eval counters
    llm = llama_cpp.Llama(model_path=str(q_path), n_ctx=2048, n_threads=threads, n_gpu_layers=0, verbose=False)
    prompt = [llm.token_bos()] + list(np.random.default_rng(0).integers(20, 300, n_text + 258).tolist())
    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    llm.create_completion(prompt, max_tokens=new_tokens, temperature=0.0, top_k=1)
    perf = llama_cpp.llama_perf_context(llm.ctx)
    res["prompt_tokens"] = int(perf.n_p_eval)
    res["prompt_eval_s"] = round(perf.t_p_eval_ms / 1e3, 3)
    res["prompt_tokens_per_s"] = round(perf.n_p_eval / max(perf.t_p_eval_ms / 1e3, 1e-9), 1)
    res["generated_tokens"] = int(perf.n_eval)
    res["per_token_s"] = round(perf.t_eval_ms / 1e3 / max(perf.n_eval, 1), 4)
    res["tokens_per_s"] = round(perf.n_eval / max(perf.t_eval_ms / 1e3, 1e-9), 2)
    del llm
    gc.collect()

    # image + short prompt through the multimodal handler: mmproj encoding + prefill + one token
    explainer = GgufExplainer(q_path, mmproj, n_ctx=2048, n_threads=threads, max_new_tokens=1)
    rng = np.random.default_rng(0)
    pixels = rng.random((512, 512)).astype(np.float32)
    from cxrtriage.backends.medgemma.explainer import grey_to_pil
    from cxrtriage.backends.medgemma.gguf import pil_to_data_uri, to_openai_messages

    msgs = to_openai_messages(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
        pil_to_data_uri(grey_to_pil(pixels)),
    )
    res["image_prompt_first_token"] = _summary(_seconds(lambda: explainer._generate(msgs), 2, warmup=0))
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return res


def gguf_prerequisites(converter: str | None) -> str | None:
    """None when llama-cpp-python and the converter are there, else the reason (a ModelError's message)."""
    from cxrtriage.backends.medgemma.gguf import import_llama_cpp
    from cxrtriage.errors import ModelError
    from cxrtriage.hai_def.gguf import find_converter

    try:
        import_llama_cpp()
        find_converter(converter)
    except ModelError as exc:
        return str(exc)
    return None
