"""Image -> model input, driven entirely by the model's metadata (``preprocess`` block of model.json).

Training and inference both call :func:`to_model_input`, so the two can never drift apart.

Keys of the ``preprocess`` block:

* ``input_size``: S (square) or [H, W].
* ``channels``: 1 (default) or 3; a grey image is replicated to every channel.
* ``mean`` / ``std``: a scalar, or one value per channel.
* ``resize``: how the image reaches the model size:

  - ``"squash-bilinear"`` (default, the bundled CNN): float [0,1] image clipped, PIL bilinear resize in float
    ("F" mode) to (H, W) without keeping the aspect ratio, then ``(x - mean) / std``.
* ``quantize``: ``"uint8"`` rounds the resized image to 8 bits (``round(x * 255) / 255``) before normalising.
  The bundled CNN was trained, calibrated and indexed on 8-bit caches of the resized images, so serving does the
  same (:func:`to_cache` / :func:`from_cache` are the two halves training uses;
  ``tests/imaging/test_preprocess_parity.py`` pins train-time and serve-time inputs to the same array).
  - ``"siglip-uint8-bilinear"`` (a MedSigLIP ONNX bundle): exactly ``MedSigLIPBackend.to_pil`` followed by the
    checkpoint's SigLIP image processor: clip, ``rint(x * 255)`` to uint8, PIL bilinear resize of the "L" image to
    (H, W), then ``x * rescale_factor`` (the processor's, 1/255) and ``(x - mean[c]) / std[c]`` with the
    processor's image_mean/std. The processor's own resize is a no-op at that size (the image already has it).
* ``window``: ``"percentile-1-99"`` maps the resized (and, with ``quantize``, 8-bit) image's 1st..99th percentile
  to 0..1 (clipped) before normalising, so that exposure and contrast differences between sites and detectors
  reach the model as little as possible (the segmentation network; :func:`percentile_window`). Absent: no window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

SQUASH_BILINEAR = "squash-bilinear"
SIGLIP_UINT8_BILINEAR = "siglip-uint8-bilinear"
RESIZE_MODES = (SQUASH_BILINEAR, SIGLIP_UINT8_BILINEAR)


def clip_unit(pixels: np.ndarray) -> np.ndarray:
    """``np.clip(pixels, 0, 1)``, but the array itself when nothing lies outside ``[0, 1]`` (a decoded image never
    does): the same values without a full-size copy (two reductions cost a quarter of a clip that writes 4 MB at
    1024 px, and several stages clip the same image). Callers only read the result."""
    x = np.asarray(pixels)
    if x.size and x.min() >= 0.0 and x.max() <= 1.0:
        return x
    return np.clip(x, 0.0, 1.0)


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a float [0,1] (H, W) image to (size, size) without keeping the aspect ratio.

    Squashing (not letterboxing) matches how the training images were prepared: NIH images are square and
    the pediatric set was already squashed by its publisher.
    """
    return resize_squash(pixels, size, size)


