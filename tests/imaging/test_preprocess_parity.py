"""Issue 10: the inputs the bundled model was trained, calibrated and indexed on are the inputs the server sends.

Training caches each resized image as 8 bits (train/trainer.load_cache) and calibration, the threshold and the
similar-case index were fitted on those caches (train/export); serving used the unrounded float resize, so the
fitted numbers described inputs the server never sent. Now both go through imaging/preprocess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrtriage import config
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.preprocess import to_model_input

META = json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text(encoding="utf-8"))


def _images(data_dir: Path) -> list[Path]:
    from cxrtriage.data import load_split_records

    test = load_split_records(data_dir)["test"]
    nih = [r.path for r in test if r.dataset == "nih"][:3]
    ped = [r.path for r in test if r.dataset == "kermany"][:2]
    return nih + ped + [data_dir / "dicom" / "CR-MONO1-10-chest.dcm"]


def test_bundled_metadata_states_the_8_bit_step_it_was_trained_with() -> None:
    assert META["preprocess"]["quantize"] == "uint8"


def test_metadata_is_parsed_once_into_frozen_values() -> None:
    import dataclasses

    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.imaging.preprocess import PreprocessConfig

    cfg = BundledOnnxBackend().preprocess_cfg
    assert isinstance(cfg, PreprocessConfig) and cfg == PreprocessConfig.from_mapping(META["preprocess"])
    assert cfg.hw == (256, 256) and cfg.quantize == "uint8"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.quantize = None  # type: ignore[misc]
    for bad in (
        {**META["preprocess"], "resize": "letterbox"},
        {**META["preprocess"], "quantize": "uint4"},
        {**META["preprocess"], "std": 0.0},
    ):
        with pytest.raises(ValueError):
            PreprocessConfig.from_mapping(bad)


def test_train_time_and_serve_time_inputs_are_the_same_array(data_dir: Path) -> None:
    pytest.importorskip("torch")
    from cxrtriage.train.export import normalise_cache
    from cxrtriage.train.trainer import cache_config, load_cache

    pre = META["preprocess"]
    size = int(pre["input_size"])
    paths = [p for p in _images(data_dir) if p.is_file()]
    assert len(paths) >= 4

    class Rec:  # what load_cache reads of a split record
        def __init__(self, path: Path) -> None:
            self.path = path

    cached = load_cache([Rec(p) for p in paths], size, "parity")
    train_side = normalise_cache(
        cached, float(pre["mean"]), float(pre["std"])
    )  # calibration / threshold / index inputs
    for i, path in enumerate(paths):
        serve_side = to_model_input(load_image(path).pixels, pre)
        np.testing.assert_array_equal(serve_side[0], train_side[i], err_msg=path.name)
    assert cache_config(size).items() <= pre.items()  # the checkpoint's block is the bundled model's


def test_the_served_model_gets_that_input(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BundledOnnxBackend feeds ONNX exactly to_model_input's array: on the numpy path (the pipeline's squashed
    shortcut included) and inside classify_full.onnx (its ``model_input`` output), which the engine runs."""
    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.imaging.preprocess import resize_square

    graph = BundledOnnxBackend().graph
    assert graph is not None
    backend = BundledOnnxBackend(graphs=False)
    seen: list[np.ndarray] = []
    real = backend.run_outputs
    monkeypatch.setattr(backend, "run_outputs", lambda x: seen.append(x.copy()) or real(x))
    pixels = load_image(_images(data_dir)[0]).pixels
    backend.analyze(pixels)
    size = int(META["preprocess"]["input_size"])
    backend.analyze(resize_square(np.clip(pixels, 0, 1), size))  # what the pipeline passes when accepts_squashed
    expected = to_model_input(pixels, META["preprocess"])
    np.testing.assert_array_equal(seen[0], expected)
    np.testing.assert_array_equal(seen[1], expected)
    crop = np.ascontiguousarray(pixels, dtype=np.float32)[None, None]
    np.testing.assert_array_equal(graph.run(["model_input"], {"crop": crop})[0], expected)


def test_percentile_window_is_the_same_in_training_and_serving() -> None:
    """The segmentation network's window: training (cache -> apply_window) and serving (to_model_input) give the
    same model input, and the window undoes an exposure change of the same film."""
    torch = pytest.importorskip("torch")
    from cxrtriage.imaging.preprocess import from_cache, to_cache, to_model_input
    from cxrtriage.train.segmentation import preprocess_config
    from cxrtriage.train.trainer import apply_window

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:260]
    film = (0.3 + 0.4 * np.sin(xx / 40.0) ** 2 + 0.1 * yy / 300 + 0.02 * rng.standard_normal((300, 260))).clip(0, 1)
    pre = preprocess_config(192)
    served = to_model_input(film.astype(np.float32), pre)[0, 0]
    cached = torch.from_numpy(from_cache(to_cache(film, pre))[None, None])
    trained = ((apply_window(cached, pre["window"]) - pre["mean"]) / pre["std"])[0, 0].numpy()
    np.testing.assert_allclose(served, trained, atol=1e-6)
    darker = to_model_input((0.5 * film + 0.1).astype(np.float32), pre)[0, 0]
    assert np.abs(darker - served).mean() < 0.05 * np.abs(served).mean() + 0.05
