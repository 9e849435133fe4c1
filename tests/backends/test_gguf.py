"""MedGemma on llama.cpp (the `[edge]` extra): tiny stand-in -> GGUF + mmproj -> image chat completion.

Slow and optional: needs llama-cpp-python built from source (see cxrtriage.hai_def.gguf) and llama.cpp's
``convert_hf_to_gguf.py`` (set CXRTRIAGE_GGUF_CONVERTER; it ships in the llama-cpp-python sdist). Random weights
produce garbage, so the test checks the plumbing and the fallback contract, never the content.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("llama_cpp", reason="llama-cpp-python ([edge] extra) not installed")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from cxrtriage import config  # noqa: E402
from cxrtriage.backends.medgemma.explainer import GENERATION_FAILURE_WARNING, PARSE_FAILURE_WARNING  # noqa: E402
from cxrtriage.backends.medgemma.gguf import GgufExplainer  # noqa: E402
from cxrtriage.backends.medgemma.output import MedGemmaAnswer  # noqa: E402
from cxrtriage.hai_def.gguf import CONVERTER_ENV, convert_to_gguf  # noqa: E402
from cxrtriage.hai_def.tiny_gemma import build_tiny_medgemma  # noqa: E402

REPORT = "Frontal chest radiograph.\nThere is a large right pleural effusion.\nNo pneumothorax."


def _converter() -> Path:
    env = os.environ.get(CONVERTER_ENV)
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/tmp/llama_sdist/*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    for cand in candidates:
        if cand and Path(cand).is_file():
            return Path(cand)
    pytest.skip(f"llama.cpp convert_hf_to_gguf.py not found (set {CONVERTER_ENV})")


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    hf_dir = build_tiny_medgemma(tmp_path_factory.mktemp("tiny_medgemma_hf"), seed=0)
    return convert_to_gguf(
        hf_dir,
        tmp_path_factory.mktemp("tiny_medgemma_gguf"),
        converter=_converter(),
        outtype="f16",
        synthesize_tokenizer_model=True,
    )


def test_conversion_writes_text_and_mmproj(gguf_files: tuple[Path, Path]) -> None:
    model, mmproj = gguf_files
    for path in (model, mmproj):
        assert path.is_file() and path.stat().st_size > 0
        assert path.read_bytes()[:4] == b"GGUF"


def test_gguf_explainer_runs_on_real_image(gguf_files: tuple[Path, Path], nih_pixels: np.ndarray) -> None:
    model, mmproj = gguf_files
    explainer = GgufExplainer(model, mmproj, n_ctx=2048, n_threads=4, max_new_tokens=12)
    answer, warnings = explainer.explain(nih_pixels, REPORT)
    assert GENERATION_FAILURE_WARNING not in warnings, warnings
    if answer is None:
        assert warnings == [PARSE_FAILURE_WARNING]
        assert len(explainer.raw_outputs) == 2  # first try + one repair retry
    else:
        assert isinstance(answer, MedGemmaAnswer) and warnings == []
    assert explainer.last_new_token_count > 0  # the model really generated tokens


def test_medgemma_gguf_backend_end_to_end(
    gguf_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CXRTRIAGE_BACKEND=medgemma-gguf`: the bundled classifier labels, llama.cpp MedGemma explains or falls back."""
    from cxrtriage.backends.medgemma.explainer import PARSE_FAILURE_WARNING
    from cxrtriage.pipeline import Triage

    root = config.Settings().find_data_dir()
    image = root / "nih" / "images" / "00000150_002.png" if root else None
    if image is None or not image.is_file():
        pytest.skip("NIH image not in the data directory")
    monkeypatch.delenv("CXRTRIAGE_CLASSIFIER", raising=False)
    gguf_engine = Triage(backend_name="medgemma-gguf", model_dir=gguf_files[0].parent, crops_dir=tmp_path)
    gguf_engine.explainer.max_new_tokens = 12
    res = gguf_engine.predict(image, REPORT)
    base = Triage(crops_dir=tmp_path).predict(image, REPORT)
    assert res.model.backend == "medgemma-gguf"
    assert (res.label, res.score) == (base.label, base.score)
    assert res.explanation.startswith("MedGemma: ") or PARSE_FAILURE_WARNING in res.warnings
