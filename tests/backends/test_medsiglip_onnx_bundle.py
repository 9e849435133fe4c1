"""MedSigLIP vision tower + linear probe exported as an ONNX bundle (model.onnx + model.json) and served by the same
runtime class as the bundled CNN (BundledOnnxBackend), torch-free; on a tiny random-weight SigLIP built offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrtriage import config
from cxrtriage.backends import load_backend
from cxrtriage.errors import ModelError

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

#: |int8 bundle score - torch fp32 score|: the export's own failure bound (measured ~0.01 on the tiny model)
INT8_SCORE_TOL = 0.05


def _images(n: int, seed: int) -> list[np.ndarray]:
    """Non-square (H, W) [0,1] grey images with some structure, a few values outside [0,1] to exercise clipping."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 40 + 9 * i, 52 + 5 * (i % 3)
        yy, xx = np.mgrid[0:h, 0:w]
        img = 0.5 + 0.3 * np.sin(xx / (3 + i)) * np.cos(yy / 5) + 0.15 * rng.standard_normal((h, w))
        out.append(img.astype(np.float32))
    out[0][0, :3] = (-0.2, 1.3, 0.5)
    return out


@pytest.fixture(scope="module")
def torch_plain(tiny_siglip: Path):
    """fp32 torch backend without a probe: the embeddings the probe is trained on."""
    import torch

    from cxrtriage.backends.medsiglip import MedSigLIPBackend

    return MedSigLIPBackend(str(tiny_siglip), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def probe_dir(torch_plain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A probe trained with train_linear_probe on synthetic-image embeddings, saved with an index.npz beside it."""
    from cxrtriage.backends.embedding_index import center_and_normalise
    from cxrtriage.hai_def.probe import train_linear_probe

    imgs = _images(24, seed=7)
    emb = torch_plain.embed(imgs)
    y = (np.array([float(im.mean()) for im in imgs]) > np.median([float(im.mean()) for im in imgs])).astype(int)
    tr, va = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    if len(set(y[tr])) < 2 or len(set(y[va])) < 2:
        y = np.arange(len(y)) // 2 % 2  # both classes in each half whatever the embeddings
    probe = train_linear_probe(
        emb[tr], y[tr], emb[va], y[va], n_boot=50, meta={"ood": {"k": 3, "min_knn_similarity": -1.0}}
    )
    out = tmp_path_factory.mktemp("probe")
    probe.save(out / "probe.json")
    centre = emb[tr].mean(axis=0)
    np.savez_compressed(
        out / "index.npz",
        keys=np.array([f"synthetic/{i}" for i in np.flatnonzero(tr)]),
        labels=y[tr].astype(np.int8),
        embeddings=center_and_normalise(emb[tr], centre),
        centre=centre,
    )
    return out


@pytest.fixture(scope="module")
def torch_probe(tiny_siglip: Path, probe_dir: Path):
    """The torch reference the bundle must match: same checkpoint and probe, fp32 on CPU."""
    import torch

    from cxrtriage.backends.medsiglip import MedSigLIPBackend

    return MedSigLIPBackend(str(tiny_siglip), classifier=probe_dir / "probe.json", device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def bundle(tiny_siglip: Path, probe_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from cxrtriage.hai_def.onnx_export import export_medsiglip_bundle

    out = tmp_path_factory.mktemp("medsiglip-onnx")
    return out, export_medsiglip_bundle(tiny_siglip, out, probe_dir / "probe.json", images=_images(4, seed=1))


def test_bundle_files_and_metadata(bundle, probe_dir: Path) -> None:
    from cxrtriage.backends.medsiglip import LinearProbe
    from cxrtriage.files import sha256_file as _sha256

    out, meta = bundle
    probe = LinearProbe.load(probe_dir)
    p = meta["parity"]
    print(
        f"\nparity: preprocess {p['preprocess_max_abs_diff']:.2e}, fp32 score {p['fp32_score_max_abs_diff']:.2e}, "
        f"int8 score {p['int8_score_max_abs_diff']:.4f}, int8 logit {p['int8_logit_max_abs_diff']:.4f}, "
        f"int8 embedding cosine {p['int8_embedding_cosine_min']:.6f}"
    )
    # fp32 + temp not kept; card.json: nothing measured on the bundle yet
    assert sorted(x.name for x in out.iterdir()) == ["card.json", "index.npz", "model.json", "model.onnx"]
    assert json.loads((out / "model.json").read_text()) == json.loads(json.dumps(meta))
    assert json.loads((out / "card.json").read_text()) == {
        "model": {"name": meta["name"], "version": meta["version"], "sha256": meta["sha256"]}
    }
    assert meta["backend"] == "medsiglip-onnx" and meta["name"].startswith("medsiglip-probe:")
    assert (
        meta["hai_def"] is True
        and "https://developers.google.com/health-ai-developer-foundations/terms" in meta["terms"]
    )
    assert meta["labels"] == ["Non-Urgent", "Urgent"]
    assert meta["output_roles"] == {"logit": "urgency_logit", "feature_map": None, "embedding": "image_embedding"}
    pre = meta["preprocess"]  # from the tiny checkpoint's processor config (32 px, mean/std 0.5, 1/255)
    assert (pre["input_size"], pre["channels"], pre["resize"]) == (32, 3, "siglip-uint8-bilinear")
    assert pre["mean"] == [0.5] * 3 and pre["std"] == [0.5] * 3 and pre["rescale_factor"] == pytest.approx(1 / 255)
    assert meta["calibration"]["type"] == "platt"
    assert (meta["calibration"]["a"], meta["calibration"]["b"]) == (probe.platt_a, probe.platt_b)
    assert meta["threshold"] == probe.threshold and meta["review_band"] == list(probe.review_band)
    assert meta["ood"] == {"k": 3, "min_knn_similarity": -1.0}
    assert meta["probe"]["fingerprint"] == probe.fingerprint()
    assert meta["quantization"]["format"] == "dynamic int8"
    assert meta["sha256"] == _sha256(out / "model.onnx") == meta["files"]["model.onnx"]
    assert meta["files"]["index.npz"] == _sha256(probe_dir / "index.npz")
    assert p["preprocess_max_abs_diff"] <= 1e-4 and p["fp32_score_max_abs_diff"] <= 1e-3
    assert p["fp32_embedding_cosine_min"] >= 0.9999
    assert p["int8_score_max_abs_diff"] <= INT8_SCORE_TOL and p["int8_embedding_cosine_min"] >= 0.999


def test_numpy_preprocessing_equals_processor(bundle, tiny_siglip: Path) -> None:
    """model.json's preprocessing in numpy == MedSigLIPBackend.to_pil + the checkpoint's SigLIP processor."""
    from cxrtriage.hai_def.onnx_vision import OnnxSiglipEmbedder
    from cxrtriage.imaging.preprocess import to_model_input

    out, meta = bundle
    imgs = _images(5, seed=11) + [np.full((70, 45), 0.25, np.float32)]
    assert any(im.shape[0] != im.shape[1] for im in imgs)
    ref = OnnxSiglipEmbedder(out / "model.onnx", tiny_siglip).pixel_values(imgs)
    ours = np.concatenate([to_model_input(im, meta["preprocess"]) for im in imgs])
    assert ours.shape == ref.shape == (len(imgs), 3, 32, 32) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_load_backend_serves_bundle(bundle, torch_probe, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrtriage.backends.base import Backend
    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.imaging.preprocess import to_model_input

    out, meta = bundle
    monkeypatch.delenv("CXRTRIAGE_CLASSIFIER", raising=False)
    b = load_backend("medsiglip", out)
    assert type(b) is BundledOnnxBackend and isinstance(b, Backend)
    assert b.info.backend == "medsiglip-onnx" and b.info.sha256 == meta["sha256"] and b.info.name == meta["name"]
    assert b.layout is None and b.index is not None and b.knn_k == 3 and b.min_knn_similarity == -1.0
    assert (b.threshold, b.review_band) == (meta["threshold"], tuple(meta["review_band"]))
    imgs = _images(3, seed=5)
    for im in imgs:
        o, ref = b.analyze(im), torch_probe.analyze(im)
        assert o.cam is None and o.embedding.shape == (32,)
        assert np.linalg.norm(o.embedding) == pytest.approx(1.0, abs=1e-4)
        assert 0.0 <= o.score <= 1.0 and abs(o.score - ref.score) <= INT8_SCORE_TOL
    logits, fmaps = b.run(np.concatenate([to_model_input(im, b.preprocess_cfg) for im in imgs]))  # bench's call
    assert logits.shape == (3,) and fmaps is None
    # the same directory through the "bundled" name: same runtime, same numbers
    again = load_backend("bundled", out)
    assert type(again) is BundledOnnxBackend and again.info == b.info
    assert again.analyze(imgs[0]).score == b.analyze(imgs[0]).score


def test_env_model_dir_and_classifier_check(
    bundle, probe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.backends.medsiglip import LinearProbe

    out, _ = bundle
    monkeypatch.setenv("CXRTRIAGE_MODEL", str(out))
    monkeypatch.setenv("CXRTRIAGE_CLASSIFIER", str(probe_dir / "probe.json"))  # the probe baked in: accepted
    assert isinstance(load_backend("medsiglip"), BundledOnnxBackend)
    import dataclasses

    probe = LinearProbe.load(probe_dir)
    other = dataclasses.replace(probe, bias=probe.bias + 1.0)  # the probe is frozen: a different probe is a new one
    monkeypatch.setenv("CXRTRIAGE_CLASSIFIER", str(other.save(tmp_path / "probe.json")))
    with pytest.raises(ModelError, match="baked in"):
        load_backend("medsiglip")


def test_tampered_model_raises(bundle, tmp_path: Path) -> None:
    import shutil

    from cxrtriage.backends.bundled import BundledOnnxBackend

    out, _ = bundle
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    with (bad / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        BundledOnnxBackend(bad)
    with pytest.raises(ModelError, match="sha256"):
        load_backend("medsiglip", bad)


def test_triage_end_to_end_on_nih(
    bundle, torch_probe, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxrtriage.data import load_split_records
    from cxrtriage.imaging.load import load_image
    from cxrtriage.pipeline import Triage

    out, meta = bundle
    monkeypatch.delenv("CXRTRIAGE_CLASSIFIER", raising=False)
    nih = next(r for r in load_split_records(data_dir)["test"] if r.dataset == "nih")
    pred = Triage(backend_name="medsiglip", model_dir=out, crops_dir=tmp_path).predict(nih.path)
    ref = torch_probe.analyze(load_image(nih.path).pixels)
    print(f"\nNIH {nih.key}: bundle {pred.score:.4f} vs torch {ref.score:.4f}")
    assert pred.label in ("Urgent", "Non-Urgent") and 0.0 <= pred.score <= 1.0
    assert abs(pred.score - ref.score) <= INT8_SCORE_TOL
    assert pred.model.backend == "medsiglip-onnx" and pred.model.sha256 == meta["sha256"]
    assert pred.crops == []  # no CAM for MedSigLIP
    assert "knn_similarity" in pred.image and any(p.source != "prior_report" for p in pred.provenance)


def test_serving_imports_neither_torch_nor_transformers(bundle, tmp_path: Path) -> None:
    out, _ = bundle
    root = config.Settings().find_data_dir()
    nih = None
    if root is not None:
        from cxrtriage.data import load_split_records

        nih = next((r.path for r in load_split_records(root)["test"] if r.dataset == "nih"), None)
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from cxrtriage.backends import load_backend\n"
        "b = load_backend('medsiglip')\n"
        "o = b.analyze(np.random.default_rng(0).random((64, 48), dtype=np.float32))\n"
        "print(type(b).__name__, b.info.backend, o.score)\n"
        f"path = {str(nih) if nih else None!r}\n"
        "if path:\n"
        "    import cxrtriage\n"
        "    r = cxrtriage.predict(path)\n"
        "    print(r.label, r.score, r.model.backend)\n"
        "    assert r.model.backend == 'medsiglip-onnx'\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n"
        "print('heavy modules:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CXRTRIAGE_CLASSIFIER"}
    env.update(CXRTRIAGE_BACKEND="medsiglip", CXRTRIAGE_MODEL=str(out), CXRTRIAGE_CROPS_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BundledOnnxBackend medsiglip-onnx" in proc.stdout


def test_failed_parity_leaves_no_servable_bundle(
    tiny_siglip: Path, probe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxrtriage.hai_def import onnx_export

    monkeypatch.setattr(onnx_export, "INT8_SCORE_TOL", -1.0)  # any int8 difference now fails
    with pytest.raises(RuntimeError, match="int8 score differs"):
        onnx_export.export_medsiglip_bundle(tiny_siglip, tmp_path, probe_dir, images=_images(2, seed=2))
    assert not (tmp_path / "model.json").exists() and not (tmp_path / "card.json").exists()
    assert "parity" in json.loads((tmp_path / "export_failed.json").read_text())
    with pytest.raises(ModelError, match="not found"):
        load_backend("bundled", tmp_path)
