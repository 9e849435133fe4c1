"""The engine runs the bundled graphs (classify_full.onnx, segment_full.onnx) that the browser page runs, only while
graphs.json says they were built from the bundled model files as they are, and gets the numpy path's answers."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrtriage import config
from cxrtriage.anatomy.segmenter import Segmenter
from cxrtriage.backends.bundled import BundledOnnxBackend
from cxrtriage.graph_manifest import CLASSIFY_FULL_FILE, MANIFEST_FILE, SEGMENT_FULL_FILE, stale_reason
from cxrtriage.imaging.load import load_image

WEIGHTS = Path(config.BUNDLED_WEIGHTS_DIR)
SAMPLE = WEIGHTS.parent / "samples" / "nih" / "00001323_001.png"
SOURCES = {CLASSIFY_FULL_FILE: ("model.onnx", "model.json"), SEGMENT_FULL_FILE: ("segment.onnx", "segment.json")}


@pytest.mark.parametrize("graph", sorted(SOURCES))
def test_the_bundled_graphs_are_built_from_the_bundled_models(graph: str) -> None:
    assert stale_reason(WEIGHTS / graph, [WEIGHTS / f for f in SOURCES[graph]]) is None


def test_the_one_command_rebuilds_the_committed_graphs_byte_for_byte(tmp_path: Path) -> None:
    """``python -m cxrtriage.train.browser_graphs --out src/cxrtriage/weights`` is deterministic: the committed
    graphs are what it builds from the committed model files (a stale commit fails here, not in a browser)."""
    pytest.importorskip("onnx")
    from cxrtriage.train.browser_graphs import write_graphs

    write_graphs(tmp_path)
    built = json.loads((tmp_path / MANIFEST_FILE).read_text(encoding="utf-8"))["graphs"]
    assert built == json.loads((WEIGHTS / MANIFEST_FILE).read_text(encoding="utf-8"))["graphs"]


def test_engine_runs_the_graphs_and_gets_the_numpy_paths_answers() -> None:
    pixels = load_image(SAMPLE).pixels
    graph, numpy_path = BundledOnnxBackend(threads=1), BundledOnnxBackend(threads=1, graphs=False)
    assert graph.graph is not None and numpy_path.graph is None
    g, n = graph.analyze(pixels), numpy_path.analyze(pixels)
    assert g.logit == n.logit and abs(g.score - n.score) < 1e-12
    assert g.cam is not None and n.cam is not None and np.array_equal(g.cam, n.cam)  # float64 sum in both
    assert g.embedding is not None and n.embedding is not None and np.allclose(g.embedding, n.embedding, atol=1e-6)
    assert g.resized is not None and g.resized.shape == graph.preprocess_cfg.hw and n.resized is None
    seg, seg_numpy = Segmenter(threads=1), Segmenter(threads=1, graphs=False)
    assert seg.graph and not seg_numpy.graph
    s, t = seg.segment(pixels), seg_numpy.segment(pixels)
    assert np.allclose(s.probs, t.probs, atol=1e-6) and (s.symmetry, s.centre_brightness) == (
        t.symmetry,
        t.centre_brightness,
    )
    for structure in s.structures:
        assert np.array_equal(s.mask(structure), t.mask(structure))


def _copy_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    shutil.copytree(WEIGHTS, folder, ignore=shutil.ignore_patterns("*.md", "card.json"))
    return folder


def test_a_graph_built_from_another_model_is_not_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A model.json changed after the graphs were built (say, a new calibration): the graph would give the old
    scores, so the engine logs why and takes the numpy path."""
    folder = _copy_bundle(tmp_path)
    meta = folder / "model.json"
    meta.write_text(meta.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="cxrtriage.graph_manifest"):
        backend = BundledOnnxBackend(folder)
    assert backend.graph is None and not backend.returns_resized(backend.preprocess_cfg.hw[0])
    assert "built from another model.json" in caplog.text
    assert Segmenter(folder).graph  # its own files did not change


def test_a_graph_that_is_not_what_the_manifest_names_is_not_run(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    shutil.copy2(folder / "segment.onnx", folder / SEGMENT_FULL_FILE)  # the wrong file under the graph's name
    reason = stale_reason(folder / SEGMENT_FULL_FILE, [folder / "segment.onnx", folder / "segment.json"])
    assert reason is not None and "sha256" in reason
    assert not Segmenter(folder).graph
    (folder / MANIFEST_FILE).unlink()
    assert BundledOnnxBackend(folder).graph is None


def test_a_bundle_without_graphs_runs_the_numpy_path(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    for name in (CLASSIFY_FULL_FILE, SEGMENT_FULL_FILE, MANIFEST_FILE):
        (folder / name).unlink()
    backend = BundledOnnxBackend(folder)
    size = backend.preprocess_cfg.hw[0]
    assert backend.graph is None and backend.accepts_squashed(size) and not backend.returns_resized(size)
    assert not Segmenter(folder).graph
