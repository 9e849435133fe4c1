"""The `medgemma` backend: the bundled classifier labels and scores, MedGemma (a tiny random stand-in here) explains.

Random weights produce garbage, so the real-generation test checks the fallback (the classifier's explanation
is kept, with a parse warning); a valid, disagreeing answer is injected by replacing MedGemmaExplainer.explain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from cxrtriage.backends import Explainer, load_backend, load_stages  # noqa: E402
from cxrtriage.backends.medgemma.backend import MedGemmaBackend  # noqa: E402
from cxrtriage.backends.medgemma.explainer import PARSE_FAILURE_WARNING, MedGemmaExplainer  # noqa: E402
from cxrtriage.backends.medgemma.output import MedGemmaAnswer  # noqa: E402
from cxrtriage.errors import ModelError  # noqa: E402
from cxrtriage.pipeline import Triage  # noqa: E402
from cxrtriage.schema import Prediction  # noqa: E402

REPORT = "Small right effusion."


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CXRTRIAGE_* backend settings leak in from the user, nor out from the CLI tests (monkeypatch restores)."""
    for var in ("CXRTRIAGE_BACKEND", "CXRTRIAGE_MODEL", "CXRTRIAGE_MODEL_DIR", "CXRTRIAGE_CLASSIFIER"):
        monkeypatch.setenv(var, "x")  # records the original value (or its absence) for teardown
        monkeypatch.delenv(var)


@pytest.fixture(scope="session")
def tiny_dir(tiny_medgemma: Path) -> Path:
    return tiny_medgemma


@pytest.fixture(scope="session")
def image(data_dir: Path) -> Path:
    path = data_dir / "nih" / "images" / "00000150_002.png"
    if not path.is_file():
        pytest.skip(f"{path} not in the data directory")
    return path


