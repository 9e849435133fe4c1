"""MedGemma on the edge: HF checkpoint -> GGUF (text model + mmproj vision projector) and llama.cpp inference.

Why: llama.cpp runs a quantised MedGemma 4B (Q4_K_M, ~2.5 GB + ~0.8 GB mmproj) on a laptop CPU without torch.
The conversion uses llama.cpp's own ``convert_hf_to_gguf.py`` (shipped inside the llama-cpp-python sdist at
``vendor/llama.cpp/convert_hf_to_gguf.py``, with its ``gguf-py`` package next to it), run once per file:
plain for the text model, ``--mmproj`` for the vision tower + projector. Inference goes through
``llama_cpp.Llama`` and the multimodal (libmtmd) chat handler, with the image passed as a data URI; the answer
goes through the same defensive parser as the transformers backend
(:func:`cxrtriage.backends.medgemma_output.parse_medgemma_output`) with one repair retry and the same fallback
warnings, so callers cannot tell the runtimes apart.

llama-cpp-python must be built from source on x86 CPUs with AMX (a native build crashes on quantised models)::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \\
        pip install --no-binary llama-cpp-python "cxrtriage[edge]"
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.errors import ModelError
from cxrtriage.backends.medgemma_explainer import ask_with_one_repair, grey_to_pil
from cxrtriage.backends.medgemma_output import MedGemmaAnswer
from cxrtriage.backends.medgemma_prompt import REPAIR_PROMPT, build_messages

log = logging.getLogger(__name__)

EDGE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
EDGE_INSTALL_HINT = (
    "llama-cpp-python is not installed. Install the edge extra, built from source: "
    f'CMAKE_ARGS="{EDGE_CMAKE_ARGS}" pip install --no-binary llama-cpp-python "cxrtriage[edge]"'
)
CONVERTER_ENV = "CXRTRIAGE_GGUF_CONVERTER"  # path to convert_hf_to_gguf.py


def _import_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
        import llama_cpp.llama_chat_format  # noqa: F401
    except ImportError as exc:
        raise ModelError(EDGE_INSTALL_HINT) from exc
    return llama_cpp


def find_converter(converter: str | Path | None = None) -> Path:
    """Locate ``convert_hf_to_gguf.py``: explicit path, ``$CXRTRIAGE_GGUF_CONVERTER``, else error."""
    candidate = converter or os.environ.get(CONVERTER_ENV)
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


def _run_converter(
    converter: Path, hf_dir: Path, outfile: Path, outtype: str, mmproj: bool, model_name: str
) -> None:
    cmd = [sys.executable, str(converter), str(hf_dir), "--outfile", str(outfile), "--outtype", outtype]
    cmd += ["--model-name", model_name]
    if mmproj:
        cmd.append("--mmproj")
    env = dict(os.environ)
    gguf_py = converter.parent / "gguf-py"  # the converter's own gguf package (newer than PyPI's)
    if gguf_py.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(gguf_py), env.get("PYTHONPATH", "")) if p)
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
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
MMPROJ_ENV = "CXRTRIAGE_MMPROJ"  # the vision projector when CXRTRIAGE_MODEL names a single .gguf file


def quantize_gguf(src: str | Path, dst: str | Path, quant: str = "Q4_K_M", threads: int | None = None) -> Path:
    """Quantise a GGUF text model with llama.cpp's own quantiser, through llama-cpp-python's bindings (so no
    separate ``llama-quantize`` binary is needed). The mmproj is left f16: quantising it costs quality for little size."""
    if quant not in QUANT_TYPES:
        raise ValueError(f"quantisation {quant!r} not offered; choose from {', '.join(QUANT_TYPES)}")
    llama_cpp = _import_llama_cpp()
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


def find_gguf_pair(location: str | Path) -> tuple[Path, Path]:
    """(text model, mmproj) from a directory holding one ``mmproj*.gguf`` and one other ``*.gguf`` (a quantised
    file is preferred over f16/bf16/f32 when both are there), or from a text-model file plus ``$CXRTRIAGE_MMPROJ``
    or a ``mmproj*.gguf`` beside it. Raises ModelError saying how to produce the files."""
    hint = ("convert a local MedGemma checkpoint with `cxrtriage hai-def convert-gguf --model HF_DIR --out DIR` "
            "(or scripts/convert_medgemma_gguf.sh), or use CXRTRIAGE_BACKEND=bundled")
    loc = Path(location).expanduser()
    if loc.is_file():
        model = loc
        mm_env = os.environ.get(MMPROJ_ENV)
        mmprojs = [Path(mm_env)] if mm_env else sorted(loc.parent.glob("mmproj*.gguf"))
    elif loc.is_dir():
        mmprojs = sorted(loc.glob("mmproj*.gguf"))
        texts = [p for p in sorted(loc.glob("*.gguf")) if not p.name.startswith("mmproj")]
        quantised = [p for p in texts if not any(t in p.name.lower() for t in ("f16", "bf16", "f32"))]
        texts = quantised or texts
        if len(texts) != 1:
            found = ", ".join(p.name for p in texts) or "none"
            raise ModelError(f"expected one MedGemma text GGUF in {loc}, found {found}: {hint}")
        model = texts[0]
    else:
        raise ModelError(f"MedGemma GGUF location {loc} does not exist: {hint}")
    if len(mmprojs) != 1 or not mmprojs[0].is_file():
        raise ModelError(f"expected one vision projector (mmproj*.gguf) for {model}, found "
                         f"{', '.join(str(p) for p in mmprojs) or 'none'}; set {MMPROJ_ENV}: {hint}")
    return model, mmprojs[0]


def pil_to_data_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _chat_handler_class(chat_format: Any):
    """The Gemma 3 multimodal handler of this llama-cpp-python build (names changed across 0.3.x)."""
    for name in ("Gemma3ChatHandler", "MTMDChatHandler"):
        cls = getattr(chat_format, name, None)
        if cls is not None:
            return cls
    raise ModelError(
        "This llama-cpp-python build has no Gemma 3 multimodal chat handler "
        "(Gemma3ChatHandler / MTMDChatHandler); upgrade llama-cpp-python"
    )


def _to_openai_messages(messages: list[dict], image_uri: str) -> list[dict]:
    """Our Gemma chat messages -> OpenAI-style messages with the image as an ``image_url`` data URI."""
    out = []
    for msg in messages:
        parts = []
        for part in msg["content"]:
            if part.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": image_uri}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        out.append({"role": msg["role"], "content": parts})
    return out


class GgufExplainer:
    """MedGemma via llama.cpp (GGUF text model + mmproj); same ``explain`` contract as MedGemmaExplainer."""

    def __init__(
        self,
        model_path: str | Path,
        mmproj_path: str | Path,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        max_new_tokens: int = 160,
        verbose: bool = False,
    ) -> None:
        llama_cpp = _import_llama_cpp()
        from llama_cpp import llama_chat_format

        self.model_path = str(model_path)
        self.mmproj_path = str(mmproj_path)
        self.max_new_tokens = int(max_new_tokens)
        self.raw_outputs: list[str] = []
        self.last_new_token_count = 0
        for p in (self.model_path, self.mmproj_path):
            if not Path(p).is_file():
                raise ModelError(f"GGUF file not found: {p}")
        handler_cls = _chat_handler_class(llama_chat_format)
        try:
            self.chat_handler = handler_cls(clip_model_path=self.mmproj_path, verbose=verbose)
            self.llm = llama_cpp.Llama(
                model_path=self.model_path,
                chat_handler=self.chat_handler,
                n_ctx=int(n_ctx),
                n_threads=n_threads or max(1, (os.cpu_count() or 2) // 2),
                n_gpu_layers=0,
                verbose=verbose,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"Could not load GGUF MedGemma ({self.model_path}, {self.mmproj_path}): {exc}") from exc

    def _generate(self, messages: list[dict]) -> str:
        resp = self.llm.create_chat_completion(
            messages=messages, max_tokens=self.max_new_tokens, temperature=0.0, top_k=1
        )
        usage = resp.get("usage") or {}
        self.last_new_token_count = int(usage.get("completion_tokens") or 0)
        return resp["choices"][0]["message"].get("content") or ""

    def explain(self, pixels: np.ndarray, prior_report: str | None) -> tuple[MedGemmaAnswer | None, list[str]]:
        """Ask MedGemma about one image; (answer, warnings), answer None when unusable after one repair retry."""
        arr = np.asarray(pixels)
        image_size = (int(arr.shape[0]), int(arr.shape[1]))
        messages = _to_openai_messages(build_messages(prior_report), pil_to_data_uri(grey_to_pil(arr)))
        self.raw_outputs = []
        counts: list[int] = []

        def generate(msgs: list[dict]) -> str:
            text = self._generate(msgs)
            counts.append(self.last_new_token_count)
            return text

        def repair(previous: str) -> list[dict]:
            return [{"role": "assistant", "content": [{"type": "text", "text": previous}]},
                    {"role": "user", "content": [{"type": "text", "text": REPAIR_PROMPT}]}]

        result = ask_with_one_repair(generate, messages, repair, image_size, prior_report, self.raw_outputs,
                                     "GGUF MedGemma")
        self.last_new_token_count = sum(counts)  # both attempts, as before
        return result
