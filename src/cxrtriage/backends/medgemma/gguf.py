"""MedGemma through llama.cpp at run time (the ``medgemma-gguf`` backend): find the GGUF text model and its vision
projector, and explain an image with them. Needs the ``[edge]`` extra (llama-cpp-python), imported lazily.

Producing the GGUF files (conversion, quantisation) is offline work: :mod:`cxrtriage.hai_def.gguf`.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.backends.medgemma.explainer import ask_with_one_repair, grey_to_pil
from cxrtriage.backends.medgemma.output import MedGemmaAnswer
from cxrtriage.backends.medgemma.prompt import REPAIR_PROMPT, build_messages
from cxrtriage.errors import ModelError
from cxrtriage.optional import install_command

EDGE_INSTALL_HINT = (
    f"llama-cpp-python is not installed. Install the edge extra, built from source: {install_command('edge')}"
)
MMPROJ_ENV = "CXRTRIAGE_MMPROJ"  # the vision projector when CXRTRIAGE_MODEL names a single .gguf file


def import_llama_cpp():
    """llama_cpp and its chat formats, or ModelError saying how to install the [edge] extra."""
    try:
        import llama_cpp  # noqa: F401
        import llama_cpp.llama_chat_format  # noqa: F401
    except ImportError as exc:
        raise ModelError(EDGE_INSTALL_HINT) from exc
    return llama_cpp


def find_gguf_pair(location: str | Path, mmproj: str | Path | None = None) -> tuple[Path, Path]:
    """(text model, mmproj) from a directory holding one ``mmproj*.gguf`` and one other ``*.gguf`` (a quantised
    file is preferred over f16/bf16/f32 when both are there), or from a text-model file plus ``mmproj``
    (``CXRTRIAGE_MMPROJ``) or a ``mmproj*.gguf`` beside it. Raises ModelError saying how to produce the files."""
    hint = (
        "convert a local MedGemma checkpoint with `cxrtriage hai-def convert-gguf --model HF_DIR --out DIR` "
        "(or scripts/convert_medgemma_gguf.sh), or use CXRTRIAGE_BACKEND=bundled"
    )
    loc = Path(location).expanduser()
    if loc.is_file():
        model = loc
        mmprojs = [Path(mmproj)] if mmproj else sorted(loc.parent.glob("mmproj*.gguf"))
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
        raise ModelError(
            f"expected one vision projector (mmproj*.gguf) for {model}, found "
            f"{', '.join(str(p) for p in mmprojs) or 'none'}; set {MMPROJ_ENV}: {hint}"
        )
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


def to_openai_messages(messages: list[dict], image_uri: str) -> list[dict]:
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
        llama_cpp = import_llama_cpp()
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
        messages = to_openai_messages(build_messages(prior_report), pil_to_data_uri(grey_to_pil(arr)))
        self.raw_outputs = []
        counts: list[int] = []

        def generate(msgs: list[dict]) -> str:
            text = self._generate(msgs)
            counts.append(self.last_new_token_count)
            return text

        def repair(previous: str) -> list[dict]:
            return [
                {"role": "assistant", "content": [{"type": "text", "text": previous}]},
                {"role": "user", "content": [{"type": "text", "text": REPAIR_PROMPT}]},
            ]

        result = ask_with_one_repair(
            generate, messages, repair, image_size, prior_report, self.raw_outputs, "GGUF MedGemma"
        )
        self.last_new_token_count = sum(counts)  # both attempts, as before
        return result
