"""MedGemma on the edge: HF checkpoint -> GGUF (text model + mmproj vision projector) and llama.cpp inference.

Why: llama.cpp runs a quantised MedGemma 4B (Q4_K_M, ~2.5 GB + ~0.8 GB mmproj) on a laptop CPU without torch.
The conversion uses llama.cpp's own ``convert_hf_to_gguf.py`` (shipped inside the llama-cpp-python sdist at
``vendor/llama.cpp/convert_hf_to_gguf.py``, with its ``gguf-py`` package next to it), run once per file:
plain for the text model, ``--mmproj`` for the vision tower + projector. Inference goes through
``llama_cpp.Llama`` and the multimodal (libmtmd) chat handler, with the image passed as a data URI; the answer
goes through the same defensive parser as the transformers backend
(:func:`cxrtriage.backends.medgemma.output.parse_medgemma_output`) with one repair retry and the same fallback
warnings, so callers cannot tell the runtimes apart.

llama-cpp-python must be built from source on x86 CPUs with AMX (a native build crashes on quantised models)::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \\
        pip install --no-binary llama-cpp-python "cxrtriage[edge]"
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cxrtriage import config
from cxrtriage.backends.medgemma.gguf import import_llama_cpp
from cxrtriage.errors import ModelError

log = logging.getLogger(__name__)

CONVERTER_ENV = "CXRTRIAGE_GGUF_CONVERTER"  # path to convert_hf_to_gguf.py


def find_converter(converter: str | Path | None = None) -> Path:
    """Locate ``convert_hf_to_gguf.py``: explicit path, ``$CXRTRIAGE_GGUF_CONVERTER``, else error."""
    candidate = converter or config.Settings().gguf_converter
    if not candidate:
        raise ModelError(
            "No GGUF converter given: pass --converter PATH (converter= in Python) or set "
            f"{CONVERTER_ENV} to llama.cpp's convert_hf_to_gguf.py (it ships in the llama-cpp-python sdist: "
            "pip download --no-binary :all: --no-deps llama-cpp-python, then "
            "vendor/llama.cpp/convert_hf_to_gguf.py)"
        )
    path = Path(candidate).expanduser()
    if not path.is_file():
        raise ModelError(f"GGUF converter not found: {path}")
    return path


def write_sentencepiece_from_tokenizer_json(hf_dir: str | Path) -> Path:
    """Write ``tokenizer.model`` (SentencePiece BPE, byte fallback) from ``tokenizer.json``'s vocabulary.

    Only for checkpoints without one (the tiny test stand-in): llama.cpp's Gemma3 converter reads the
    SentencePiece file, and its fallback (GPT-2 style BPE) rejects unknown pre-tokenizers. The real MedGemma
    ships ``tokenizer.model`` and never needs this. Ids are kept exactly, so the GGUF matches the checkpoint.
    """
    from sentencepiece import sentencepiece_model_pb2 as spm_pb

    hf_dir = Path(hf_dir)
    tok = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(tok["model"]["vocab"])
    for added in tok.get("added_tokens", []):
        vocab.setdefault(added["content"], int(added["id"]))
    special = {a["content"] for a in tok.get("added_tokens", []) if a.get("special")}
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ModelError("tokenizer.json vocabulary ids are not contiguous; cannot write tokenizer.model")

    T = spm_pb.ModelProto.SentencePiece
    proto = spm_pb.ModelProto()
    for piece, idx in by_id:
        sp = proto.pieces.add()
        sp.piece = piece
        sp.score = -float(idx)
        if piece == "<unk>":
            sp.type = T.UNKNOWN
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            sp.type = T.BYTE
        elif piece in special or (piece.startswith("<") and piece.endswith(">") and len(piece) > 2):
            sp.type = T.CONTROL if piece in special else T.USER_DEFINED
        else:
            sp.type = T.NORMAL
    ts = proto.trainer_spec
    ts.model_type = spm_pb.TrainerSpec.BPE
    ts.vocab_size = len(by_id)
    ts.byte_fallback = True
    ts.pad_id, ts.eos_id, ts.bos_id, ts.unk_id = (vocab.get(t, -1) for t in ("<pad>", "<eos>", "<bos>", "<unk>"))
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    out = hf_dir / "tokenizer.model"
    out.write_bytes(proto.SerializeToString())
    return out


def _needs_vision_rename(hf_dir: Path) -> bool:
    """True when vision tensors are saved as ``vision_tower.*`` (transformers 5) not ``vision_tower.vision_model.*``."""
    from safetensors import safe_open

    keys: list[str] = []
    for shard in sorted(hf_dir.glob("*.safetensors")):
        with safe_open(str(shard), "np") as f:
            keys += list(f.keys())
    vision = [k.removeprefix("model.") for k in keys if k.removeprefix("model.").startswith("vision_tower.")]
    return bool(vision) and not any(k.startswith("vision_tower.vision_model.") for k in vision)


def _rename_vision(key: str) -> str:
    prefix = "model." if key.startswith("model.vision_tower.") else ""
    if key.startswith(prefix + "vision_tower.") and not key.startswith(prefix + "vision_tower.vision_model."):
        return prefix + "vision_tower.vision_model." + key[len(prefix + "vision_tower.") :]
    return key


def stage_checkpoint_for_converter(hf_dir: Path, stage_dir: Path) -> Path:
    """Copy of ``hf_dir`` whose vision tensors follow the ``vision_tower.vision_model.*`` layout llama.cpp maps.

    transformers 5 saves Gemma 3's SigLIP tower as ``vision_tower.encoder...``; the converter only knows the
    transformers 4 names (which the published MedGemma checkpoints use, so they need no staging). Non-weight
    files are symlinked; weights are rewritten with renamed keys.
    """
    from safetensors.torch import load_file, save_file

    stage_dir.mkdir(parents=True, exist_ok=True)
    for item in hf_dir.iterdir():
        target = stage_dir / item.name
        if target.exists() or target.is_symlink():
            target.unlink()
        if item.suffix == ".safetensors":
            tensors = load_file(str(item))
            renamed = {_rename_vision(k): v.contiguous() for k, v in tensors.items()}
            save_file(renamed, str(target), metadata={"format": "pt"})
        elif item.name == "model.safetensors.index.json":
            index = json.loads(item.read_text(encoding="utf-8"))
            index["weight_map"] = {_rename_vision(k): v for k, v in index.get("weight_map", {}).items()}
            target.write_text(json.dumps(index, indent=2), encoding="utf-8")
        elif item.is_file():
            target.symlink_to(item.resolve())
    return stage_dir


def _run_converter(converter: Path, hf_dir: Path, outfile: Path, outtype: str, mmproj: bool, model_name: str) -> None:
    cmd = [sys.executable, str(converter), str(hf_dir), "--outfile", str(outfile), "--outtype", outtype]
    cmd += ["--model-name", model_name]
    if mmproj:
        cmd.append("--mmproj")
    env = dict(os.environ)
    gguf_py = converter.parent / "gguf-py"  # the converter's own gguf package (newer than PyPI's)
    if gguf_py.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(gguf_py), env.get("PYTHONPATH", "")) if p)
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)  # noqa: S603 - llama.cpp's converter run by this interpreter, argument list
    if proc.returncode != 0 or not outfile.is_file():
        tail = (proc.stderr or proc.stdout or "")[-3000:]
        raise ModelError(f"GGUF conversion failed ({' '.join(cmd)}), exit {proc.returncode}:\n{tail}")


def convert_to_gguf(
    hf_dir: str | Path,
    out_dir: str | Path,
    converter: str | Path | None = None,
    outtype: str = "f16",
    synthesize_tokenizer_model: bool = False,
) -> tuple[Path, Path]:
    """Convert a local MedGemma (Gemma3ForConditionalGeneration) checkpoint; returns (model_gguf, mmproj_gguf).

    ``outtype`` is one of the converter's (f32, f16, bf16, q8_0, ...); Q4_K_M needs ``llama-quantize`` afterwards
    (see scripts/convert_medgemma_gguf.sh). ``synthesize_tokenizer_model`` writes ``tokenizer.model`` from
    ``tokenizer.json`` when the checkpoint has none (test stand-in only).
    """
    hf_dir = Path(hf_dir)
    out_dir = Path(out_dir)
    if not (hf_dir / "config.json").is_file():
        raise ModelError(f"Not a Hugging Face checkpoint (no config.json): {hf_dir}")
    script = find_converter(converter)
    if synthesize_tokenizer_model and not (hf_dir / "tokenizer.model").is_file():
        write_sentencepiece_from_tokenizer_json(hf_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_name = hf_dir.resolve().name
    if _needs_vision_rename(hf_dir):
        hf_dir = stage_checkpoint_for_converter(hf_dir, out_dir / "_hf_staged")
    model_gguf = out_dir / f"model-{outtype}.gguf"
    mmproj_gguf = out_dir / f"mmproj-{outtype}.gguf"
    _run_converter(script, hf_dir, model_gguf, outtype, mmproj=False, model_name=model_name)
    _run_converter(script, hf_dir, mmproj_gguf, outtype, mmproj=True, model_name=model_name)
    return model_gguf, mmproj_gguf


QUANT_TYPES = ("Q4_K_M", "Q5_K_M", "Q8_0")


def quantize_gguf(src: str | Path, dst: str | Path, quant: str = "Q4_K_M", threads: int | None = None) -> Path:
    """Quantise a GGUF text model with llama.cpp's own quantiser, through llama-cpp-python's bindings (so no
    separate ``llama-quantize`` binary is needed). The mmproj is left f16: quantising it costs quality for little
    size."""
    if quant not in QUANT_TYPES:
        raise ValueError(f"quantisation {quant!r} not offered; choose from {', '.join(QUANT_TYPES)}")
    llama_cpp = import_llama_cpp()
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ModelError(f"GGUF file not found: {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = threads or (os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.is_file():
        raise ModelError(f"llama.cpp quantisation {src} -> {dst} ({quant}) failed with code {rc}")
    return dst
