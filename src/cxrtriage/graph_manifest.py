"""Which bundled ONNX graph was built from which model file and metadata (``graphs.json`` beside the weights).

``classify_full.onnx`` and ``segment_full.onnx`` (:mod:`cxrtriage.train.browser_graphs`) carry the model *and* the
numbers of its metadata (preprocessing, calibration, CAM head) inside them. A graph built before ``model.onnx`` or
``model.json`` changed would give the old model's answers, so the manifest records, per graph, its own sha256 and
size and the sha256 of every file it was built from; the engine (``BundledOnnxBackend``, ``Segmenter``) runs a graph
only when all of them match (:func:`current_graph`), and ``cxrtriage browser-build`` refuses to copy a stale one.
Base module: the run-time stages read it without ``onnx``; the export-time builder writes it (:func:`write_manifest`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from cxrtriage.files import sha256_file

MANIFEST_FILE = "graphs.json"
CLASSIFY_FULL_FILE = "classify_full.onnx"
SEGMENT_FULL_FILE = "segment_full.onnx"
#: the resize the engine accepts in a graph: Pillow's resample in plain ops, bit-identical to ``to_model_input``
#: (``train/graph_ops.py``); a graph built with ONNX ``Resize`` is close, not the same, and never run by the engine
EXACT_RESIZE = "pil"

log = logging.getLogger(__name__)


def manifest_entry(graph: Path, sources: Sequence[Path], resize: str) -> dict:
    """One graph's record: its sha256 and size, the resize it was built with, the sha256 of each source file."""
    return {
        "sha256": sha256_file(graph),
        "size": graph.stat().st_size,
        "resize": resize,
        "built_from": {src.name: sha256_file(src) for src in sources},
    }


def write_manifest(folder: Path, entries: Mapping[str, dict], command: str) -> Path:
    """``folder/graphs.json`` with ``entries`` (graph file name -> :func:`manifest_entry`) and the command that
    rebuilds them."""
    path = folder / MANIFEST_FILE
    body = {"command": command, "graphs": dict(sorted(entries.items()))}
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def stale_reason(graph: Path, sources: Sequence[Path]) -> str | None:
    """None when ``graph`` is listed in its folder's manifest with its own sha256, the exact resize and the sha256 of
    exactly ``sources`` as they are now; otherwise why not, in a sentence."""
    manifest = graph.parent / MANIFEST_FILE
    if not graph.is_file() or not manifest.is_file():
        return f"{graph.name} or {MANIFEST_FILE} is not in {graph.parent}"
    try:
        entry = json.loads(manifest.read_text(encoding="utf-8"))["graphs"][graph.name]
        built_from, sha, resize = dict(entry["built_from"]), entry["sha256"], entry.get("resize")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest} has no usable entry for {graph.name} ({exc!r})"
    if resize != EXACT_RESIZE:
        return f"{graph} was built with resize {resize!r}, not the exact {EXACT_RESIZE!r}"
    if sha != sha256_file(graph):
        return f"{graph} does not match its sha256 in {manifest}"
    if set(built_from) != {src.name for src in sources}:
        return f"{graph} was built from {sorted(built_from)}, not {sorted(src.name for src in sources)}"
    changed = [src.name for src in sources if built_from[src.name] != sha256_file(src)]
    if changed:
        return f"{graph} was built from another {' and '.join(changed)}: rebuild it ({entry_command(manifest)})"
    return None


def entry_command(manifest: Path) -> str:
    """The rebuild command a manifest records (or a generic hint when it cannot be read)."""
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return "python -m cxrtriage.train.browser_graphs --out <weights folder>"


def current_graph(graph: Path, sources: Sequence[Path]) -> Path | None:
    """``graph`` when it is present and current (:func:`stale_reason`), else None: the caller then runs its own
    numpy path, which gives the same answers. A graph that is there but stale is logged, not silently skipped."""
    reason = stale_reason(graph, sources)
    if reason is None:
        return graph
    if graph.is_file():
        log.warning("not running %s: %s", graph.name, reason)
    return None
