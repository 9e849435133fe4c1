"""model.json as one typed bundle (BundleConfig): what the exporters write is what the engine reads, a bad file is
refused with a sentence naming the file and the key, and measured results live in card.json, which the engine
never opens."""

from __future__ import annotations

import builtins
import io
import json
import shutil
from pathlib import Path

import pytest

from cxrtriage import config
from cxrtriage.backends.bundle_config import LEGACY_MEASURED_KEYS, META_FILE, BundleConfig, write_bundle_config
from cxrtriage.errors import ModelError

SHIPPED = config.BUNDLED_WEIGHTS_DIR


def _raw() -> dict:
    return json.loads((SHIPPED / META_FILE).read_text(encoding="utf-8"))


def _bundle_copy(tmp_path: Path, meta: dict | None = None, *, card: bool = True) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(SHIPPED, out)
    if meta is not None:
        (out / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    if not card:
        (out / "card.json").unlink()
    return out


def test_the_shipped_model_json_is_exactly_what_the_type_writes():
    raw = _raw()
    cfg = BundleConfig.load(SHIPPED / META_FILE)
    assert json.dumps(cfg.to_dict(), sort_keys=True) == json.dumps(raw, sort_keys=True)  # ints stay ints, NaN stays
    assert (SHIPPED / META_FILE).read_text(encoding="utf-8") == json.dumps(cfg.to_dict(), indent=2) + "\n"
    assert not set(raw) & set(LEGACY_MEASURED_KEYS)  # measured results are in card.json
    assert cfg.backend == "bundled" and cfg.ood_settings.k == 5 and cfg.preprocess_config.hw == (256, 256)
    assert cfg.provenance.training["config"]["seed"] == 1129  # typed, kept, not run-time


def _set(meta: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = meta
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return meta


@pytest.mark.parametrize(
    "where, value, key, words",
    [
        ("threshold", KeyError, "threshold", "missing"),
        ("calibration.a", KeyError, "calibration.a", "missing"),
        ("threshold", "0.127", "threshold", "valid number"),
        ("calibration.a", -0.03, "calibration.a", "must be positive"),
        ("calibration.a", 0.0, "calibration.a", "must be positive"),
        ("review_band", [0.3, 0.1], "review_band", "low <= high"),
        ("view_probe.mean.3", "0.1", "view_probe.mean[3]", "valid number"),
        ("finding_probes.lung_opacity.coef", [1.0], "finding_probes.lung_opacity", "same non-zero length"),
        ("ood.k", 5.0, "ood.k", "valid integer"),
        ("treshold", 0.2, "treshold", "not a key"),
        ("training", "cxrtriage train", "training", "an object"),
        ("sha256", "abc", "sha256", "pattern"),
    ],
)
def test_a_bad_model_json_names_the_file_and_the_key(tmp_path, where, value, key, words):
    path = tmp_path / META_FILE
    path.write_text(json.dumps(_set(_raw(), where, value)), encoding="utf-8")
    with pytest.raises(ModelError) as exc:
        BundleConfig.load(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: key '{key}': ") and words in msg, msg


def test_the_backend_refuses_a_bad_bundle_with_that_sentence(tmp_path):
    from cxrtriage.backends.bundled import BundledOnnxBackend

    bundle = _bundle_copy(tmp_path, _set(_raw(), "calibration.a", -0.03))
    with pytest.raises(ModelError, match=r"model\.json: key 'calibration\.a': must be positive"):
        BundledOnnxBackend(bundle)


def test_a_file_that_is_not_a_json_object_is_refused(tmp_path):
    path = tmp_path / META_FILE
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="not valid JSON"):
        BundleConfig.load(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ModelError, match="JSON object"):
        BundleConfig.load(path)


def test_a_writer_cannot_write_what_the_reader_refuses(tmp_path):
    path = tmp_path / META_FILE
    with pytest.raises(ModelError, match="key 'calibration.a': must be positive"):
        write_bundle_config(_set(_raw(), "calibration.a", -1.0), path)
    with pytest.raises(ModelError, match="key 'test_metrics': not a key"):  # measured results belong in card.json
        write_bundle_config({**_raw(), "test_metrics": {"summary": {}}}, path)
    assert not path.exists()
    written = write_bundle_config(_raw(), path)
    assert BundleConfig.load(path) == written


def test_a_bundle_from_before_card_json_still_serves(tmp_path):
    """A model.json that still carries its measured results loads; the engine ignores them."""
    from cxrtriage.backends.bundled import BundledOnnxBackend

    card = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))
    legacy = {**_raw(), **{k: v for k, v in card.items() if k in LEGACY_MEASURED_KEYS}}
    assert set(LEGACY_MEASURED_KEYS) & set(card) <= set(legacy) and "test_metrics" in legacy
    old = BundledOnnxBackend(_bundle_copy(tmp_path, legacy, card=False))
    assert old.config == BundledOnnxBackend(SHIPPED).config


def test_both_backends_read_ood_defaults_from_one_place(tmp_path):
    from cxrtriage.backends.bundle_blocks import OodSettings
    from cxrtriage.backends.bundled import BundledOnnxBackend

    meta = _raw()
    del meta["ood"]
    backend = BundledOnnxBackend(_bundle_copy(tmp_path, meta))
    assert (backend.knn_k, backend.min_knn_similarity, backend.max_layout_residual) == (OodSettings().k, None, None)


def test_the_engine_never_opens_card_json(tmp_path, nih_pixels, monkeypatch):
    from cxrtriage.pipeline import Triage

    reference = Triage(model_dir=SHIPPED, crops_dir=tmp_path / "a").predict(nih_pixels, save_crops=False)
    without = Triage(model_dir=_bundle_copy(tmp_path, card=False), crops_dir=tmp_path / "b")
    pred = without.predict(nih_pixels, save_crops=False)
    assert (pred.score, pred.label, pred.needs_review, pred.findings) == (
        reference.score,
        reference.label,
        reference.needs_review,
        reference.findings,
    )

    opened: list[str] = []
    real_open = io.open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", recording_open)  # pathlib
    monkeypatch.setattr(builtins, "open", recording_open)  # numpy, json, everything else
    engine = Triage(model_dir=SHIPPED, crops_dir=tmp_path / "c")
    engine.predict(nih_pixels, save_crops=False)
    assert any(p.endswith(META_FILE) for p in opened)  # the recorder sees the files the engine reads
    assert not [p for p in opened if Path(p).name == "card.json"]


def test_a_bad_probe_json_names_the_file_and_the_key(tmp_path):
    from cxrtriage.backends.medsiglip import LinearProbe

    path = LinearProbe(weight=[0.1, 0.2], bias=0.0, meta={"ood": {"k": 3}}).save(tmp_path / "probe.json")
    assert LinearProbe.load(path).meta == {"ood": {"k": 3}}
    d = json.loads(path.read_text())
    d["meta"]["ood"]["k"] = "3"
    path.write_text(json.dumps(d))
    with pytest.raises(ModelError, match=rf"{path}: key 'meta\.ood\.k': Input should be a valid integer"):
        LinearProbe.load(path)
    d["meta"]["ood"]["k"], d["platt_a"] = 3, -1.0
    path.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="key 'platt_a': must be positive"):
        LinearProbe.load(path)
