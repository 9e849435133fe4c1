"""The bundled model: small, self-describing, consistent with its metadata and with torch-free inference."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cxrtriage import config
from cxrtriage.data import SPLIT_FILE, read_split, split_sha256


def _meta() -> dict:
    return json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text())


def test_model_is_small_and_matches_its_sha256():
    meta = _meta()
    model = config.BUNDLED_WEIGHTS_DIR / "model.onnx"
    assert model.stat().st_size < 10 * 1024 * 1024
    assert hashlib.sha256(model.read_bytes()).hexdigest() == meta["sha256"]
    assert meta["training_data"]["split_sha256"] == split_sha256()


def test_every_bundled_model_file_together_stays_under_10_mb():
    """The networks, the index and the two graphs that wrap the networks (classify_full.onnx, segment_full.onnx)."""
    files = [p for p in config.BUNDLED_WEIGHTS_DIR.iterdir() if p.suffix in (".onnx", ".npz")]
    assert {"classify_full.onnx", "segment_full.onnx", "model.onnx", "segment.onnx"} <= {p.name for p in files}
    assert sum(p.stat().st_size for p in files) < 10 * 1024 * 1024


def test_metadata_carries_preprocessing_and_operating_point():
    meta = _meta()
    assert meta["labels"] == ["Non-Urgent", "Urgent"]
    for key in ("input_size", "mean", "std"):
        assert key in meta["preprocess"]
    low, high = meta["review_band"]
    assert 0 < low <= meta["threshold"] <= high < 1
    assert meta["quantization"]["format"].startswith("QDQ static int8")
    members = (meta.get("ensemble") or {}).get("members", 1)  # a seed ensemble: the members' maps side by side
    assert len(meta["head"]["weight"]) == meta["arch"]["widths"][-1] * members


def test_model_is_int8_quantized():
    import onnx

    graph = onnx.load(str(config.BUNDLED_WEIGHTS_DIR / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert [o.name for o in graph.output] == ["urgency_logit", "feature_map"]


def test_index_has_ids_and_labels_only():
    with np.load(config.BUNDLED_WEIGHTS_DIR / "index.npz") as z:
        assert set(z.files) == {"keys", "labels", "embeddings", "centre", "layout_mean", "layout_components"}
        keys = z["keys"]
        assert z["embeddings"].ndim == 2 and z["embeddings"].shape[0] == len(keys)
    split = read_split()
    assert all(split[k] == "train" for k in keys)  # never a validation or test image


def test_split_is_patient_disjoint(data_dir):
    from cxrtriage.data import kermany_records, nih_records

    split = read_split(SPLIT_FILE)
    for records in (nih_records(data_dir), kermany_records(data_dir)):
        parts: dict[str, set[str]] = {}
        for r in records:
            parts.setdefault(r.patient, set()).add(split[r.key])
        assert all(len(p) == 1 for p in parts.values())


def test_model_card_quotes_metadata():
    card = (config.BUNDLED_WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    meta = _meta()
    assert meta["sha256"] in card
    assert "For clinical decision support only — not a diagnostic tool." in card


def _bundle_copy(tmp_path, **calibration):
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(config.BUNDLED_WEIGHTS_DIR, out)
    meta = json.loads((out / "model.json").read_text())
    meta["calibration"] = {**meta["calibration"], **calibration}
    (out / "model.json").write_text(json.dumps(meta))
    return out


def test_a_bundle_whose_calibration_would_invert_decisions_is_refused(tmp_path):
    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.errors import ModelError

    with pytest.raises(ModelError, match="key 'calibration.a': must be positive"):
        BundledOnnxBackend(_bundle_copy(tmp_path, a=-0.03))


def test_an_ablation_bundle_says_which_films_it_is_not_fit_for(tmp_path):
    from cxrtriage.backends.bundled import BundledOnnxBackend

    why = "pediatric validation films ranked worse than chance, AUC 0.165"
    backend = BundledOnnxBackend(_bundle_copy(tmp_path, left_out_of_fit={"kermany": why}))
    assert any(why in w and "Urgent" in w for w in backend.warnings)
    assert BundledOnnxBackend().warnings == []  # the shipped bundle has no such source
