"""ONNX nodes that compute, inside a graph, what :func:`cxrtriage.imaging.preprocess.to_model_input` computes in numpy.

Export-time code (needs ``onnx``, never torch; the run-time stages never import it). Each step mirrors one line of
``preprocess.py`` and keeps its arithmetic (float32 where numpy works in float32, float64 where it works in float64),
so that the graph and the Python path give the same model input, not merely a similar one:

* the squash resize: Pillow's bilinear resize of an "F" image widens its triangle filter when it shrinks (it
  antialiases), renormalises the weights at the border, sums each pass in float64 and stores float32 between and
  after the passes. :func:`resize_pil_exact` does exactly that with Pillow's own coefficients (``Resample.c``) in
  plain ops, to the bit. ONNX ``Resize`` (opset 18, ``mode=linear``, ``antialias=1``, ``exclude_outside=1``,
  ``half_pixel``: :func:`resize_pil_bilinear`) is the same filter within ~2e-5 (without ``exclude_outside`` the
  border rows differ by up to 0.05, without ``antialias`` a 2x shrink by up to 0.3), but its float32 sums decide
  the 8-bit rounding ties of the next step otherwise: on 8-bit films hundreds of model-input pixels differ by one
  grey level (``prototype/eval/graph_parity.json``);
* ``quantize: uint8``: ``round(x * 255) / 255`` (ONNX ``Round`` rounds half to even, as ``np.round`` does);
* ``window: percentile-1-99``: ``np.percentile``'s linear method needs two order statistics per percentile; a
  ``TopK`` of the smallest (largest) few hundred values gives them exactly, then numpy's own lerp
  (``a + (b - a) * t``, or ``b - (b - a) * (1 - t)`` when ``t >= 0.5``) in float64;
* ``(x - mean) / std`` in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from cxrtriage.graph_manifest import EXACT_RESIZE
from cxrtriage.imaging.preprocess import (
    MIN_WINDOW_SPREAD,
    PERCENTILE_WINDOW,
    QUANTIZE_UINT8,
    SQUASH_BILINEAR,
    PreprocessConfig,
)

#: the percentiles of ``percentile_window`` (``np.percentile(x, (1.0, 99.0))``)
WINDOW_PERCENTILES = (1.0, 99.0)


@dataclass
class GraphPart:
    """Nodes and constants being added to a graph, every name under one prefix (no clash with the model's)."""

    prefix: str
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    _count: int = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def const(self, value: np.ndarray | float | int, hint: str = "c", dtype: type = np.float32) -> str:
        """A constant tensor (float32 unless ``dtype`` says otherwise); returns its name."""
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, out: str | None = None, **attrs: Any) -> str:
        """One node with one output (named ``out`` or made up); returns the output's name."""
        output = out or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.name(op_type), **attrs))
        return output

    def op_n(self, op_type: str, inputs: list[str], n_out: int, **attrs: Any) -> list[str]:
        outputs = [self.name(f"{op_type.lower()}_out") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs))
        return outputs


def resize_pil_bilinear(part: GraphPart, x: str, height: int, width: int, out: str | None = None) -> str:
    """[N, C, H, W] -> [N, C, height, width]: PIL's float bilinear resize (antialiased when shrinking)."""
    sizes = part.const(np.array([height, width]), "sizes", np.int64)
    return part.op(
        "Resize",
        [x, "", "", sizes],
        "resized",
        out=out,
        mode="linear",
        antialias=1,
        exclude_outside=1,
        coordinate_transformation_mode="half_pixel",
        axes=[2, 3],
    )


def sequential_sum(part: GraphPart, x: str, axis: int, *, keepdims: bool) -> str:
    """The sum along ``axis`` in index order (``ss += ...`` as Pillow's loops add): the last element of a
    ``CumSum``. ``ReduceSum`` may add in another order, and in float64 that is enough to decide a float32 rounding
    tie the other way once in a few hundred images (measured)."""
    total = part.op("CumSum", [x, part.const(axis, "axis", np.int64)])
    last = part.op("Gather", [total, part.const(np.array([-1]) if keepdims else -1, "last", np.int64)], axis=axis)
    return last