@pytest.fixture(scope="session")
def gemma_engine(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Triage:
    engine = Triage(backend_name="medgemma", model_dir=tiny_dir, crops_dir=tmp_path_factory.mktemp("crops_medgemma"))
    engine.explainer.max_new_tokens = 16  # random weights: keep the garbage short
    return engine


def test_loader_gives_the_bundled_classifier_and_the_medgemma_explainer(tiny_dir: Path) -> None:
    classifier, explainer = load_stages("medgemma", tiny_dir)
    assert isinstance(explainer, MedGemmaBackend) and isinstance(explainer, Explainer)
    assert type(classifier).__name__ == "BundledOnnxBackend"
    # each model has its own identity: MedGemma's name, version and sha256 are not the classifier's
    assert explainer.info.backend == "medgemma" and explainer.info.name == tiny_dir.name
    assert len(explainer.info.sha256) == 64 and explainer.info.sha256 != classifier.info.sha256
    assert explainer._explainer is None  # MedGemma loads lazily, on the first explanation
    with pytest.raises(ValueError, match="load_stages"):
        load_backend("medgemma", tiny_dir)


def test_garbage_output_keeps_classifier_label_and_explanation(
    gemma_engine: Triage, engine: Triage, image: Path
) -> None:
    base = engine.predict(image, REPORT, save_crops=False)
    res = gemma_engine.predict(image, REPORT, save_crops=False)
    Prediction.model_validate(json.loads(res.model_dump_json()))
    assert res.model.backend == "medgemma"
    # the result names both models with their own hashes: the classifier that scored, MedGemma that explained
    assert (res.model.name, res.model.version, res.model.sha256) == (
        base.model.name,
        base.model.version,
        base.model.sha256,
    )
    assert res.explainer is not None and res.explainer.sha256 != res.model.sha256 and base.explainer is None
    assert (res.label, res.score, res.threshold) == (base.label, base.score, base.threshold)
    assert res.explanation == base.explanation and res.needs_review == base.needs_review
    assert PARSE_FAILURE_WARNING in res.warnings
    assert not any(p.source == "medgemma" for p in res.provenance)


def test_disagreeing_second_opinion_is_shown_and_flags_review(
    gemma_engine: Triage, engine: Triage, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = engine.predict(image, REPORT, save_crops=False)
    other = "Non-Urgent" if base.label == "Urgent" else "Urgent"
    answer = MedGemmaAnswer(
        urgency=other,
        explanation="Small right pleural effusion.",
        box_xywh=None,
        supporting_quote="Small right effusion",
        raw="{}",
    )
    monkeypatch.setattr(MedGemmaExplainer, "explain", lambda self, pixels, prior: (answer, []))
    res = gemma_engine.predict(image, REPORT, save_crops=False)
    assert res.explanation == "MedGemma: Small right pleural effusion."
    (opinion,) = [p for p in res.provenance if p.source == "medgemma"]
    assert opinion.relation == "second_opinion" and other in opinion.snippet and "disagrees" in opinion.snippet
    assert res.needs_review is True
    assert (res.label, res.score) == (base.label, base.score)
    assert any(w.startswith(f"MedGemma's second opinion ({other}) disagrees") for w in res.warnings)
    # MedGemma's verified quote is added as a supporting quote unless a report sentence already contains it
    quotes = [p.snippet for p in res.provenance if p.source == "prior_report"]
    if "Small right effusion." in [p.snippet for p in base.provenance if p.source == "prior_report"]:
        assert "Small right effusion" not in quotes
    else:
        assert any(p.snippet == "Small right effusion" and p.relation == "supports" for p in res.provenance)


def test_agreeing_second_opinion_does_not_flag_review(
    gemma_engine: Triage, engine: Triage, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = engine.predict(image, None, save_crops=False)
    answer = MedGemmaAnswer(
        urgency=base.label, explanation="Looks as scored.", box_xywh=None, supporting_quote=None, raw="{}"
    )
    monkeypatch.setattr(MedGemmaExplainer, "explain", lambda self, pixels, prior: (answer, []))
    res = gemma_engine.predict(image, None, save_crops=False)
    assert res.explanation.startswith("MedGemma") and res.needs_review == base.needs_review
    assert any(p.relation == "second_opinion" and "agrees" in p.snippet for p in res.provenance)
    assert not any("disagrees" in w for w in res.warnings)


def test_cli_predict_with_medgemma_backend(
    tiny_dir: Path, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxrtriage.cli.main import main

    answer = MedGemmaAnswer(
        urgency=None, explanation="Stand-in answer.", box_xywh=None, supporting_quote=None, raw="{}"
    )
    monkeypatch.setattr(MedGemmaExplainer, "explain", lambda self, pixels, prior: (answer, []))  # skip slow generation
    out = tmp_path / "p.jsonl"
    try:
        assert main(["predict", "--backend", "medgemma", "--model", str(tiny_dir), str(image), "--out", str(out)]) == 0
    finally:
        from cxrtriage.pipeline import get_triage

        get_triage.cache_clear()  # do not leave a MedGemma engine cached for other tests
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["model"]["backend"] == "medgemma" and row["explanation"] == "MedGemma: Stand-in answer."


def test_missing_hub_model_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "google/medgemma-not-in-any-cache"
    monkeypatch.setenv("CXRTRIAGE_MODEL", missing)
    with pytest.raises(ModelError) as exc:
        load_stages("medgemma")
    assert missing in str(exc.value) and "CXRTRIAGE_BACKEND=bundled" in str(exc.value)


def test_cli_rejects_unknown_backend(capsys: pytest.CaptureFixture) -> None:
    from cxrtriage.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", "--backend", "nope", "x.png"])
    assert exc.value.code == 2 and "medgemma" in capsys.readouterr().err


def test_medgemma_box_becomes_a_marked_crop(gemma_engine: Triage, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MedGemma's [y0,x0,y1,x1]/1000 box (already in pixels here) is saved as one more crop, marked as MedGemma's,
    and the result still has at most 3 crops."""
    from PIL import Image

    with Image.open(image) as im:
        width, height = im.size
    box = (width // 10, height // 2, width // 4, height // 5)  # image left, lower half: the patient's right lung
    answer = MedGemmaAnswer(
        urgency="Urgent", explanation="Right lower opacity.", box_xywh=box, supporting_quote=None, raw="{}"
    )
    monkeypatch.setattr(MedGemmaExplainer, "explain", lambda self, pixels, prior: (answer, []))
    res = gemma_engine.predict(image, None)
    assert 1 <= len(res.crops) <= 3
    mine = [c for c in res.crops if c.source == "medgemma"]
    assert len(mine) == 1 and (mine[0].x, mine[0].y, mine[0].w, mine[0].h) == box
    assert mine[0].strength is None and mine[0].region.startswith("right ")
    assert Path(mine[0].thumb_path).is_file()
    assert all(c.source == "activation_map" for c in res.crops if c is not mine[0])


def test_medgemma_gguf_backend_needs_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without GGUF files the edge backend fails at load time with a sentence saying how to produce them."""
    with pytest.raises(ModelError, match="CXRTRIAGE_MODEL"):
        load_stages("medgemma-gguf")
    with pytest.raises(ModelError, match="convert-gguf"):
        load_stages("medgemma-gguf", tmp_path)
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="mmproj"):
        load_stages("medgemma-gguf", tmp_path)


def test_medgemma_gguf_backend_picks_the_quantised_file(tmp_path: Path) -> None:
    from cxrtriage.backends.medgemma.backend import MedGemmaGgufBackend

    for name in ("model-f16.gguf", "model-Q4_K_M.gguf", "mmproj-f16.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    backend = load_stages("medgemma-gguf", tmp_path).explainer
    assert isinstance(backend, MedGemmaGgufBackend) and backend.info.backend == "medgemma-gguf"
    assert Path(backend.model_dir).name == "model-Q4_K_M.gguf" and backend.mmproj.name == "mmproj-f16.gguf"
    assert backend._explainer is None  # llama.cpp loads lazily, on the first explanation


def test_four_bit_on_cpu_is_a_clear_error(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CXRTRIAGE_4BIT=1 (bitsandbytes NF4) is GPU-only: on CPU the explainer refuses with a sentence, no traceback."""
    monkeypatch.setenv("CXRTRIAGE_4BIT", "1")
    backend = load_stages("medgemma", tiny_dir).explainer
    backend.device = "cpu"
    with pytest.raises(ModelError, match="CUDA GPU"):
        backend.explainer()


def test_cli_finetune_qlora_on_cpu_exits_2(
    tiny_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cxrtriage.cli.main import main

    code = main(
        [
            "hai-def",
            "finetune",
            "--model",
            str(tiny_dir),
            "--out",
            str(tmp_path / "ft"),
            "--qlora",
            "--device",
            "cpu",
            "--data-dir",
            str(data_dir),
            "--limit",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "CUDA GPU" in err and "Traceback" not in err
    assert not (tmp_path / "ft").exists()  # refused before any work


def test_footprint_counts_medgemma_weights(tiny_dir: Path, tmp_path: Path) -> None:
    """The size the UI shows includes MedGemma's own files, not only the classifier's."""
    engine = Triage(backend_name="medgemma", model_dir=tiny_dir, crops_dir=tmp_path / "crops")
    weights = sum(p.stat().st_size for p in tiny_dir.glob("*.safetensors")) / 1e6
    assert weights > 0 and abs(engine.explainer.footprint_mb() - weights) < 1e-9
    assert abs(engine.footprint_mb() - (engine.backend.footprint_mb() + weights)) < 1e-9
    for name, size in (("model-Q4_K_M.gguf", 3000), ("mmproj-f16.gguf", 1000)):
        (tmp_path / name).write_bytes(b"G" * size)
    gguf = Triage(backend_name="medgemma-gguf", model_dir=tmp_path, crops_dir=tmp_path / "crops")
    assert abs(gguf.footprint_mb() - (gguf.backend.footprint_mb() + 4000 / 1e6)) < 1e-9
