"""The wrapped graphs (classify_full.onnx, segment_full.onnx) give what the engine's Python path gives: the same model
input, score, CAM, embedding and segmentation probabilities, on synthetic arrays and a bundled sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from cxrtriage import config  # noqa: E402
from cxrtriage.anatomy.segmenter import Segmenter  # noqa: E402
from cxrtriage.backends.bundled import BundledOnnxBackend  # noqa: E402
from cxrtriage.imaging.load import load_image  # noqa: E402
from cxrtriage.imaging.preprocess import PreprocessConfig, clip_unit, resize_squash, to_model_input  # noqa: E402
from cxrtriage.train.browser_graphs import write_graphs  # noqa: E402
from cxrtriage.train.graph_ops import RESIZE_OP  # noqa: E402

SAMPLE = Path(config.BUNDLED_WEIGHTS_DIR).parent / "samples" / "nih" / "00001323_001.png"


def _run(session: ort.InferenceSession, crop: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"crop": np.ascontiguousarray(crop, np.float32)[None, None]})))


def _sessions(folder: Path, **kwargs: object) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    cls, seg = write_graphs(folder, **kwargs)  # type: ignore[arg-type]
    return tuple(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (cls, seg))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    return _sessions(tmp_path_factory.mktemp("graphs"))


@pytest.fixture(scope="module")
def engine() -> tuple[BundledOnnxBackend, Segmenter]:
    # the numpy path: the engine would otherwise run the bundled graphs themselves
    return BundledOnnxBackend(threads=1, graphs=False), Segmenter(threads=1, graphs=False)


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(27)
    smooth = np.add.outer(np.linspace(0, 1, 700), np.linspace(0, 0.5, 1024)).astype(np.float32) / 1.5
    return {
        "noise 300x517 (shrink, other aspect)": rng.random((300, 517), dtype=np.float32),
        "noise 224x224 (enlarge for the classifier)": rng.random((224, 224), dtype=np.float32),
        "8-bit 512x512 (2x shrink: rounding ties)": (rng.integers(0, 256, (512, 512)) / 255.0).astype(np.float32),
        "gradient 700x1024 out of [0, 1]": smooth * 1.4 - 0.1,
        "flat 256x256 (no window)": np.full((256, 256), 0.4, np.float32),
        "sample": load_image(SAMPLE).pixels,
    }


@pytest.mark.parametrize("name", list(_images()))
def test_classify_graph_equals_the_engine(name: str, graphs, engine) -> None:  # type: ignore[no-untyped-def]
    crop = _images()[name]
    backend, _ = engine
    expected = backend.analyze(crop)
    got = _run(graphs[0], crop)
    np.testing.assert_array_equal(got["resized"][0, 0], resize_squash(clip_unit(crop), *backend.preprocess_cfg.hw))
    np.testing.assert_allclose(got["model_input"], to_model_input(crop, backend.preprocess_cfg), rtol=0, atol=1e-6)
    assert abs(float(got["score"][0]) - expected.score) < 1e-6
    assert abs(float(got["logit"][0]) - expected.logit) < 1e-5
    np.testing.assert_array_equal(got["cam"][0], expected.cam)  # the channel sum in float64 on both sides
    np.testing.assert_allclose(got["embedding"][0], expected.embedding, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(_images()))
def test_segment_graph_equals_the_engine(name: str, graphs, engine) -> None:  # type: ignore[no-untyped-def]
    crop = _images()[name]
    _, segmenter = engine
    got = _run(graphs[1], crop)
    # Pillow's resample reproduced to the bit (its coefficients, its order of sums): a rounding tie of the 8-bit
    # quantization then falls the same way
    np.testing.assert_array_equal(got["resized"][0, 0], resize_squash(clip_unit(crop), *segmenter.preprocess_cfg.hw))
    np.testing.assert_allclose(got["model_input"], to_model_input(crop, segmenter.preprocess_cfg), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["probs"][0], segmenter.segment(crop).probs, rtol=0, atol=1e-5)


def test_graphs_follow_the_metadata_not_constants(tmp_path: Path) -> None:
    """A bundle whose model.json / segment.json say another mean and std gets a graph with those."""
    weights = tmp_path / "weights"
    shutil.copytree(config.BUNDLED_WEIGHTS_DIR, weights)
    cfgs = {}
    for name in ("model.json", "segment.json"):
        meta = json.loads((weights / name).read_text(encoding="utf-8"))
        meta["preprocess"].update(mean=0.25, std=0.5)
        (weights / name).write_text(json.dumps(meta), encoding="utf-8")
        cfgs[name] = PreprocessConfig.from_mapping(meta["preprocess"])
    cls, seg = _sessions(tmp_path / "out", weights_dir=weights)
    crop = _images()["sample"]
    np.testing.assert_allclose(_run(cls, crop)["model_input"], to_model_input(crop, cfgs["model.json"]), atol=1e-6)
    np.testing.assert_allclose(_run(seg, crop)["model_input"], to_model_input(crop, cfgs["segment.json"]), atol=1e-6)


def test_onnx_resize_is_not_pillow_where_it_rounds(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    """Why the graphs do not use ONNX Resize: on a 2x shrink of an 8-bit film its float sums decide the 8-bit
    rounding ties otherwise than Pillow, so the model input differs by one grey level in hundreds of pixels."""
    backend, _ = engine
    cls, _ = _sessions(tmp_path, resize=RESIZE_OP)
    crop = load_image(SAMPLE).pixels
    diff = np.abs(_run(cls, crop)["model_input"] - to_model_input(crop, backend.preprocess_cfg))
    assert (diff > 1e-6).sum() > 10
