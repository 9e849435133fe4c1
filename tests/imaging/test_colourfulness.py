"""``colourfulness`` (the gate's colour-photograph check) computed channel by channel: the same number as the plain
definition, mean over pixels of (max channel - min channel) / value range, for every input kind the decoders give."""

from __future__ import annotations

import numpy as np
import pytest

from cxrtriage.imaging.arrays import colourfulness


def _reference(arr: np.ndarray) -> float:
    rgb = arr[..., :3].astype(np.float64)
    span = float(rgb.max() - rgb.min())
    return 0.0 if span <= 0 else float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / span)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [3, 4])
def test_colourfulness_is_the_channel_spread(dtype: type, channels: int) -> None:
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 200, size=(37, 29, channels)).astype(dtype)
    arr[..., 1] += 40  # green stands out: a colour image
    assert colourfulness(arr) == pytest.approx(_reference(arr), rel=1e-6)


def test_a_grey_film_saved_as_rgb_has_no_colour_and_one_odd_channel_counts() -> None:
    grey = np.repeat(np.arange(64 * 48, dtype=np.uint8).reshape(64, 48, 1) % 251, 3, axis=2)
    assert colourfulness(grey) == 0.0
    tinted = grey.copy()
    tinted[..., 2] = 0  # blue dropped everywhere: max - min is the grey level of each pixel
    assert colourfulness(tinted) == pytest.approx(_reference(tinted), rel=1e-6)
    assert colourfulness(tinted) > 0.3
    assert colourfulness(grey[..., 0]) is None
