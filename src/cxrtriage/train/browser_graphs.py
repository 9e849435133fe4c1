"""The bundled models with their numeric pre- and post-processing inside the graph (issue 27: one numeric path).

``classify_full.onnx`` wraps ``model.onnx``: input ``crop`` = the exposed-field crop at its own size, [1, 1, H, W]
float32 in [0, 1], display polarity; outputs

* ``score`` [N] float64: the calibrated urgency score (Platt ``a``, ``b`` of model.json, float64 as
  ``backends.calibration.platt``), so the threshold and review band of model.json apply to it unchanged;
* ``logit`` [N] float32, ``cam`` [N, h, w] (``backends.cam``: the head weight . the feature map, summed in float64
  as numpy does), ``embedding`` [N, C] (the feature map's spatial mean, what the similar-case index and the OOD gate
  read);
* ``model_input`` [N, 1, S, S] and ``resized`` [N, 1, S, S] (the float resize before quantizing: the layout gate's
  input), so a caller never resizes the image itself.

``segment_full.onnx`` wraps ``segment.onnx`` the same way (percentile window in the graph): outputs ``probs``
[N, structures, S, S] (sigmoid of the logits), ``model_input`` (the symmetry check's input) and ``resized``.

Both are built from the bundle's files and its metadata (the ``preprocess`` block through
:class:`~cxrtriage.imaging.preprocess.PreprocessConfig`, the same parser the engine uses), never from constants here,
and recorded in ``graphs.json`` (:mod:`cxrtriage.graph_manifest`: each graph's sha256 and size, and the sha256 of the
model file and metadata it was built from). The bundled copies live in ``src/cxrtriage/weights/`` and are rebuilt by
one command (``make export`` runs it after exporting the models)::

    python -m cxrtriage.train.browser_graphs --out src/cxrtriage/weights

Export-time code (needs ``onnx``). The engine runs these graphs when the manifest matches its files
(``BundledOnnxBackend.analyze``, ``Segmenter.segment``; otherwise their numpy path, which gives the same answers), and
``cxrtriage browser-build`` copies them for the page, so the Python engine and the browser run one numeric path.
``cxrtriage.evaluation.graph_parity`` measures how far the graphs are from the numpy path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from cxrtriage import config
from cxrtriage.anatomy.segmenter import SEGMENT_META_FILE, SEGMENT_MODEL_FILE
from cxrtriage.backends.bundle_config import META_FILE, BundleConfig
from cxrtriage.backends.bundled import DEFAULT_FEATURE_MAP_OUTPUT, DEFAULT_LOGIT_OUTPUT, MODEL_FILE
from cxrtriage.graph_manifest import CLASSIFY_FULL_FILE, SEGMENT_FULL_FILE, manifest_entry, write_manifest
from cxrtriage.imaging.preprocess import PreprocessConfig
from cxrtriage.train.graph_ops import RESIZE_OP, RESIZE_PIL, GraphPart, model_input_nodes

__all__ = ["CLASSIFY_FULL_FILE", "SEGMENT_FULL_FILE", "build_classify_full", "build_segment_full", "write_graphs"]
CROP_INPUT = "crop"
#: each graph and the files of the bundle it is built from (what graphs.json records)
GRAPH_SOURCES = {
    CLASSIFY_FULL_FILE: (MODEL_FILE, META_FILE),
    SEGMENT_FULL_FILE: (SEGMENT_MODEL_FILE, SEGMENT_META_FILE),
}
REBUILD_COMMAND = "python -m cxrtriage.train.browser_graphs --out src/cxrtriage/weights"


def _graft(model: onnx.ModelProto, pre: GraphPart, post: GraphPart, outputs: Sequence[onnx.ValueInfoProto]) -> None:
    """Put ``pre``'s nodes before the model's and ``post``'s after them, replace the model's input by ``crop``
    [N, 1, H, W] and its outputs by ``outputs``; the result must pass the ONNX checker."""
    g = model.graph
    body = list(g.node)
    del g.node[:]
    g.node.extend([*pre.nodes, *body, *post.nodes])
    g.initializer.extend([*pre.initializers, *post.initializers])
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(CROP_INPUT, TensorProto.FLOAT, ["batch", 1, "height", "width"]))
    del g.output[:]
    g.output.extend(outputs)
    onnx.checker.check_model(model, full_check=True)


def _prepare(model_path: Path, cfg: PreprocessConfig, resize: str) -> tuple[onnx.ModelProto, GraphPart]:
    """The model, and a part holding the preprocessing that feeds its input, exposed as ``resized`` (the float
    resize before quantizing) and ``model_input``."""
    model = onnx.load(str(model_path))
    inputs = [i.name for i in model.graph.input]
    if len(inputs) != 1:
        raise ValueError(f"{model_path}: expected one input, got {inputs}")
    pre = GraphPart("pre")
    names = model_input_nodes(pre, CROP_INPUT, cfg, inputs[0], resize)
    pre.op("Identity", [names["resized"]], out="resized")
    pre.op("Identity", [inputs[0]], out="model_input")
    return model, pre


def build_classify_full(weights_dir: Path, resize: str = RESIZE_PIL) -> onnx.ModelProto:
    """``model.onnx`` + its preprocessing, calibration, CAM and embedding (outputs: see the module docstring)."""
    bundle = BundleConfig.load(weights_dir / META_FILE)
    if bundle.head is None or bundle.output_roles is not None:
        raise ValueError("only the bundled CNN's layout (urgency_logit, feature_map and a linear head) is wrapped")
    cfg = bundle.preprocess_config
    model, pre = _prepare(weights_dir / MODEL_FILE, cfg, resize)
    post = GraphPart("post")
    logit = post.op("Reshape", [DEFAULT_LOGIT_OUTPUT, post.const(np.array([-1]), "shape", np.int64)], out="logit")
    weight = np.asarray(bundle.head.weight, dtype=np.float32)
    # backends.cam.class_activation_map: the weighted channel sum in float64, then float32 (a float32 Conv differs by
    # up to 4e-6, which moves the evidence boxes' strength in its 8th decimal)
    fmap64 = post.op("Cast", [DEFAULT_FEATURE_MAP_OUTPUT], to=TensorProto.DOUBLE)
    channels_last = post.op("Transpose", [fmap64], perm=[0, 2, 3, 1])
    cam64 = post.op("MatMul", [channels_last, post.const(weight.astype(np.float64), "head_w", np.float64)])
    post.op("Cast", [cam64], out="cam", to=TensorProto.FLOAT)
    axes = post.const(np.array([2, 3]), "axes", np.int64)
    post.op("ReduceMean", [DEFAULT_FEATURE_MAP_OUTPUT, axes], out="embedding", keepdims=0)
    # calibration.platt: 1 / (1 + exp(-(a * logit + b))) in float64
    a, b = (post.const(v, dtype=np.float64) for v in (bundle.calibration.a, bundle.calibration.b))
    z = post.op("Add", [post.op("Mul", [post.op("Cast", [logit], to=TensorProto.DOUBLE), a]), b])
    denom = post.op("Add", [post.const(1.0, dtype=np.float64), post.op("Exp", [post.op("Neg", [z])])])
    post.op("Reciprocal", [denom], out="score")
    f, hw = TensorProto.FLOAT, cfg.hw
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["batch"]),
        helper.make_tensor_value_info("logit", f, ["batch"]),
        helper.make_tensor_value_info("cam", f, ["batch", "cam_h", "cam_w"]),
        helper.make_tensor_value_info("embedding", f, ["batch", len(weight)]),
        helper.make_tensor_value_info("model_input", f, ["batch", 1, *hw]),
        helper.make_tensor_value_info("resized", f, ["batch", 1, *hw]),
    ]
    _graft(model, pre, post, outputs)
    return model


def build_segment_full(weights_dir: Path, resize: str = RESIZE_PIL) -> onnx.ModelProto:
    """``segment.onnx`` + its preprocessing (percentile window included) and the sigmoid."""
    meta = json.loads((weights_dir / SEGMENT_META_FILE).read_text(encoding="utf-8"))
    cfg = PreprocessConfig.from_mapping(meta["preprocess"])
    model, pre = _prepare(weights_dir / SEGMENT_MODEL_FILE, cfg, resize)
    post = GraphPart("post")
    # Segmenter.segment's 1 / (1 + exp(-logits)) in float32, op for op (not Sigmoid, which rounds its own way)
    exp = post.op("Exp", [post.op("Neg", [model.graph.output[0].name])])
    post.op("Reciprocal", [post.op("Add", [post.const(1.0), exp])], out="probs")
    f, hw = TensorProto.FLOAT, cfg.hw
    outputs = [
        helper.make_tensor_value_info("probs", f, ["batch", len(meta["structures"]), *hw]),
        helper.make_tensor_value_info("model_input", f, ["batch", 1, *hw]),
        helper.make_tensor_value_info("resized", f, ["batch", 1, *hw]),
    ]
    _graft(model, pre, post, outputs)
    return model


def write_graphs(
    out_dir: Path, weights_dir: Path | None = None, resize: str = RESIZE_PIL, command: str = REBUILD_COMMAND
) -> list[Path]:
    """Build both graphs from the bundle in ``weights_dir`` (default: the installed one) into ``out_dir``, with the
    manifest (``graphs.json``) that names what each was built from."""
    src = Path(weights_dir) if weights_dir else config.BUNDLED_WEIGHTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written, entries = [], {}
    for name, build in ((CLASSIFY_FULL_FILE, build_classify_full), (SEGMENT_FULL_FILE, build_segment_full)):
        path = out_dir / name
        onnx.save(build(src, resize), str(path))
        entries[name] = manifest_entry(path, [src / f for f in GRAPH_SOURCES[name]], resize)
        written.append(path)
    write_manifest(out_dir, entries, command)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for classify_full.onnx and segment_full.onnx")
    parser.add_argument("--weights", type=Path, default=None, help="bundle folder (default: the installed one)")
    parser.add_argument(
        "--resize",
        choices=(RESIZE_PIL, RESIZE_OP),
        default=RESIZE_PIL,
        help="Pillow's resample in plain ops (default) or ONNX Resize (antialias): see graph_ops",
    )
    args = parser.parse_args(argv)
    command = "python -m cxrtriage.train.browser_graphs " + " ".join(sys.argv[1:] if argv is None else argv)
    for path in write_graphs(args.out, args.weights, args.resize, command.strip()):
        print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
