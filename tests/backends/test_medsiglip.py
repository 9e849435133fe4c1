"""MedSigLIP backend on a tiny random-weight SigLIP built offline (no Hugging Face access, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrtriage.backends import load_backend
from cxrtriage.errors import ModelError

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")


@pytest.fixture(scope="session")
def backend(tiny_siglip: Path):
    from cxrtriage.backends.medsiglip import MedSigLIPBackend

    return MedSigLIPBackend(str(tiny_siglip), device="cpu")


@pytest.fixture(scope="session")
def labelled_images(data_dir: Path):
    """~40 real images, NIH and pediatric, both labels in each half."""
    from cxrtriage.data import load_split_records
    from cxrtriage.imaging.load import load_image

    recs = load_split_records(data_dir)["train"]
    chosen = []
    for ds in ("nih", "kermany"):
        for y in (0, 1):
            chosen += [r for r in recs if r.dataset == ds and r.urgent == y][:10]
    if len({r.urgent for r in chosen}) < 2:
        pytest.skip("data directory lacks both labels")
    return chosen, [load_image(r.path).pixels for r in chosen]


def _grey(seed: int, size: int = 100) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


def test_load_backend_and_protocol(tiny_siglip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrtriage.backends.base import Backend

    monkeypatch.delenv("CXRTRIAGE_CLASSIFIER", raising=False)
    b = load_backend("medsiglip", tiny_siglip)
    assert isinstance(b, Backend)
    assert b.info.backend == "medsiglip" and b.info.name == tiny_siglip.name and len(b.info.sha256) == 64
    assert b.layout is None and b.index is None and b.probe is None
    assert (b.threshold, b.review_band) == (0.5, (0.4, 0.6))
    assert any("UNCALIBRATED" in w for w in b.warnings)
    assert b.footprint_mb() > 0
    out = b.analyze(_grey(0))
    assert 0.0 <= out.score <= 1.0 and out.cam is None and out.embedding is not None


def test_unknown_backend_lists_available() -> None:
    with pytest.raises(ValueError, match="bundled.*medsiglip"):
        load_backend("nope")


def test_embeddings_normalised_and_deterministic(backend) -> None:
    imgs = [_grey(i, 60 + 20 * i) for i in range(3)]
    e1, e2 = backend.embed(imgs), backend.embed(imgs)
    assert e1.shape == (3, backend._embedding_dim()) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e1, e2)
    # batching does not change results
    np.testing.assert_allclose(backend.embed(imgs[:1])[0], e1[0], atol=2e-2)


def test_zero_shot_probabilities(backend) -> None:
    probs = backend.zero_shot(
        _grey(1), {"urgent": ["pneumothorax", "large pleural effusion"], "normal": ["normal chest x-ray"]}
    )
    assert set(probs) == {"urgent", "normal"}
    assert all(0.0 <= p <= 1.0 for p in probs.values())


def test_linear_probe_train_save_reload(
    tiny_siglip: Path, backend, labelled_images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    from cxrtriage.backends.medsiglip import LinearProbe
    from cxrtriage.hai_def.probe import train_linear_probe

    recs, pixels = labelled_images
    emb = backend.embed(pixels)
    y = np.array([r.urgent for r in recs])
    tr, va = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    groups = np.array([r.patient for r in recs])[va]
    probe = train_linear_probe(emb[tr], y[tr], emb[va], y[va], groups=groups, n_boot=200)
    lo, hi = probe.review_band
    assert lo <= probe.threshold <= hi
    path = probe.save(tmp_path / "probe.json")
    again = LinearProbe.load(path)
    np.testing.assert_allclose(again.score(emb), probe.score(emb))

    monkeypatch.setenv("CXRTRIAGE_CLASSIFIER", str(path))
    b = load_backend("medsiglip", tiny_siglip)
    assert b.probe is not None and not b.warnings
    assert b.threshold == pytest.approx(probe.threshold) and b.review_band == pytest.approx(probe.review_band)
    scores = [b.analyze(p).score for p in pixels[:6]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert b.info.sha256 != backend.info.sha256  # the probe is part of the model identity


def test_full_pipeline_prediction(backend, labelled_images, tmp_path: Path) -> None:
    from cxrtriage.pipeline import Triage
    from cxrtriage.schema import Prediction

    recs, _ = labelled_images
    nih = next(r for r in recs if r.dataset == "nih")
    pred = Triage(backend=backend, crops_dir=tmp_path).predict(nih.path)
    assert Prediction.model_validate(pred.model_dump()) == pred
    assert pred.model.backend == "medsiglip" and pred.label in ("Urgent", "Non-Urgent")
    assert pred.crops == []
    assert "no localisation" in pred.explanation and "activation map" in pred.explanation  # says why: no map at all
    # without a trained probe the score is zero-shot: the user is told it is uncalibrated
    assert any("UNCALIBRATED" in w for w in pred.warnings)


def test_missing_hub_model_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from cxrtriage.backends.model_source import resolve_model

    with pytest.raises(ModelError) as exc:
        resolve_model("google/medsiglip-448-not-cached", kind="MedSigLIP")
    msg = str(exc.value)
    assert "google/medsiglip-448-not-cached" in msg and "https://huggingface.co/google/medsiglip-448-not-cached" in msg
    assert "hf download" in msg or "huggingface-cli" in msg
    assert "CXRTRIAGE_BACKEND=bundled" in msg
    with pytest.raises(ModelError, match="CXRTRIAGE_BACKEND=bundled"):
        resolve_model(str(tmp_path / "nowhere"), kind="MedSigLIP")


def test_service_serves_the_medsiglip_backend(tiny_siglip: Path, data_dir: Path, tmp_path: Path) -> None:
    """Backend selection by configuration reaches the web service: /status and /predict report medsiglip."""
    import time

    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.app import create_app

    settings = Settings(backend="medsiglip", model_dir=str(tiny_siglip), crops_dir=tmp_path / "crops", ui=False)
    with TestClient(create_app(settings)) as client:
        for _ in range(120):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.25)
        assert client.get("/status").json()["backend"] == "medsiglip"
        with open(data_dir / "nih" / "images" / "00000165_001.png", "rb") as fh:
            r = client.post("/predict", files={"file": ("x.png", fh, "image/png")})
        assert r.status_code == 200
        body = r.json()
        assert body["model"]["backend"] == "medsiglip" and any("UNCALIBRATED" in w for w in body["warnings"])