def resize_squash(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Float PIL ("F") bilinear resize of a (H, W) image to (height, width), aspect ratio not kept."""
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def resize_uint8(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``MedSigLIPBackend.to_pil`` without the RGB step: uint8 "L" image, PIL bilinear to (height, width)."""
    arr = np.asarray(pixels, dtype=np.float32)
    grey = Image.fromarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8), mode="L")
    return np.asarray(grey.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


QUANTIZE_UINT8 = "uint8"
PERCENTILE_WINDOW = "percentile-1-99"
WINDOW_MODES = (PERCENTILE_WINDOW,)
#: below this 1..99 percentile spread an image is treated as flat and left as it is (no division by ~0)
MIN_WINDOW_SPREAD = 1.0 / 255.0


def percentile_window(x: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile of ``x`` (float, [0,1]) to 0..1, clipped; a flat image is returned unchanged.
    One definition for training (after augmentation) and serving (after the resize)."""
    lo, hi = np.percentile(x, (1.0, 99.0))
    if hi - lo < MIN_WINDOW_SPREAD:
        return np.asarray(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_cache(pixels: np.ndarray, cfg: ConfigLike) -> np.ndarray:
    """(H, W) float [0,1] -> the 8-bit resized image training caches (first half of :func:`to_model_input`)."""
    h, w = input_hw(cfg)
    x = resize_squash(clip_unit(pixels), h, w)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def from_cache(cached: np.ndarray) -> np.ndarray:
    """8-bit cache -> float32 [0,1] (second half): the one definition of the 8-bit to unit conversion."""
    return np.asarray(cached).astype(np.float32) / np.float32(255.0)


def input_hw(cfg: PreprocessConfig | Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of the model input from ``input_size`` (S or [H, W])."""
    if isinstance(cfg, PreprocessConfig):
        return cfg.hw
    size = cfg["input_size"]
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ValueError(f"input_size must be S or [H, W], got {size!r}")
        return int(size[0]), int(size[1])
    return int(size), int(size)


def _per_channel(value: Any, channels: int, key: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise ValueError(f"preprocess {key} has {arr.size} values for {channels} channels")
    return arr


@dataclass(frozen=True)
class PreprocessConfig:
    """The ``preprocess`` block of a model's metadata, parsed and checked once when the model loads (like timm's
    ``pretrained_cfg``); every caller of :func:`to_model_input` then uses the same frozen values."""

    hw: tuple[int, int]
    channels: int = 1
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    resize: str = SQUASH_BILINEAR
    quantize: str | None = None
    rescale_factor: float = 1.0 / 255.0
    window: str | None = None

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> PreprocessConfig:
        """Parse a metadata block; ValueError for anything this module cannot honour."""
        mode = cfg.get("resize", SQUASH_BILINEAR)
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown preprocess resize mode {mode!r}; supported: {', '.join(RESIZE_MODES)}")
        channels = int(cfg.get("channels", 1))
        if channels not in (1, 3):
            raise ValueError(f"preprocess channels must be 1 or 3, got {channels}")
        quantize = cfg.get("quantize")
        if quantize not in (None, QUANTIZE_UINT8):
            raise ValueError(f"preprocess quantize must be {QUANTIZE_UINT8!r} or absent, got {quantize!r}")
        if quantize and mode != SQUASH_BILINEAR:
            raise ValueError(f"preprocess quantize applies to the {SQUASH_BILINEAR!r} resize only")
        window = cfg.get("window")
        if window not in (None, *WINDOW_MODES):
            raise ValueError(f"preprocess window must be one of {', '.join(WINDOW_MODES)} or absent, got {window!r}")
        if window and mode != SQUASH_BILINEAR:
            raise ValueError(f"preprocess window applies to the {SQUASH_BILINEAR!r} resize only")
        hw = input_hw(cfg)
        mean = _per_channel(cfg["mean"], channels, "mean")
        std = _per_channel(cfg["std"], channels, "std")
        if np.any(std == 0):
            raise ValueError("preprocess std must be non-zero")

        def scalar_or_tuple(raw: Any, values: np.ndarray) -> float | tuple[float, ...]:
            return float(values[0]) if np.ndim(raw) == 0 else tuple(float(v) for v in values)

        return cls(
            hw=hw,
            channels=channels,
            mean=scalar_or_tuple(cfg["mean"], mean),
            std=scalar_or_tuple(cfg["std"], std),
            resize=mode,
            quantize=quantize,
            rescale_factor=float(cfg.get("rescale_factor", 1.0 / 255.0)),
            window=window,
        )


ConfigLike = PreprocessConfig | Mapping[str, Any]


def parse_config(cfg: ConfigLike) -> PreprocessConfig:
    return cfg if isinstance(cfg, PreprocessConfig) else PreprocessConfig.from_mapping(cfg)


def to_model_input(pixels: np.ndarray, cfg: ConfigLike) -> np.ndarray:
    """(H, W) float [0,1] -> (1, C, H', W') float32 normalised as the model's metadata says."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {pixels.shape}")
    cfg = parse_config(cfg)
    h, w = cfg.hw
    if cfg.resize == SQUASH_BILINEAR:
        if cfg.quantize == QUANTIZE_UINT8:
            x = from_cache(to_cache(pixels, cfg))
        else:
            x = resize_squash(clip_unit(pixels), h, w)
        if cfg.window == PERCENTILE_WINDOW:
            x = percentile_window(x)
        if cfg.channels == 1 and np.ndim(cfg.mean) == 0 and np.ndim(cfg.std) == 0:
            # the bundled CNN's path (float32 arithmetic)
            x = (x - float(cfg.mean)) / float(cfg.std)  # type: ignore[arg-type]  # scalars: checked above
            return x[None, None].astype(np.float32)
        x = x.astype(np.float64)
    else:  # SIGLIP_UINT8_BILINEAR (from_mapping admits nothing else)
        x = resize_uint8(pixels, h, w).astype(np.float64) * cfg.rescale_factor
    m = _per_channel(cfg.mean, cfg.channels, "mean")[:, None, None]
    s = _per_channel(cfg.std, cfg.channels, "std")[:, None, None]
    out = (x[None] - m) / s
    return out[None].astype(np.float32)
