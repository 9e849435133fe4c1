"""The real training -> export -> int8 -> predict loop, run in seconds on a handful of real images."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra")

#: a network small enough to train on a handful of 64 px images in seconds
TINY_ARCH = {
    "name": "tiny",
    "in_channels": 1,
    "stem": (8, 8),
    "widths": (8, 8, 8, 16),
    "strides": (1, 2, 2, 1),
    "dilations": (1, 1, 1, 2),
    "dropout": 0.0,
}


def _tiny_run(data_dir, tmp_path, **overrides):
    """Train ``TINY_ARCH`` for 2 epochs on 16 images per dataset and part (64 px); ``overrides`` are the
    :class:`TrainConfig` fields a test is about. Returns the config, the checkpoint and the training log."""
    from cxrtriage.train.trainer import TrainConfig, train

    # NIH and pediatric only, epoch by NIH AUC (the sources a 2-epoch tiny model learns something from); a test
    # about the other sources or the epoch rule passes them
    values = dict(
        epochs=2,
        batch_size=8,
        input_size=64,
        kermany_per_epoch=8,
        limit=16,
        arch=dict(TINY_ARCH),
        jsrt_per_epoch=0,
        shenzhen_per_epoch=0,
        select_on="nih",
    )
    cfg = TrainConfig(data_dir=str(data_dir), out_dir=str(tmp_path / "run"), **(values | overrides))
    ckpt = train(cfg)
    return cfg, ckpt, json.loads((tmp_path / "run" / "train_log.json").read_text())


def test_augmentation_never_flips_left_right():
    from cxrtriage.train.augment import augment

    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 20:44, 4:16] = 1.0  # a bright block on the image left
    out = augment(x, torch.Generator().manual_seed(0))
    left, right = out[..., :, :32].mean(), out[..., :, 32:].mean()
    assert left > 3 * right


def test_train_export_predict_roundtrip(data_dir, tmp_path, monkeypatch):
    from cxrtriage import config
    from cxrtriage.pipeline import Triage
    from cxrtriage.train.export import export_bundle

    # the acquisition augmentation, with the activation-map masks moved by it
    cfg, ckpt, log = _tiny_run(data_dir, tmp_path, augment="gen3")
    assert len(log["history"]) == 2 and log["config"]["seed"] == cfg.seed
    assert log["config"]["augment"] == "gen3" and log["config"]["strong_augment"] is True

    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "card.json").write_text("{}")  # a card of an earlier model there: reset, not kept
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path.resolve())  # the bundle is inside "the checkout"
    bundle = export_bundle(ckpt, tmp_path / "bundle", data_dir=data_dir, trace=tmp_path / "trace.txt", limit=16)
    meta = json.loads((bundle / "model.json").read_text())
    # both files written through their types, and they load back: model.json as the engine reads it, card.json empty
    from cxrtriage.backends.bundle_config import BundleConfig
    from cxrtriage.evaluation.card_data import CardData

    assert BundleConfig.load(bundle / "model.json").to_dict() == meta
    card = CardData.load(bundle / "card.json")
    assert card.model.sha256 == meta["sha256"] and card.measured() == {}
    assert "Not yet measured" in (bundle / "MODEL_CARD.md").read_text()
    trace = (tmp_path / "trace.txt").read_text()
    assert "quantize_static" in trace and "parity torch vs ONNX fp32" in trace
    # the committed trace names files as the checkout does, never a machine's folders: tmp_path is the checkout here
    assert "metadata written to bundle/model.json;" in trace and "model card written to bundle/MODEL_CARD.md" in trace
    assert str(tmp_path) not in trace
    assert meta["preprocess"]["input_size"] == 64
    assert "ensemble" not in meta and "members" not in meta["training"]  # one checkpoint: exported as before
    assert meta["review_band"][0] <= meta["threshold"] <= meta["review_band"][1]

    engine = Triage(model_dir=bundle, crops_dir=tmp_path / "crops")
    pred = engine.predict(data_dir / "nih" / "images" / "00000150_002.png")
    assert pred.label in ("Urgent", "Non-Urgent") and pred.model.sha256 == meta["sha256"]
    # int8 model and its fp32 source agree on the ranking of a few images
    fp32 = tmp_path / "run" / "model.fp32.onnx"
    assert fp32.is_file()
    assert np.isfinite(pred.score)


def test_a_seed_ensemble_ships_as_one_graph_whose_logit_is_the_mean_of_its_members(data_dir, tmp_path):
    """Two tiny members of different seeds exported as one bundle: the graph's logit is the mean of the members'
    torch logits, the engine's CAM from model.json's head gives that logit back, and the engine serves it."""
    import onnxruntime as ort

    from cxrtriage.backends.cam import class_activation_map
    from cxrtriage.data import load_split_records
    from cxrtriage.pipeline import Triage
    from cxrtriage.train.export import export_bundle, load_checkpoint, normalise_cache
    from cxrtriage.train.trainer import limit_per_dataset, load_cache

    runs = [_tiny_run(data_dir, tmp_path / f"m{seed}", seed=seed, box_weight=0.0, lung_weight=0.0) for seed in (1, 2)]
    ckpts = [ckpt for _, ckpt, _ in runs]
    bundle = export_bundle(ckpts, tmp_path / "bundle", data_dir=data_dir, limit=16)
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["ensemble"]["members"] == 2 and [m["seed"] for m in meta["ensemble"]["checkpoints"]] == [1, 2]
    assert len(meta["training"]["members"]) == 2 and meta["training"]["config"]["seed"] == 1

    pre = meta["preprocess"]
    recs = limit_per_dataset(load_split_records(data_dir)["val"], 3)
    x = normalise_cache(load_cache(recs, pre["input_size"], "test"), pre["mean"], pre["std"], pre.get("window"))
    members = [load_checkpoint(c)[0] for c in ckpts]
    with torch.no_grad():
        t_logits = np.stack([m(torch.from_numpy(x))[0][:, 0].numpy() for m in members])
    assert np.abs(t_logits[0] - t_logits[1]).max() > 1e-3  # two different members: the mean is neither of them
    fp32 = tmp_path / "m1" / "run" / "model.fp32.onnx"  # kept next to the first member's checkpoint
    logit, fmap = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"image": x})[:2]
    assert np.abs(logit[:, 0] - t_logits.mean(axis=0)).max() < 1e-3
    weight, bias = np.array(meta["head"]["weight"]), meta["head"]["bias"]
    assert fmap.shape[1] == len(weight) == 2 * TINY_ARCH["widths"][-1]
    cams = np.stack([class_activation_map(f, weight) for f in fmap])
    assert np.abs(cams.mean(axis=(1, 2)) + bias - logit[:, 0]).max() < 1e-4

    if (data_dir / "shenzhen" / "labels.csv").is_file():  # the third adult site's validation part calibrates too
        assert "shenzhen" in meta["validation"]["by_source"] and meta["training_data"]["shenzhen_split_sha256"]
    pred = Triage(model_dir=bundle, crops_dir=tmp_path / "crops").predict(
        data_dir / "nih" / "images" / "00000150_002.png"
    )
    assert pred.label in ("Urgent", "Non-Urgent") and pred.model.sha256 == meta["sha256"] and np.isfinite(pred.score)


def test_leave_nih_out_trains_on_children_and_chooses_the_epoch_on_them(data_dir, tmp_path):
    """Leave-one-source-out without NIH: no adult film is trained on, so NIH validation (which would then be a test
    set) must not pick the epoch."""
    _, ckpt, log = _tiny_run(data_dir, tmp_path, kermany_per_epoch=16, nih_train=False, box_weight=0.0, lung_weight=0.0)
    assert log["counts"]["tr_nih"] == 0 and log["counts"]["tr_ker"] == 16 and log["counts"]["va_nih"] > 0
    assert log["best_epoch"]["chosen_on"] == "val_auc_pediatric"
    best = log["history"][log["best_epoch"]["epoch"] - 1]
    assert log["best_epoch"]["auc"] == best["val_auc_pediatric"]
    assert torch.load(ckpt, weights_only=False)["preprocess"]["std"] > 0


def test_shenzhen_trains_as_a_third_site_and_the_worst_site_picks_the_epoch(data_dir, tmp_path):
    """Generation 3's recipe: Shenzhen films sampled into each epoch, every validation source scored with its
    specificity at sensitivity 0.95, and ``select_on="worst"`` picking the epoch whose worst source is best."""
    if not (data_dir / "shenzhen" / "labels.csv").is_file():
        pytest.skip("no Shenzhen data here")
    _, _, log = _tiny_run(data_dir, tmp_path, shenzhen_per_epoch=8, select_on="worst", box_weight=0.0, lung_weight=0.0)
    assert log["counts"]["tr_shz"] == 16 and log["counts"]["va_shz"] == 16
    assert log["shenzhen_split_sha256"] and log["best_epoch"]["chosen_on"] == "min_val_spec95"
    for row in log["history"]:
        sources = [row[k] for k in ("val_spec95_nih", "val_spec95_pediatric", "val_spec95_shenzhen") if k in row]
        assert "val_spec95_shenzhen" in row and "val_auc_shenzhen" in row
        assert all(0.0 <= v <= 1.0 for v in sources)
    best = log["history"][log["best_epoch"]["epoch"] - 1]
    assert log["best_epoch"]["auc"] == min(v for k, v in best.items() if k.startswith("val_spec95_"))


def test_the_epoch_rule_is_one_of_the_named_rules():
    from cxrtriage.train.epoch_selection import epoch_figure as _selection

    every = {"nih", "pediatric", "shenzhen"}
    assert _selection("nih", 0.9, 0.8, {"nih": 0.5, "shenzhen": 0.1}, every) == (0.9, "val_auc_nih")
    assert _selection("worst", 0.9, 0.8, {"nih": 0.5, "shenzhen": 0.1}, every) == (0.1, "min_val_spec95")
    assert _selection("nih", 0.9, 0.8, {}, {"pediatric"}) == (0.8, "val_auc_pediatric")
    band = {"nih": 0.6, "shenzhen": 0.3, "pediatric": 0.9}
    assert _selection("worst_band", 0.9, 0.8, {"nih": 0.5, "shenzhen": 0.1}, every, band) == (0.3, "min_val_spec_band")
    with pytest.raises(ValueError, match="select_on"):
        _selection("mean", 0.9, 0.8, {"nih": 0.5}, every)


def test_a_source_left_out_of_training_never_picks_the_epoch():
    """Leave-one-source-out: a source validated but not trained on is a test; its figure must not choose."""
    from cxrtriage.train.epoch_selection import epoch_figure as _selection

    spec95 = {"nih": 0.5, "pediatric": 0.7, "shenzhen": 0.1}
    assert _selection("worst", 0.9, 0.8, spec95, {"nih", "pediatric"}) == (0.5, "min_val_spec95")
    assert _selection("worst", 0.9, 0.8, spec95, {"pediatric", "shenzhen"}) == (0.1, "min_val_spec95")
    assert _selection("worst", 0.9, 0.8, {"nih": 0.5}, {"pediatric"}) == (0.8, "val_auc_pediatric")


def test_training_reads_a_film_on_a_canvas_as_the_pipeline_does(tmp_path):
    """Training, calibration and export read images through ``load_cache``: a film placed on a black canvas is
    cached as its exposed field (the pipeline's first stage), not as a small film in a corner."""
    from PIL import Image

    from cxrtriage.data import Record
    from cxrtriage.imaging import acquisition
    from cxrtriage.train.trainer import load_cache

    rng = np.random.default_rng(0)
    coarse = rng.uniform(0.15, 0.9, (12, 10)).astype(np.float32)
    film = np.asarray(Image.fromarray(coarse, mode="F").resize((260, 300), Image.Resampling.BICUBIC))
    film = np.clip(film, 0.0, 1.0)
    records = []
    for name, px in (("film", film), ("canvas", acquisition.on_canvas(film))):
        Image.fromarray(np.rint(px * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
        records.append(Record("nih", name, tmp_path / f"{name}.png", patient=name, urgent=0))
    alone, on_canvas = load_cache(records, 64, "test").astype(np.float32)
    assert np.abs(alone - on_canvas).mean() < 6.0  # the same film, up to the field's few-pixel edge


def test_the_band_figure_averages_specificity_over_high_sensitivities():
    """On 20 urgent films, specificity at sensitivity 0.95 falls from 1 to 0 when a second urgent film scores below
    every normal one; the 0.80-1.00 band mean falls by a quarter per film, so one epoch's pair of films cannot
    decide alone which weights ship."""
    from cxrtriage.evaluation.metrics import mean_specificity_at_high_sensitivity, specificity_at_sensitivity

    y = np.r_[np.zeros(20), np.ones(20)]
    scores = np.r_[np.linspace(0, 1, 20), np.linspace(2, 3, 20)]
    band, point = [], []
    for n_low in (0, 1, 2):
        s = scores.copy()
        s[20 : 20 + n_low] = -1.0  # urgent films scored below every normal one
        band.append(mean_specificity_at_high_sensitivity(y, s))
        point.append(specificity_at_sensitivity(y, s, 0.95))
    assert point == [1.0, 1.0, 0.0]
    assert band == pytest.approx([1.0, 0.75, 0.5], abs=0.01)


def test_balanced_sampling_draws_each_source_half_urgent_half_not():
    from cxrtriage.train.epoch_sampling import draw_epoch

    rng = np.random.default_rng(0)
    pediatric = np.r_[np.ones(300), np.zeros(100)]  # three quarters urgent, as the pediatric set
    idx = draw_epoch(rng, pediatric, 120, "source_label")
    assert len(idx) == 120 and pediatric[idx].sum() == 60
    nih = np.r_[np.ones(10), np.zeros(50)]
    idx = draw_epoch(rng, nih, None, "source_label")  # all of it, as many as it has, the small cell repeated
    assert len(idx) == 60 and nih[idx].sum() == 30 and len(set(idx[nih[idx] == 1])) == 10
    assert len(draw_epoch(rng, np.zeros(65), 60, "source_label")) == 60  # JSRT normals: one label only
    assert list(draw_epoch(rng, nih, None, "source")) == list(range(60))  # generation 3: every NIH film, in order
    with pytest.raises(ValueError, match="balance"):
        draw_epoch(rng, nih, 10, "uniform")


def test_kept_epochs_let_another_rule_choose_afterwards(data_dir, tmp_path):
    """``keep_epochs`` saves each epoch's weights with its validation row, so a recipe can be re-judged by another
    epoch rule without retraining; the band figure is logged for every source with both labels."""
    _, ckpt, log = _tiny_run(data_dir, tmp_path, keep_epochs=True, balance="source_label", nih_per_epoch=8)
    kept = sorted((tmp_path / "run" / "epochs").glob("*.pt"))
    assert [p.name for p in kept] == ["01.pt", "02.pt"]
    for path, row in zip(kept, log["history"], strict=True):
        saved = torch.load(path, weights_only=False)
        assert saved["best"] == row and saved["preprocess"] == torch.load(ckpt, weights_only=False)["preprocess"]
        assert 0.0 <= row["val_spec_band_nih"] <= 1.0
    assert log["config"]["balance"] == "source_label"
