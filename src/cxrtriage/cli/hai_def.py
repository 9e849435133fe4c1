"""Command line for the HAI-DEF models:
``cxrtriage hai-def tiny | train-probe | export-onnx | finetune | convert-gguf | bench``.

Same conventions as :mod:`cxrtriage.cli.main`: each command imports its machinery (torch, transformers, peft, sklearn,
onnx, the GGUF converter) lazily, so building the parser stays light. Exit codes: 0 success, 1 the operation
itself failed (e.g. an ONNX parity check), 2 usage / configuration error: a missing extra, a model that is not
available offline (:class:`~cxrtriage.errors.ModelError`), a bad ``--config``. Those are printed as one
``error: ...`` sentence on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrtriage.cli.options import SubCommands, resolve_data_dir
from cxrtriage.errors import ModelError
from cxrtriage.optional import MissingDependency, require_all

RANDOM_WEIGHTS_NOTE = "random weights, for plumbing tests only: their outputs mean nothing"


class UsageError(Exception):
    """Something the user can fix (missing extra, bad option, absent data): one sentence on stderr, exit 2."""


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn UsageError / ModelError into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (UsageError, ModelError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _require(command: str, modules: dict[str, str]) -> None:
    """Import ``modules`` (import name -> extra providing it); raise UsageError naming what to install."""
    try:
        require_all(modules, purpose=f"`cxrtriage hai-def {command}`")
    except MissingDependency as exc:
        raise UsageError(str(exc)) from None


def _data_dir(arg: str | None) -> Path:
    """:func:`cxrtriage.cli.options.resolve_data_dir` as a UsageError."""
    try:
        path = resolve_data_dir(arg)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not path.is_dir():
        raise UsageError(f"data directory {path} does not exist")
    return path


def _resolve(model: str, kind: str) -> str:
    """A local directory as is, else the local HF cache snapshot of a hub id (ModelError with the download hint)."""
    from cxrtriage.backends.model_source import resolve_model

    return resolve_model(model, kind=kind)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


# ------------------------------------------------------------------------------------------ tiny


@_guarded
def cmd_tiny(args: argparse.Namespace) -> int:
    which = ("medsiglip", "medgemma") if args.which == "both" else (args.which,)
    needs = {"torch": "hai-def", "transformers": "hai-def"}
    if "medsiglip" in which:
        needs["sentencepiece"] = "hai-def"  # the tiny SigLIP's tokenizer is trained on the spot
    _require("tiny", needs)
    out = Path(args.out)
    built: dict[str, Path] = {}
    if "medsiglip" in which:
        from cxrtriage.hai_def.tiny import build_tiny_siglip

        built["medsiglip"] = build_tiny_siglip(out / "medsiglip", seed=args.seed)
    if "medgemma" in which:
        from cxrtriage.hai_def.tiny_gemma import build_tiny_medgemma

        built["medgemma"] = build_tiny_medgemma(out / "medgemma", seed=args.seed)
    for name, path in built.items():
        print(f"tiny {name}: {path}")
    print(f"note: {RANDOM_WEIGHTS_NOTE}")
    if "medsiglip" in built:
        print(f"try:  cxrtriage hai-def train-probe --model {built['medsiglip']} --out {out / 'probe'} --limit 20")
    if "medgemma" in built:
        print(
            f"try:  cxrtriage hai-def finetune --model {built['medgemma']} --out {out / 'finetuned'} "
            "--task explanation --limit 4 --epochs 1 --max-length 2048"
        )
    return 0


# ------------------------------------------------------------------------------------------ train-probe


@_guarded
def cmd_train_probe(args: argparse.Namespace) -> int:
    _require("train-probe", {"torch": "hai-def", "transformers": "hai-def", "sklearn": "train"})
    model = _resolve(args.model, "MedSigLIP")
    data_dir = _data_dir(args.data_dir)
    from cxrtriage.hai_def.medsiglip_probe_training import train_medsiglip_probe

    try:
        res = train_medsiglip_probe(model, data_dir, args.out, limit=args.limit, device=args.device, n_boot=args.n_boot)
    except ValueError as exc:  # e.g. a --limit or data directory leaving one class out of train or val
        raise UsageError(f"cannot train the probe: {exc}") from None
    print(json.dumps(res, indent=2))
    print(
        f"use it: CXRTRIAGE_BACKEND=medsiglip CXRTRIAGE_MODEL={args.model} "
        f"CXRTRIAGE_CLASSIFIER={res['probe_path']} cxrtriage serve",
        file=sys.stderr,
    )
    return 0


# ------------------------------------------------------------------------------------------ export-onnx


@_guarded
def cmd_export_onnx(args: argparse.Namespace) -> int:
    _require("export-onnx", {"torch": "hai-def", "transformers": "hai-def", "onnx": "train", "onnxscript": "train"})
    model = _resolve(args.model, "MedSigLIP")
    probe = Path(args.probe)
    if not probe.exists():
        raise UsageError(f"linear probe {probe} not found (train one with `cxrtriage hai-def train-probe`)")
    try:
        from cxrtriage.hai_def.onnx_export import export_medsiglip_bundle
    except ImportError as exc:
        raise UsageError(f"this cxrtriage has no MedSigLIP ONNX bundle export ({exc})") from None
    try:
        report = export_medsiglip_bundle(model, args.out, probe, images=None, opset=args.opset)
    except RuntimeError as exc:  # the export or its parity check failed: not a usage error
        print(f"error: ONNX export failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    print(f"serve it: CXRTRIAGE_BACKEND=medsiglip CXRTRIAGE_MODEL={args.out} cxrtriage serve", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ finetune


def _read_config_file(path: str) -> dict[str, Any]:
    """FinetuneConfig fields from a JSON object; unknown keys and wrong types are UsageErrors."""
    from dataclasses import MISSING, fields

    from cxrtriage.hai_def.finetune_config import FinetuneConfig

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a JSON object of FinetuneConfig fields")
    known = {f.name: f for f in fields(FinetuneConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(
            f"--config {path} has unknown FinetuneConfig field(s) {', '.join(unknown)}; "
            f"valid fields are {', '.join(known)}"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        default = known[key].default if known[key].default is not MISSING else None
        ok = True
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif key == "target_modules":
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            value = tuple(value) if isinstance(value, list) else value
        elif isinstance(default, str):
            ok = isinstance(value, str)
        if not ok:
            kind = 'a list of module names or "all-linear"' if key == "target_modules" else type(default).__name__
            raise UsageError(f"--config {path}: {key} must be {kind}, got {value!r}")
        out[key] = value
    return out


def _finetune_config(args: argparse.Namespace):
    """FinetuneConfig from ``--config`` (any fields) overridden by the explicit flags; UsageError if invalid."""
    from cxrtriage.hai_def.finetune_config import FINETUNE_FLAGS, FinetuneConfig

    values = _read_config_file(args.config) if args.config else {}
    for flag, field in FINETUNE_FLAGS.items():
        if getattr(args, flag) is not None:
            values[field] = getattr(args, flag)
    if args.qlora:
        values["qlora"] = True
    if args.no_gradient_checkpointing:
        values["gradient_checkpointing"] = False
    try:
        return FinetuneConfig(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid fine-tuning configuration: {exc}") from None


@_guarded
def cmd_finetune(args: argparse.Namespace) -> int:
    _require("finetune", {"torch": "hai-def", "transformers": "hai-def", "peft": "hai-def"})
    import torch

    from cxrtriage.data import load_split_records
    from cxrtriage.hai_def.finetune import finetune, verify_reload
    from cxrtriage.hai_def.finetune_data import balanced_records, build_examples
    from cxrtriage.imaging.load import load_image

    cfg = _finetune_config(args)
    model = _resolve(args.model, "MedGemma")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device} requested but CUDA is not available; use --device cpu")
    if cfg.qlora:
        from cxrtriage.backends.model_source import require_4bit

        require_4bit(device)  # ModelError -> one sentence, exit 2
    data_dir = _data_dir(args.data_dir)
    parts = load_split_records(data_dir)
    records = balanced_records(parts["train"], args.limit)
    if not records:
        raise UsageError(f"no training records of the committed split found under {data_dir}")
    if not parts["val"]:
        raise UsageError(f"no validation records of the committed split found under {data_dir}")
    examples = build_examples(records, cfg.task)
    n_urgent = sum(r.urgent for r in records)
    print(
        f"fine-tuning {model} ({cfg.task}) on {len(examples)} train examples ({n_urgent} urgent) on {device}",
        file=sys.stderr,
        flush=True,
    )
    try:
        out = finetune(model, examples, args.out, cfg, device=device)
    except ValueError as exc:  # e.g. a prompt longer than --max-length
        hint = " (use --max-length)" if "max_length" in str(exc) else ""
        raise UsageError(f"cannot fine-tune: {exc}{hint}") from None

    steps = json.loads((out / "train_log.json").read_text(encoding="utf-8"))["steps"]
    val = parts["val"][0]
    answer = verify_reload(out, load_image(val.path).pixels, max_new_tokens=args.verify_tokens, task=cfg.task)
    print(f"adapter: {out / 'adapter'}")
    print(f"merged:  {out / 'merged'}")
    print(f"log:     {out / 'train_log.json'}")
    if steps:
        print(f"loss: first {steps[0]['loss']:.4f} -> last {steps[-1]['loss']:.4f} over {len(steps)} optimizer steps")
    print(f"reloaded merged model on validation image {val.key}: {answer!r}")
    return 0


# ------------------------------------------------------------------------------------------ convert-gguf


@_guarded
def cmd_convert_gguf(args: argparse.Namespace) -> int:
    needs = {"safetensors": "edge"}
    if args.synthesize_tokenizer_model:
        needs["sentencepiece"] = "edge"
    if args.quantize:
        needs["llama_cpp"] = "edge"
    _require("convert-gguf", needs)
    from cxrtriage.hai_def.gguf import convert_to_gguf, find_converter

    converter = find_converter(args.converter)  # the most likely thing to be missing: checked first (ModelError)
    model = Path(_resolve(args.model, "MedGemma"))
    if not (model / "tokenizer.model").is_file() and not args.synthesize_tokenizer_model:
        print(
            f"warning: {model} has no tokenizer.model, which llama.cpp's Gemma 3 converter reads; if conversion "
            "fails, add --synthesize-tokenizer-model (meant for the tiny stand-in)",
            file=sys.stderr,
        )
    model_gguf, mmproj_gguf = convert_to_gguf(
        model,
        args.out,
        converter=converter,
        outtype=args.outtype,
        synthesize_tokenizer_model=args.synthesize_tokenizer_model,
    )
    print(f"text model: {model_gguf}")
    print(f"mmproj:     {mmproj_gguf}")
    if args.quantize:
        from cxrtriage.hai_def.gguf import quantize_gguf

        quantised = quantize_gguf(model_gguf, model_gguf.with_name(f"model-{args.quantize}.gguf"), args.quantize)
        print(f"quantised:  {quantised}")
    else:
        print("smaller text model: add --quantize Q4_K_M (llama.cpp's quantiser via llama-cpp-python)", file=sys.stderr)
    print(f"run it: CXRTRIAGE_BACKEND=medgemma-gguf CXRTRIAGE_MODEL={Path(args.out)} cxrtriage serve", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ parser


def add_parser(subparsers: SubCommands) -> None:
    """Register ``hai-def`` and its subcommands on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "hai-def",
        help="HAI-DEF models (MedSigLIP, MedGemma): tiny stand-ins, probe, fine-tuning, ONNX / GGUF export",
        description="HAI-DEF (MedSigLIP, MedGemma) recipe and tooling; needs the [hai-def] extra. "
        "Models are a local directory or a hub id already in the local Hugging Face cache: "
        "nothing is downloaded.",
    )
    hs = p.add_subparsers(dest="hai_def_command", required=True, metavar="SUBCOMMAND")

    s = hs.add_parser(
        "tiny",
        help="build tiny random-weight MedSigLIP / MedGemma stand-ins (offline, seconds)",
        description="Tiny random-weight stand-ins with the real architectures, saved like the real "
        f"checkpoints (DIR/medsiglip, DIR/medgemma); {RANDOM_WEIGHTS_NOTE}.",
    )
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--which", choices=("medsiglip", "medgemma", "both"), default="both")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_tiny)

    s = hs.add_parser(
        "train-probe",
        help="train the MedSigLIP linear probe on the committed split (needs [train] too)",
        description="Embed the split's train/val images with MedSigLIP, train, calibrate and threshold "
        "the linear probe; prints the validation metrics as JSON.",
    )
    s.add_argument("--model", required=True, metavar="ID_OR_DIR", help="e.g. google/medsiglip-448")
    s.add_argument("--out", required=True, metavar="DIR_OR_JSON", help="directory (probe.json inside) or .json path")
    s.add_argument("--data-dir")
    s.add_argument("--limit", type=_positive_int, help="records per dataset and split, balanced by label (quick runs)")
    s.add_argument("--device", type=_device, help="cpu, cuda or cuda:N (default: cuda if available)")
    s.add_argument("--n-boot", type=_positive_int, default=1000, help="bootstrap resamples for the review band")
    s.set_defaults(func=cmd_train_probe)

    s = hs.add_parser(
        "export-onnx",
        help="export MedSigLIP + probe as an ONNX bundle (model.onnx + model.json)",
        description="Export the MedSigLIP vision tower with the linear probe's head to ONNX, served "
        "without torch by CXRTRIAGE_BACKEND=medsiglip CXRTRIAGE_MODEL=OUT.",
    )
    s.add_argument("--model", required=True, metavar="ID_OR_DIR")
    s.add_argument("--probe", required=True, metavar="PROBE_JSON_OR_DIR")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--opset", type=int, default=17)
    s.set_defaults(func=cmd_export_onnx)

    s = hs.add_parser(
        "finetune",
        help="LoRA / QLoRA fine-tune MedGemma on the split's train labels",
        description="LoRA (or QLoRA) fine-tune of MedGemma on label-derived targets of the committed "
        "split's train records; writes OUT/adapter, OUT/merged and OUT/train_log.json, "
        "then reloads OUT/merged and answers for one validation image. --config gives any "
        "FinetuneConfig fields as JSON; the flags below override it.",
    )
    s.add_argument("--model", required=True, metavar="ID_OR_DIR", help="e.g. google/medgemma-4b-it")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument(
        "--task", choices=("urgency", "explanation"), help="target: strict JSON answer (default) or one line"
    )
    s.add_argument("--data-dir")
    s.add_argument("--limit", type=_positive_int, help="train records per dataset, balanced by label (default: all)")
    s.add_argument("--epochs", type=_positive_int)
    s.add_argument("--lr", type=float, help="learning rate")
    s.add_argument("--lora-r", type=_positive_int, help="LoRA rank (lora_alpha via --config)")
    s.add_argument("--batch", type=_positive_int, help="examples per forward pass (per_device_batch)")
    s.add_argument("--grad-accum", type=_positive_int, help="forward passes per optimizer step")
    s.add_argument("--max-length", type=_positive_int, help="token budget per example, image tokens included")
    s.add_argument("--qlora", action="store_true", help="4-bit NF4 base via bitsandbytes (CUDA only)")
    s.add_argument("--no-gradient-checkpointing", action="store_true")
    s.add_argument("--device", type=_device, help="cpu, cuda or cuda:N (default: cuda if available)")
    s.add_argument("--config", metavar="JSON_FILE", help="JSON object of FinetuneConfig fields")
    s.add_argument("--verify-tokens", type=_positive_int, default=32, help="tokens generated by the reload check")
    s.set_defaults(func=cmd_finetune)

    s = hs.add_parser(
        "convert-gguf",
        help="MedGemma checkpoint -> GGUF text model + mmproj for llama.cpp",
        description="Convert a MedGemma checkpoint with llama.cpp's convert_hf_to_gguf.py into "
        "model-OUTTYPE.gguf and mmproj-OUTTYPE.gguf.",
    )
    s.add_argument("--model", required=True, metavar="DIR", help="local checkpoint (or a cached hub id)")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--converter", metavar="PATH", help="convert_hf_to_gguf.py (default: $CXRTRIAGE_GGUF_CONVERTER)")
    s.add_argument("--outtype", choices=("f16", "bf16", "q8_0"), default="f16")
    s.add_argument(
        "--synthesize-tokenizer-model",
        action="store_true",
        help="write tokenizer.model from tokenizer.json when missing (the tiny stand-in only)",
    )
    s.add_argument(
        "--quantize",
        choices=("Q4_K_M", "Q5_K_M", "Q8_0"),
        help="also write model-QUANT.gguf with llama.cpp's quantiser (needs llama-cpp-python, the [edge] extra)",
    )
    s.set_defaults(func=cmd_convert_gguf)

    from cxrtriage.hai_def.bench import add_bench_parser  # numpy-only at import; torch loads when it runs

    add_bench_parser(hs)