def _pil_coefficients(part: GraphPart, in_size: str, out_size: int) -> tuple[str, str]:
    """Pillow's ``precompute_coeffs`` for the bilinear filter, from a dynamic input length (int64 [1]): the
    source index [out, ksize] (int64, clamped) and normalised weight [out, ksize] (float64, 0 past each window)
    of every tap, computed in float64 as Pillow's C code does (``Resample.c``)."""
    d = TensorProto.DOUBLE
    size64 = part.op("Cast", [in_size], to=d)
    scale = part.op("Div", [size64, part.const(float(out_size), dtype=np.float64)])
    filterscale = part.op("Max", [scale, part.const(1.0, dtype=np.float64)])  # the filter widens when shrinking
    support = filterscale  # bilinear support 1.0 * filterscale
    ksize = part.op(
        "Add",
        [
            part.op(
                "Mul",
                [part.op("Cast", [part.op("Ceil", [support])], to=TensorProto.INT64), part.const(2, dtype=np.int64)],
            ),
            part.const(1, dtype=np.int64),
        ],
    )
    xx = part.op(
        "Range",
        [
            part.const(0.0, dtype=np.float64),
            part.const(float(out_size), dtype=np.float64),
            part.const(1.0, dtype=np.float64),
        ],
    )
    center = part.op("Mul", [part.op("Add", [xx, part.const(0.5, dtype=np.float64)]), scale])  # [out]
    half = part.const(0.5, dtype=np.float64)
    xmin = part.op(
        "Max",
        [
            part.op("Floor", [part.op("Add", [part.op("Sub", [center, support]), half])]),
            part.const(0.0, dtype=np.float64),
        ],
    )
    xmax = part.op("Min", [part.op("Floor", [part.op("Add", [part.op("Add", [center, support]), half])]), size64])
    count = part.op("Sub", [xmax, xmin])
    taps = part.op(
        "Cast",
        [part.op("Range", [part.const(0, dtype=np.int64), part.op("Squeeze", [ksize]), part.const(1, dtype=np.int64)])],
        to=d,
    )
    col = part.const(np.array([-1, 1]), "shape", np.int64)
    xmin_c, center_c, count_c = (part.op("Reshape", [v, col]) for v in (xmin, center, count))
    pos = part.op("Add", [xmin_c, taps])  # [out, ksize]: x + xmin
    # Reciprocal, not Div(1, f): onnxruntime rewrites Div(1, f) followed by Mul into one Div (DivMulFusion),
    # which rounds differently from Pillow in a few coefficients
    ss = part.op("Reciprocal", [filterscale])
    arg = part.op(
        "Mul", [part.op("Add", [part.op("Sub", [pos, center_c]), half]), ss]
    )  # ((x + xmin) - center + 0.5) * ss
    tri = part.op(
        "Max",
        [part.op("Sub", [part.const(1.0, dtype=np.float64), part.op("Abs", [arg])]), part.const(0.0, dtype=np.float64)],
    )
    inside = part.op("Less", [taps, count_c])
    w = part.op("Where", [inside, tri, part.const(0.0, dtype=np.float64)])
    k = part.op("Div", [w, sequential_sum(part, w, 1, keepdims=True)])
    last = part.op("Sub", [size64, part.const(1.0, dtype=np.float64)])
    index = part.op("Cast", [part.op("Min", [pos, last])], to=TensorProto.INT64)
    return index, k


def _pil_rows_pass(part: GraphPart, x32: str, out_size: int) -> str:
    """One separable pass of Pillow's float resample along the rows (axis 2) of [N, 1, H, W]: the taps summed in
    float64 in Pillow's order, the result stored as float32 (Pillow's "F" image between and after the passes).
    Along rows, each tap a ``Gather`` fetches is a whole contiguous row (along columns it would be single
    elements: measured 25 ms of a 1024 px image's 35)."""
    in_size = part.op("Shape", [x32], start=2, end=3)
    index, k = _pil_coefficients(part, in_size, out_size)
    # gathered in float32, then widened: the same values, half the bytes moved (float32 -> float64 is exact)
    gathered = part.op("Cast", [part.op("Gather", [x32, index], axis=2)], to=TensorProto.DOUBLE)  # [N,1,out,k,W]
    k = part.op("Unsqueeze", [k, part.const(np.array([2]), "axes", np.int64)])  # [out, k, 1]
    total = sequential_sum(part, part.op("Mul", [gathered, k]), 3, keepdims=False)
    return part.op("Cast", [total], to=TensorProto.FLOAT)


def resize_pil_exact(part: GraphPart, x: str, height: int, width: int) -> str:
    """[N, 1, H, W] -> [N, 1, height, width] as Pillow resizes an "F" image with BILINEAR: columns first (on the
    transposed image), then rows, each with Pillow's own coefficients. A pass whose size does not change is
    Pillow's identity."""
    swap = [0, 1, 3, 2]
    across = part.op("Transpose", [_pil_rows_pass(part, part.op("Transpose", [x], perm=swap), width)], perm=swap)
    return _pil_rows_pass(part, across, height)


def quantize_uint8(part: GraphPart, x: str) -> str:
    """``from_cache(to_cache(x))``: ``clip(round(x * 255), 0, 255) / 255`` in float32."""
    scaled = part.op("Mul", [x, part.const(255.0)])
    rounded = part.op("Round", [scaled])
    clipped = part.op("Clip", [rounded, part.const(0.0), part.const(255.0)])
    return part.op("Div", [clipped, part.const(255.0)], "quantized")


def _order_statistics(n: int, q: float) -> tuple[int, int, float]:
    """(previous index, next index, gamma) of numpy's linear-method percentile ``q`` of ``n`` values."""
    virtual = float(np.asarray([q], dtype=np.float64)[0] / 100.0 * (n - 1))
    previous = math.floor(virtual)
    return previous, min(previous + 1, n - 1), float(np.float64(virtual) - np.float64(previous))


