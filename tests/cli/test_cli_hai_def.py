"""`cxrtriage hai-def ...` as a user runs it: tiny stand-ins, probe, fine-tuning, exports, and clear exit-2 errors."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrtriage.cli.main import main

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("sentencepiece")

SUBCOMMANDS = ("tiny", "train-probe", "export-onnx", "finetune", "convert-gguf")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`cxrtriage hai-def tiny` once per module: (its --out directory, what it printed)."""
    out = tmp_path_factory.mktemp("tiny")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["hai-def", "tiny", "--out", str(out)]) == 0
    return out, buf.getvalue()


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line


def test_help_lists_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["hai-def", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hai-def" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["hai-def"])  # a subcommand is required
    assert exc.value.code == 2


def test_parser_stays_light() -> None:
    """Building the CLI (incl. hai-def) never imports torch, transformers, peft, sklearn or llama_cpp."""
    code = (
        "import sys\nfrom cxrtriage.cli.main import build_parser\nbuild_parser()\n"
        "heavy = {'torch', 'transformers', 'peft', 'sklearn', 'llama_cpp', 'onnx'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\nprint(bad)\nsys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tiny_builds_both_and_they_reload(tiny) -> None:
    from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor

    out, printed = tiny
    assert "random weights, for plumbing tests only" in printed
    assert str(out / "medsiglip") in printed and str(out / "medgemma") in printed
    siglip = AutoModel.from_pretrained(out / "medsiglip")
    assert type(siglip).__name__ == "SiglipModel"
    AutoProcessor.from_pretrained(out / "medsiglip")
    gemma = AutoModelForImageTextToText.from_pretrained(out / "medgemma")
    assert type(gemma).__name__ == "Gemma3ForConditionalGeneration"
    assert AutoProcessor.from_pretrained(out / "medgemma").chat_template


def test_train_probe_on_tiny_siglip(tiny, data_dir: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn")
    out, _ = tiny
    code = main(
        [
            "hai-def",
            "train-probe",
            "--model",
            str(out / "medsiglip"),
            "--out",
            str(tmp_path / "probe"),
            "--data-dir",
            str(data_dir),
            "--limit",
            "6",
            "--device",
            "cpu",
            "--n-boot",
            "50",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)  # stdout is the metrics JSON alone
    assert 0.0 <= res["val_auc"] <= 1.0 and res["n_train"] > 0 and res["n_val"] > 0
    assert Path(res["probe_path"]) == tmp_path / "probe" / "probe.json" and Path(res["probe_path"]).is_file()
    assert "CXRTRIAGE_CLASSIFIER=" in captured.err
    # MedSigLIP embeddings power the similar-case index: training IDs and labels only, with an OOD gate
    from cxrtriage.backends.embedding_index import EmbeddingIndex
    from cxrtriage.backends.medsiglip import LinearProbe

    index = EmbeddingIndex.load(Path(res["index_path"]))
    assert len(index.keys) == res["n_train"] and set(index.labels.tolist()) <= {0, 1}
    assert all(str(k).startswith(("nih/", "kermany/")) for k in index.keys)
    ood = LinearProbe.load(res["probe_path"]).meta["ood"]
    assert ood["min_knn_similarity"] == res["min_knn_similarity"] < ood["val_knn_similarity_quantiles"]["0.0"]


def test_finetune_on_tiny_medgemma(tiny, data_dir: Path, tmp_path: Path, capsys) -> None:
    out, _ = tiny
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"lora_alpha": 8, "lora_dropout": 0.0, "learning_rate": 1e-3, "epochs": 3}))
    ft = tmp_path / "ft"
    code = main(
        [
            "hai-def",
            "finetune",
            "--model",
            str(out / "medgemma"),
            "--out",
            str(ft),
            "--task",
            "explanation",
            "--data-dir",
            str(data_dir),
            "--limit",
            "4",
            "--epochs",
            "1",
            "--batch",
            "2",
            "--grad-accum",
            "1",
            "--lora-r",
            "4",
            "--max-length",
            "2048",
            "--device",
            "cpu",
            "--config",
            str(cfg),
            "--verify-tokens",
            "4",
        ]
    )
    assert code == 0
    assert (ft / "adapter" / "adapter_config.json").is_file()
    assert (ft / "merged" / "config.json").is_file()
    log = json.loads((ft / "train_log.json").read_text())
    # the flag overrides the file (epochs), the file fills what no flag gives (lora_alpha)
    assert log["config"]["epochs"] == 1 and log["config"]["lora_alpha"] == 8 and log["config"]["lora_r"] == 4
    assert log["config"]["task"] == "explanation" and log["steps"]
    printed = capsys.readouterr().out
    assert "loss: first" in printed and "reloaded merged model" in printed


@pytest.mark.parametrize(
    "content, words",
    [
        ({"lora_rank": 8}, ["unknown", "lora_rank", "lora_r"]),
        ({"epochs": "three"}, ["epochs", "int"]),
        ({"task": "report"}, ["task"]),
        ([1, 2], ["JSON object"]),
    ],
)
def test_bad_config_exits_2_with_a_sentence(tmp_path: Path, capsys, content, words) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(content))
    assert (
        main(["hai-def", "finetune", "--model", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    )
    err = capsys.readouterr().err
    _no_traceback(err)
    for w in words:
        assert w in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["finetune", "train-probe", "export-onnx"])
def test_missing_model_id_exits_2_with_download_hint(command: str, tmp_path: Path, monkeypatch, capsys) -> None:
    if command == "train-probe":
        pytest.importorskip("sklearn")
    if command == "export-onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxscript")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["hai-def", command, "--model", "google/does-not-exist", "--out", str(tmp_path / "o")]
    if command == "export-onnx":
        argv += ["--probe", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "hf download google/does-not-exist" in err


@pytest.mark.parametrize(
    "command, module, extra",
    [
        ("finetune", "peft", "hai-def"),
        ("train-probe", "sklearn", "train"),
        ("tiny", "transformers", "hai-def"),
    ],
)
def test_missing_extra_names_what_to_install(command, module, extra, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    argv = ["hai-def", command, "--out", str(tmp_path / "o")] + (
        [] if command == "tiny" else ["--model", str(tmp_path)]
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert f"pip install 'cxrtriage[{extra}]'" in err


def test_convert_gguf_without_converter_exits_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("CXRTRIAGE_GGUF_CONVERTER", raising=False)
    assert main(["hai-def", "convert-gguf", "--model", str(tmp_path), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "--converter" in err and "convert_hf_to_gguf.py" in err
    assert (
        main(
            [
                "hai-def",
                "convert-gguf",
                "--model",
                str(tmp_path),
                "--out",
                str(tmp_path / "g"),
                "--converter",
                str(tmp_path / "nope.py"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "not found" in err


def test_export_onnx_bundle(tiny, tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnx")
    from cxrtriage.hai_def import onnx_export

    if not hasattr(onnx_export, "export_medsiglip_bundle"):
        pytest.skip("cxrtriage.hai_def.onnx_export.export_medsiglip_bundle not written yet")
    import numpy as np
    from transformers import AutoConfig

    from cxrtriage.backends.medsiglip import LinearProbe

    out, _ = tiny
    dim = AutoConfig.from_pretrained(out / "medsiglip").vision_config.hidden_size
    rng = np.random.default_rng(0)
    probe = LinearProbe(weight=rng.standard_normal(dim).tolist(), bias=0.1).save(tmp_path / "probe.json")
    bundle = tmp_path / "bundle"
    assert (
        main(["hai-def", "export-onnx", "--model", str(out / "medsiglip"), "--probe", str(probe), "--out", str(bundle)])
        == 0
    )
    assert (bundle / "model.onnx").is_file() and (bundle / "model.json").is_file()
    captured = capsys.readouterr()
    assert isinstance(json.loads(captured.out), dict)
    assert f"CXRTRIAGE_BACKEND=medsiglip CXRTRIAGE_MODEL={bundle} cxrtriage serve" in captured.err


@pytest.mark.slow
def test_convert_gguf_on_tiny_medgemma(tmp_path: Path, capsys) -> None:
    """Slow: runs llama.cpp's converter twice (~20 s); needs convert_hf_to_gguf.py."""
    env = os.environ.get("CXRTRIAGE_GGUF_CONVERTER")
    found = [env] if env else sorted(glob.glob("/tmp/llama_sdist/*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    if not found or not Path(found[0]).is_file():
        pytest.skip("llama.cpp convert_hf_to_gguf.py not found (set CXRTRIAGE_GGUF_CONVERTER)")
    assert main(["hai-def", "tiny", "--which", "medgemma", "--out", str(tmp_path / "t")]) == 0
    assert (
        main(
            [
                "hai-def",
                "convert-gguf",
                "--model",
                str(tmp_path / "t" / "medgemma"),
                "--out",
                str(tmp_path / "g"),
                "--converter",
                found[0],
                "--synthesize-tokenizer-model",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for name in ("model-f16.gguf", "mmproj-f16.gguf"):
        assert str(tmp_path / "g" / name) in out
        assert (tmp_path / "g" / name).read_bytes()[:4] == b"GGUF"
