"""Run the bundled lung-and-heart segmentation (``segment.onnx`` + ``segment.json``): numpy + onnxruntime only.

The network sees the image through the shared preprocessing (:func:`~cxrtriage.imaging.preprocess.to_model_input`
with the ``preprocess`` block of ``segment.json``, percentile window included) and returns one probability map per
structure at its input size. :class:`Segmentation` turns them into masks at any size: the probability is
resized bilinearly, thresholded at 0.5, and only the largest connected piece of each structure is kept (a
structure is one piece of anatomy; stray islands are noise).

When ``segment_full.onnx`` is there and ``graphs.json`` says it was built from this ``segment.onnx`` and
``segment.json`` (:func:`cxrtriage.graph_manifest.current_graph`), :meth:`Segmenter.segment` runs it instead: the
same preprocessing, network and sigmoid inside one graph, the one the browser page runs (``probs`` = its sigmoid,
the symmetry check reads its ``model_input``); without it, the numpy path, which gives the same masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtriage import config
from cxrtriage.anatomy.components import grow, largest_component
from cxrtriage.errors import ModelError
from cxrtriage.files import sha256_file
from cxrtriage.graph_manifest import SEGMENT_FULL_FILE, current_graph
from cxrtriage.imaging.preprocess import PreprocessConfig, to_model_input

SEGMENT_MODEL_FILE = "segment.onnx"
SEGMENT_META_FILE = "segment.json"
RIGHT_LUNG, LEFT_LUNG, HEART = "right_lung", "left_lung", "heart"


def _resize_prob(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    if prob.shape == (height, width):
        return prob
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(prob, np.float32), mode="F").resize(
            (width, height), Image.Resampling.BILINEAR
        )
    )


@dataclass
class Segmentation:
    """Probability maps (structures x S x S) of one image whose analysed size is ``shape`` (H, W)."""

    probs: np.ndarray
    structures: tuple[str, ...]
    shape: tuple[int, int]
    threshold: float = 0.5
    #: left-right mirror correlation of the network's (windowed) input, best over small midline shifts: high for a
    #: frontal film, low for a lateral view
    symmetry: float = 0.0
    #: brightness of the image's central band minus its sides (the mediastinum and spine of a frontal film)
    centre_brightness: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    def _index(self, structure: str) -> int:
        if structure not in self.structures:
            raise KeyError(f"unknown structure {structure!r}; known: {', '.join(self.structures)}")
        return self.structures.index(structure)

    def low_res(self, structure: str) -> np.ndarray:
        """The cleaned mask at the network's resolution (largest piece above the threshold)."""
        key = ("low", structure)
        if key not in self._cache:
            self._cache[key] = largest_component(self.probs[self._index(structure)] >= self.threshold)
        return self._cache[key]

    def mask(self, structure: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Boolean mask at ``shape`` (default: the analysed image's), restricted to the largest piece."""
        h, w = shape or self.shape
        key = ("mask", structure, h, w)
        if key not in self._cache:
            keep = self.low_res(structure)
            if not keep.any():
                self._cache[key] = np.zeros((h, w), dtype=bool)
            else:
                # grown by a pixel, so the kept piece's soft edge survives the resize
                prob = _resize_prob(self.probs[self._index(structure)] * grow(keep, 1), h, w)
                self._cache[key] = largest_component(prob >= self.threshold)
        return self._cache[key]


def _symmetry(x: np.ndarray) -> tuple[float, float]:
    """(mirror correlation, centre brightness) of the model input on a 64 x 64 grid, each half of the image in
    sixteenths. The input is already windowed and normalised, so both are free of exposure."""
    s = x.shape[0] // 64 * 64
    t = x[:s, :s].reshape(64, s // 64, 64, s // 64).mean(axis=(1, 3)).astype(np.float64)
    best = -1.0
    for shift in range(-8, 9):  # the midline need not be the image's centre
        a = t[:, 16 + shift : 48 + shift]
        a = a - a.mean()
        b = a[:, ::-1]
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if denom > 0:
            best = max(best, float((a * b).sum() / denom))
    col = t[8:56].mean(axis=0)
    spread = float(t.std()) or 1.0
    return best, float((col[24:40].mean() - 0.5 * (col[8:20].mean() + col[44:56].mean())) / spread)


class Segmenter:
    """The segmentation stage: ``segment(pixels)`` -> :class:`Segmentation`. Thread-safe (one ONNX session).

    ``model_dir`` (None: the bundled segmentation) and ``threads`` (0 or None: onnxruntime's default) are given by
    whoever builds it (the engine: from its settings' ``segmenter_dir`` and ``threads``); nothing is read from the
    environment here."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        threads: int | None = None,
        verify: bool = True,
        graphs: bool = True,
    ) -> None:
        """``graphs=False``: the numpy path even when a current ``segment_full.onnx`` is there."""
        import onnxruntime as ort

        self.model_dir = Path(model_dir) if model_dir else config.BUNDLED_WEIGHTS_DIR
        meta_path, self.model_path = self.model_dir / SEGMENT_META_FILE, self.model_dir / SEGMENT_MODEL_FILE
        if not meta_path.is_file() or not self.model_path.is_file():
            raise ModelError(
                f"segmentation model not found in {self.model_dir} ({SEGMENT_MODEL_FILE} + {SEGMENT_META_FILE}): "
                "reinstall the package or run `cxrtriage train-segmenter` and `cxrtriage export-segmenter`"
            )
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.sha256 = sha256_file(self.model_path)
        if verify and self.sha256 != self.meta.get("sha256"):
            raise ModelError(f"{self.model_path} does not match the sha256 in {SEGMENT_META_FILE}")
        try:
            self.preprocess_cfg = PreprocessConfig.from_mapping(self.meta["preprocess"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{meta_path}: bad preprocess block: {exc}") from exc
        self.structures = tuple(self.meta["structures"])
        self.threshold = float(self.meta.get("threshold", 0.5))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0: onnxruntime's default (Settings.threads)
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        graph = current_graph(self.model_dir / SEGMENT_FULL_FILE, [self.model_path, meta_path]) if graphs else None
        # one session: the graph (which holds the network) or the network alone
        self.graph = graph is not None
        self.session = ort.InferenceSession(str(graph or self.model_path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @property
    def name(self) -> str:
        return f"{self.meta['name']} {self.meta['version']}"

    def segment(self, pixels: np.ndarray) -> Segmentation:
        """Segment a grey float [0, 1] (H, W) image in display polarity."""
        if self.graph:
            crop = np.ascontiguousarray(pixels, dtype=np.float32)[None, None]
            out, x = self.session.run(["probs", "model_input"], {self.input_name: crop})
            probs = out[0]
        else:
            x = to_model_input(pixels, self.preprocess_cfg)
            logits = self.session.run(None, {self.input_name: x})[0][0]
            probs = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        symmetry, centre = _symmetry(x[0, 0])
        return Segmentation(
            probs=probs,
            structures=self.structures,
            shape=(int(pixels.shape[0]), int(pixels.shape[1])),
            threshold=self.threshold,
            symmetry=symmetry,
            centre_brightness=centre,
        )


def installed_segmenter(settings: config.Settings | None = None) -> Segmenter | None:
    """The lung-and-heart segmentation of ``settings`` (``segmenter_dir``, ``threads``; None: the environment's), or
    None when its files are not there (the pipeline then falls back to image-geometry zones and the layout gate
    alone, and says so in a warning)."""
    settings = settings if settings is not None else config.Settings()
    directory = settings.segmenter_dir
    return Segmenter(directory, threads=settings.threads) if (directory / SEGMENT_MODEL_FILE).is_file() else None
