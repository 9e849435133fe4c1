"""Package helpers behind prototype/notebooks/02_fine_tune_medgemma.ipynb: the hyper-parameter table read from
FinetuneConfig, the real-model-or-stand-in choice, the fine-tuning progress bar, adapter-vs-merged agreement and
the MedSigLIP probe's batched embedding."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cxrtriage.errors import ModelError
from cxrtriage.hai_def import finetune as ft


def test_every_config_field_is_documented() -> None:
    docs = ft.field_docs()
    names = [f.name for f in fields(ft.FinetuneConfig)]
    assert [n for n in names if not docs.get(n)] == []
    assert "effective batch" in docs["grad_accum"]
    assert docs["lora_alpha"] != docs["lora_r"]  # one sentence per field, not one shared line


def test_field_docs_parses_shared_and_continued_entries() -> None:
    class Doc:
        """Summary line.

        a / b: shared text
            continued here.
        c: own text.
        """

    assert ft.field_docs(Doc) == {
        "a": "shared text continued here.",
        "b": "shared text continued here.",
        "c": "own text.",
    }


def test_config_rows_show_effective_values_defaults_and_flags() -> None:
    cfg = ft.FinetuneConfig(task="explanation", learning_rate=5e-3, per_device_batch=2, qlora=True)
    rows = {r["field"]: r for r in ft.config_rows(cfg)}
    assert list(rows) == [f.name for f in fields(ft.FinetuneConfig)]
    assert rows["task"]["value"] == "explanation" and rows["task"]["default"] == "urgency" and rows["task"]["changed"]
    assert rows["learning_rate"]["cli"] == "--lr" and rows["learning_rate"]["value"] == 5e-3
    assert rows["per_device_batch"]["cli"] == "--batch" and rows["qlora"]["cli"] == "--qlora"
    assert rows["gradient_checkpointing"]["cli"] == "--no-gradient-checkpointing"
    assert rows["seed"]["cli"] == "--config" and not rows["seed"]["changed"]
    assert rows["target_modules"]["value"] == ", ".join(ft.GEMMA_PROJECTIONS)
    assert all(r["meaning"] for r in rows.values())


def _fake_checkpoint(path: Path, model_type: str, hidden: int) -> Path:
    path.mkdir(parents=True)
    sub = "text_config" if model_type == "gemma3" else "vision_config"
    (path / "config.json").write_text(json.dumps({"model_type": model_type, sub: {"hidden_size": hidden}}))
    return path


def test_choose_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrtriage.backends import model_source

    stand_in = tmp_path / "tiny"
    real = _fake_checkpoint(tmp_path / "medgemma-4b", "gemma3", 2560)
    small = _fake_checkpoint(tmp_path / "small", "gemma3", 64)
    siglip = _fake_checkpoint(tmp_path / "siglip", "siglip", 1152)

    smoke = ft.choose_model("MedGemma", str(real), stand_in, full=False, cuda=True)
    assert smoke.stand_in and smoke.path == str(stand_in) and "only used by the full profile" in smoke.note

    monkeypatch.setattr(model_source, "find_local_medgemma", lambda named=None: None)
    none = ft.choose_model("MedGemma", None, stand_in, full=True, cuda=True)
    assert none.stand_in and none.path == str(stand_in) and "16-24 GB" in none.note and "--qlora" in none.note
    monkeypatch.undo()

    gpu = ft.choose_model("MedGemma", str(real), stand_in, full=True, cuda=True)
    assert (gpu.path, gpu.stand_in, gpu.device) == (str(real), False, "cuda")
    no_gpu = ft.choose_model("MedGemma", str(real), stand_in, full=True, cuda=False)
    assert no_gpu.stand_in and no_gpu.path == str(stand_in) and "no CUDA" in no_gpu.note
    tiny = ft.choose_model("MedGemma", str(small), stand_in, full=True, cuda=True)
    assert tiny.stand_in and tiny.path == str(small)
    wrong = ft.choose_model("MedGemma", str(siglip), stand_in, full=True, cuda=True)
    assert wrong.stand_in and wrong.path == str(stand_in) and "not a MedGemma checkpoint" in wrong.note
    assert not ft.choose_model("MedSigLIP", str(siglip), stand_in, full=True, cuda=True).stand_in
    with pytest.raises(ModelError):
        ft.choose_model("MedGemma", str(tmp_path / "missing"), stand_in, full=True, cuda=True)
    with pytest.raises(ValueError):
        ft.choose_model("MedASR", None, stand_in, full=True)


def test_finetune_progress_and_adapter_matches_merged(tiny_medgemma: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("peft")
    recs = [
        SimpleNamespace(urgent=u, findings=f, path=tmp_path / f"{i}.png", key=f"fake/{i}")
        for i, (u, f) in enumerate([(1, "Pneumonia"), (0, "No Finding")])
    ]
    examples = ft.build_examples(recs, "explanation")
    rng = np.random.default_rng(0)
    for ex in examples:
        ex["image"] = rng.random((64, 64)).astype(np.float32)
    cfg = ft.FinetuneConfig(
        task="explanation",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        learning_rate=1e-2,
        epochs=2,
        per_device_batch=1,
        grad_accum=1,
        max_length=2048,
        gradient_checkpointing=False,
    )
    out = ft.finetune(tiny_medgemma, examples, tmp_path / "ft", cfg, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "LoRA explanation" in err and "4/4" in err
    steps = json.loads((out / "train_log.json").read_text())["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and all(np.isfinite(s["loss"]) for s in steps)
    cmp = ft.compare_adapter_and_merged(out, tiny_medgemma, examples[0]["image"], task="explanation", max_new_tokens=4)
    assert cmp["max_abs_logit_diff"] < 1e-3 and cmp["same_greedy_text"] and cmp["prompt_tokens"] > 16


@pytest.mark.data
def test_probe_embeds_in_batches_with_progress(tiny_siglip: Path, data_dir: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn")
    res = ft.train_medsiglip_probe(
        tiny_siglip, data_dir, tmp_path / "probe", limit=4, device="cpu", n_boot=20, progress=True
    )
    err = capsys.readouterr().err
    assert "MedSigLIP embeddings (train)" in err and "MedSigLIP embeddings (val)" in err
    assert res["n_train"] == 8 and res["n_val"] == 8 and Path(res["probe_path"]).is_file()


# --------------------------------------------------------------------------- the notebook itself

NOTEBOOK = Path(__file__).resolve().parents[2] / "prototype" / "notebooks" / "02_fine_tune_medgemma.ipynb"


def test_notebook02_is_thin_and_labels_stand_ins() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for call in (
        "ft.choose_model(",
        "ft.config_rows(",
        "ft.build_examples(",
        "ft.finetune(",
        "progress=True",
        "ft.compare_adapter_and_merged(",
        'Triage(backend_name="medgemma"',
        "ft.train_medsiglip_probe(",
        "export_medsiglip_bundle(",
        "train(cnn_cfg)",
        "run.finish()",
    ):
        assert call in code, call
    assert "means nothing medically" in code
    assert "only been run on tiny random-weight stand-ins" in nb.cells[0].source
    assert "Kermany" in nb.cells[0].source and "Wang et al." in nb.cells[0].source


@pytest.mark.slow
@pytest.mark.data
def test_notebook02_smoke_profile_executes(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("papermill")
    from cxrtriage.evaluation import notebook_run

    result = notebook_run.execute_notebook(
        NOTEBOOK,
        tmp_path / "executed",
        "smoke",
        parameters={"DATA_DIR": str(data_dir), "OUT_DIR": str(tmp_path / "out")},
    )
    html = result.html.read_text(encoding="utf-8")
    assert "02_fine_tune_medgemma (smoke profile) took" in html and "Random-weight stand-in" in html
    assert (tmp_path / "out" / "ft_urgency" / "merged" / "config.json").is_file()
    assert (tmp_path / "out" / "cnn" / "train_log.json").is_file()