def _lerp64(part: GraphPart, a32: str, b32: str, gamma: float) -> str:
    """numpy's ``_lerp`` of two float32 order statistics, as ``np.percentile`` runs it: ``b - a`` in float32, the
    rest in float64 (the sum that is less exposed to rounding for ``gamma >= 0.5``)."""
    diff = part.op("Cast", [part.op("Sub", [b32, a32])], to=TensorProto.DOUBLE)
    if gamma >= 0.5:
        b64 = part.op("Cast", [b32], to=TensorProto.DOUBLE)
        return part.op("Sub", [b64, part.op("Mul", [diff, part.const(1.0 - gamma, dtype=np.float64)])])
    a64 = part.op("Cast", [a32], to=TensorProto.DOUBLE)
    return part.op("Add", [a64, part.op("Mul", [diff, part.const(gamma, dtype=np.float64)])])


def _percentile(part: GraphPart, flat: str, n: int, q: float) -> str:
    """[N, n] float32 -> [N, 1] float64: the ``q``-th percentile of each row, exactly as ``np.percentile``."""
    lo_idx, hi_idx, gamma = _order_statistics(n, q)
    smallest = lo_idx < n - 1 - hi_idx  # pick the short end of the sort
    k = hi_idx + 1 if smallest else n - lo_idx
    values, _ = part.op_n(
        "TopK", [flat, part.const(np.array([k]), "k", np.int64)], 2, axis=-1, largest=0 if smallest else 1
    )
    pos = (lo_idx, hi_idx) if smallest else (n - 1 - lo_idx, n - 1 - hi_idx)
    a = part.op("Gather", [values, part.const(np.array([pos[0]]), "i", np.int64)], axis=1)
    b = part.op("Gather", [values, part.const(np.array([pos[1]]), "i", np.int64)], axis=1)
    return _lerp64(part, a, b, gamma)


def percentile_window(part: GraphPart, x: str, height: int, width: int) -> str:
    """``preprocess.percentile_window`` per image of a [N, 1, height, width] batch: the 1st..99th percentile mapped
    to 0..1 and clipped, in float32 as numpy does it (the float64 percentiles cast to float32); a flat image
    (spread below ``MIN_WINDOW_SPREAD``) passes unchanged."""
    n = height * width
    flat = part.op("Flatten", [x], axis=1)
    lo, hi = (_percentile(part, flat, n, q) for q in WINDOW_PERCENTILES)
    spread64 = part.op("Sub", [hi, lo])
    shape4 = part.const(np.array([-1, 1, 1, 1]), "shape", np.int64)
    lo32 = part.op("Reshape", [part.op("Cast", [lo], to=TensorProto.FLOAT), shape4])
    spread32 = part.op("Reshape", [part.op("Cast", [spread64], to=TensorProto.FLOAT), shape4])
    scaled = part.op("Div", [part.op("Sub", [x, lo32]), spread32])
    windowed = part.op("Clip", [scaled, part.const(0.0), part.const(1.0)])
    flat_image = part.op(
        "Reshape", [part.op("Less", [spread64, part.const(MIN_WINDOW_SPREAD, dtype=np.float64)]), shape4]
    )
    return part.op("Where", [flat_image, x, windowed], "windowed")


#: how the graph resizes: Pillow's coefficients and float64 sums in plain ONNX ops (``pil``), or ONNX ``Resize``
RESIZE_PIL, RESIZE_OP = EXACT_RESIZE, "resize-op"  # the engine runs only graphs built with RESIZE_PIL


def model_input_nodes(
    part: GraphPart, crop: str, cfg: PreprocessConfig, model_input: str, resize: str = RESIZE_PIL
) -> dict[str, str]:
    """Nodes from a [N, 1, H, W] float [0, 1] image (any H, W) to the model input ``model_input``, as
    ``to_model_input`` makes it for ``cfg``. Returns the names of what a caller may also expose: ``resized`` (the
    float resize before quantizing: what the layout gate reads) and ``model_input``."""
    if cfg.resize != SQUASH_BILINEAR or cfg.channels != 1 or np.ndim(cfg.mean) or np.ndim(cfg.std):
        raise ValueError("only the one-channel squash-bilinear preprocessing with scalar mean/std is built as a graph")
    h, w = cfg.hw
    clipped = part.op("Clip", [crop, part.const(0.0), part.const(1.0)], "clipped")
    resized = (
        resize_pil_exact(part, clipped, h, w) if resize == RESIZE_PIL else resize_pil_bilinear(part, clipped, h, w)
    )
    x = quantize_uint8(part, resized) if cfg.quantize == QUANTIZE_UINT8 else resized
    if cfg.window == PERCENTILE_WINDOW:
        x = percentile_window(part, x, h, w)
    centred = part.op("Sub", [x, part.const(float(cfg.mean))])  # type: ignore[arg-type]  # scalar: checked above
    part.op("Div", [centred, part.const(float(cfg.std))], out=model_input)  # type: ignore[arg-type]
    return {"resized": resized, "model_input": model_input}
