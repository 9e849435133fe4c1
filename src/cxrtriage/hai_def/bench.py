"""``cxrtriage hai-def bench``: speed of the HAI-DEF models at their REAL sizes, with RANDOM weights.

The gated weights cannot be downloaded here, but speed depends on shapes, not on weight values: the
architectures are built from configs with Google's layer sizes (MedSigLIP-448's vision tower: SigLIP so400m/14 at
448 px; MedGemma 4B: Gemma 3 4B + SigLIP so400m/14 at 896 px, 256 image tokens) and random weights. Every number
this prints says so. Nothing here measures accuracy.

Measured, per part (``--parts``):

* ``medsiglip``: the vision tower per image in torch fp32, torch bf16 and onnxruntime dynamic int8 (exported with
  the same exporter and quantiser as :mod:`cxrtriage.hai_def.onnx_vision`), plus ORT fp32 and the int8-vs-fp32
  embedding cosine.
* ``medgemma``: transformers, CPU bf16, one image + a fixed-length text prompt: time to first token (prefill incl.
  the 896 px vision tower) and the median time per further token (greedy decoding; every token timestamped).
* ``gguf``: the same random MedGemma saved, converted to GGUF with llama.cpp's converter
  (:func:`cxrtriage.hai_def.gguf.convert_to_gguf`), quantised to Q4_K_M with llama.cpp's quantiser, and timed
  with llama.cpp: prompt tokens per second and time per generated token (llama.cpp's own counters), and the
  mmproj image encoding + first token through the multimodal chat handler. Needs the ``[edge]`` extra and
  ``CXRTRIAGE_GGUF_CONVERTER``; skipped with the reason otherwise.

The bundled model's numbers are read from ``prototype/eval/bench_results.json`` (``cxrtriage bench``) and
printed beside these, so the table compares like with like on this machine. Each part's measurement lives in
:mod:`cxrtriage.hai_def.bench_parts`; this module runs the selected parts, prints the table and registers the command.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cxrtriage.hai_def.bench_parts import (
    GGUF_QUANT,
    bench_gguf,
    bench_medgemma,
    bench_medsiglip_vision,
    build_random_medgemma,
    gguf_prerequisites,
)

RANDOM_WEIGHTS_NOTE = (
    "RANDOM weights at the real layer sizes (the gated weights are not available here): "
    "these numbers are speed only and say nothing about accuracy"
)
TINY_NOTE = "TINY random stand-ins (a plumbing check): these numbers say nothing about the real models' speed"
BUNDLED_RESULTS = Path("prototype/eval/bench_results.json")
PARTS = ("medsiglip", "medgemma", "gguf")


def _bundled_numbers(path: Path) -> dict | None:
    if not path.is_file():
        return None
    r = json.loads(path.read_text(encoding="utf-8"))
    return {
        "end_to_end_p50_ms": r.get("end_to_end", {}).get("p50_ms"),
        "model_int8_p50_ms": r.get("model_int8_onnx", {}).get("p50_ms"),
        "model_size_mb": r.get("model_int8_size_mb"),
        "source": str(path),
    }


def run_hai_def_bench(
    *,
    scale: str = "real",
    parts: tuple[str, ...] = PARTS,
    repeats: int = 3,
    n_text: int = 300,
    new_tokens: int = 16,
    converter: str | None = None,
    out: str | Path | None = None,
    work_dir: str | Path | None = None,
    bundled_results: Path = BUNDLED_RESULTS,
) -> dict:
    """Run the selected parts; a part that cannot run (missing extra, converter) is recorded as skipped with why."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if scale not in ("real", "tiny"):
        raise ValueError(f"scale must be 'real' or 'tiny', got {scale!r}")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="cxrtriage-hai-bench-", dir=work_dir))
    results: dict[str, Any] = {
        "note": RANDOM_WEIGHTS_NOTE if scale == "real" else TINY_NOTE,
        "scale": scale,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "command": f"cxrtriage hai-def bench --scale {scale} --parts {','.join(parts)} --repeats {repeats} "
        f"--text-tokens {n_text} --new-tokens {new_tokens}",
        "bundled_model": _bundled_numbers(Path(bundled_results)),
    }
    try:
        if "medsiglip" in parts:
            print("benchmarking the MedSigLIP-448 vision tower ...", flush=True)
            results["medsiglip_vision"] = bench_medsiglip_vision(scale, work, repeats)
        if "medgemma" in parts or "gguf" in parts:
            print("building MedGemma 4B with random weights (bf16) ...", flush=True)
            t = time.perf_counter()
            model, processor = build_random_medgemma(scale)
            results["medgemma_build_s"] = round(time.perf_counter() - t, 1)
            if "medgemma" in parts:
                print("benchmarking MedGemma (transformers, CPU bf16) ...", flush=True)
                results["medgemma_transformers"] = bench_medgemma(model, n_text, new_tokens, repeats)
            gguf_ready = None
            if "gguf" in parts:
                gguf_ready = gguf_prerequisites(converter)
                if gguf_ready is None:
                    hf_dir = work / "medgemma_random"  # saved, then freed before conversion: peak RAM stays ~10 GB
                    model.save_pretrained(hf_dir)
                    processor.save_pretrained(hf_dir)
            del model
            gc.collect()
            if "gguf" in parts:
                if gguf_ready is not None:
                    results["medgemma_gguf"] = f"skipped: {gguf_ready}"
                else:
                    print(f"converting to GGUF {GGUF_QUANT} and benchmarking llama.cpp ...", flush=True)
                    results["medgemma_gguf"] = bench_gguf(work / "medgemma_random", work, n_text, new_tokens, converter)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def print_table(r: dict) -> None:
    print(f"\nHAI-DEF speed on {r['machine']['cpus']} CPU(s), {r['machine']['platform']}")
    print(f"NOTE: {r['note']} (scale: {r['scale']})")
    b = r.get("bundled_model")
    if b:
        print(
            f"  bundled int8 CNN (cxrtriage bench)       model {b['model_int8_p50_ms']} ms, "
            f"end-to-end {b['end_to_end_p50_ms']} ms, "
            f"{b['model_size_mb']} MB"
        )
    else:
        print("  bundled int8 CNN: run `make bench` to record its numbers beside these")
    v = r.get("medsiglip_vision")
    if isinstance(v, dict):
        print(f"  MedSigLIP vision tower ({v['params_m']}M params, {v['input']}) per image:")
        for key in ("torch_fp32", "torch_bf16", "ort_fp32", "ort_int8_dynamic"):
            if key in v:
                print(f"    {key:<18} {v[key]['median_s'] * 1e3:10.1f} ms")
        print(
            f"    int8 cosine vs fp32 {v.get('cosine_ort_int8_dynamic_vs_torch_fp32')}, "
            f"ONNX size fp32 {v['onnx_size_mb']['fp32']} MB "
            f"-> int8 {v['onnx_size_mb']['int8']} MB"
        )
    g = r.get("medgemma_transformers")
    if isinstance(g, dict):
        print(
            f"  MedGemma ({g['params_m']}M params) transformers CPU bf16, prompt {g['prompt_tokens']} tokens "
            f"({g['image_tokens']} image, {g['image_size']} px):"
        )
        print(
            f"    time to first token {g['time_to_first_token']['median_s']:.2f} s, "
            f"then {g['per_token_s']:.3f} s/token "
            f"({g['tokens_per_s']} tokens/s)"
        )
    q = r.get("medgemma_gguf")
    if isinstance(q, dict):
        print(
            f"  MedGemma GGUF {GGUF_QUANT} (llama.cpp, {q['threads']} threads): {q['per_token_s']:.3f} s/token "
            f"({q['tokens_per_s']} tokens/s), prompt {q['prompt_tokens_per_s']} tokens/s, image+prompt -> first token "
            f"{q['image_prompt_first_token']['median_s']:.2f} s; sizes {q['size_mb']}"
        )
    elif q:
        print(f"  MedGemma GGUF: {q}")


