"""The page's config.json names the graphs it runs (not the raw models) with their sha256 and size, so a page that
loads a stale or swapped graph can be told from the one that was built, and keeps the bundled model's own sha256 for
the result's ``model`` block (the API's field)."""

from __future__ import annotations

import json

from cxrtriage import config
from cxrtriage.browser.build import GRAPH_FILES, browser_config
from cxrtriage.files import sha256_file


def test_config_names_the_bundled_graphs_with_their_sha256_and_size() -> None:
    """The page's build copies the bundled graphs (the engine's) and names them; no onnx needed."""
    cfg = browser_config(config.BUNDLED_WEIGHTS_DIR, config.BUNDLED_WEIGHTS_DIR)
    meta = json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text(encoding="utf-8"))
    for role, name in GRAPH_FILES.items():
        graph = config.BUNDLED_WEIGHTS_DIR / name
        assert cfg[role]["file"] == f"models/{name}"
        assert cfg[role]["graph_sha256"] == sha256_file(graph)
        assert cfg[role]["size_bytes"] == graph.stat().st_size
    assert cfg["classifier"]["sha256"] == meta["sha256"]
    # the calibration and the CAM head are inside the graph: the page has no copy of them to drift
    assert "calibration" not in cfg["classifier"] and "head" not in cfg["classifier"]


def test_the_page_gets_the_engines_similarity_index(tmp_path) -> None:
    """The similarity check and the similar cases read the index the engine reads, in the numbers it computes with."""
    import numpy as np

    from cxrtriage.backends.embedding_index import EmbeddingIndex
    from cxrtriage.browser.build import write_index

    block = write_index(config.BUNDLED_WEIGHTS_DIR, tmp_path)
    index = EmbeddingIndex.load(config.BUNDLED_WEIGHTS_DIR / "index.npz")
    rows = np.frombuffer((tmp_path / "index.f32").read_bytes(), dtype="<f4").reshape(block["rows"], block["dims"])
    assert np.array_equal(rows, index.embeddings) and block["sha256"] == sha256_file(tmp_path / "index.f32")
    assert block["keys"] == [str(k) for k in index.keys] and block["urgent"] == [bool(v) for v in index.labels]
    assert np.array_equal(np.asarray(block["centre"], dtype=np.float32), index.centre)
    ood = json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text(encoding="utf-8"))["ood"]
    assert (block["k"], block["min_knn_similarity"]) == (ood["k"], ood["min_knn_similarity"])
    assert block["populations"]["nih"] == "adult (NIH)" and block["neighbours"] == 3
