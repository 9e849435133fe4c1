"""``cxrtriage hai-def bench`` at tiny scale: the same code that times the real-size random-weight models runs,
writes its JSON and prints the table beside the bundled model's numbers (speed itself is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from cxrtriage.hai_def.bench import TINY_NOTE, run_hai_def_bench  # noqa: E402


def test_tiny_bench_times_every_runtime_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    r = run_hai_def_bench(
        scale="tiny", parts=("medsiglip", "medgemma"), repeats=1, n_text=8, new_tokens=3, out=out, work_dir=tmp_path
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["note"] == TINY_NOTE  # tiny numbers must never pass for the real models'
    v = r["medsiglip_vision"]
    for key in ("torch_fp32", "torch_bf16", "ort_fp32", "ort_int8_dynamic"):
        assert v[key]["median_s"] > 0 and v[key]["n"] == 1
    assert v["cosine_ort_fp32_vs_torch_fp32"] > 0.9999 and v["cosine_ort_int8_dynamic_vs_torch_fp32"] > 0.99
    g = r["medgemma_transformers"]
    assert g["prompt_tokens"] == 1 + 8 + 2 + g["image_tokens"] and g["new_tokens"] == 3
    assert g["time_to_first_token"]["median_s"] > 0 and g["per_token_s"] is not None
    printed = capsys.readouterr().out
    assert (
        "TINY random stand-ins" in printed and "MedSigLIP vision tower" in printed and "time to first token" in printed
    )
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # exported ONNX files are cleaned up


def test_bench_rejects_unknown_parts() -> None:
    with pytest.raises(ValueError, match="unknown parts"):
        run_hai_def_bench(scale="tiny", parts=("medsiglip", "resnet"))


@pytest.mark.slow
def test_tiny_bench_gguf_part(tmp_path: Path) -> None:
    """GGUF: convert, quantise to Q4_K_M with llama.cpp's quantiser, time llama.cpp (needs [edge] + converter)."""
    pytest.importorskip("llama_cpp")
    import glob

    found = sorted(glob.glob("/tmp/llama_sdist/*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    import os

    converter = os.environ.get("CXRTRIAGE_GGUF_CONVERTER") or (found[0] if found else None)
    if not converter:
        pytest.skip("llama.cpp convert_hf_to_gguf.py not found (set CXRTRIAGE_GGUF_CONVERTER)")
    r = run_hai_def_bench(
        scale="tiny", parts=("gguf",), repeats=1, n_text=8, new_tokens=4, converter=converter, work_dir=tmp_path
    )
    q = r["medgemma_gguf"]
    assert isinstance(q, dict), q
    assert q["size_mb"]["text_Q4_K_M"] < q["size_mb"]["text_f16"]
    assert q["generated_tokens"] >= 1 and q["per_token_s"] > 0 and q["prompt_tokens"] >= 8


def test_gguf_part_is_skipped_with_the_reason_without_a_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CXRTRIAGE_GGUF_CONVERTER", raising=False)
    r = run_hai_def_bench(
        scale="tiny", parts=("gguf",), repeats=1, converter=str(tmp_path / "missing.py"), work_dir=tmp_path
    )
    assert isinstance(r["medgemma_gguf"], str) and r["medgemma_gguf"].startswith("skipped:")


def test_cli_bench_bad_part_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from cxrtriage.cli.main import main

    assert main(["hai-def", "bench", "--scale", "tiny", "--parts", "medsiglip,resnet"]) == 2
    err = capsys.readouterr().err
    assert "unknown parts" in err and "Traceback" not in err