def add_bench_parser(sub: Any) -> None:
    """Register ``bench`` under the ``cxrtriage hai-def`` sub-command group."""
    p = sub.add_parser(
        "bench",
        help="speed of MedSigLIP / MedGemma / GGUF at real sizes with RANDOM weights",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scale",
        choices=("real", "tiny"),
        default="real",
        help="real layer sizes (minutes, ~10 GB RAM) or tiny ones (seconds; checks the plumbing)",
    )
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--text-tokens", type=int, default=300, help="text tokens in the MedGemma prompt besides the image")
    p.add_argument("--new-tokens", type=int, default=16, help="tokens generated to time decoding")
    p.add_argument("--converter", help="convert_hf_to_gguf.py (default: $CXRTRIAGE_GGUF_CONVERTER)")
    p.add_argument("--out", help="write the results JSON here (e.g. prototype/eval/hai_def_bench.json)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    """Exit 2 with one sentence for a missing extra or a bad option (the CLI's convention)."""
    import sys

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        print(
            f"error: the HAI-DEF benchmark needs the [hai-def] extra: pip install 'cxrtriage[hai-def]' ({exc})",
            file=sys.stderr,
        )
        return 2
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    try:
        run_hai_def_bench(
            scale=args.scale,
            parts=parts,
            repeats=args.repeats,
            n_text=args.text_tokens,
            new_tokens=args.new_tokens,
            converter=args.converter,
            out=args.out,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
