"""The analysis image (imaging/analysis_size.py): films of 1024 px or more are analysed box-averaged by a whole
factor; smaller ones exactly as decoded."""

from __future__ import annotations

import numpy as np
import pytest

from cxrtriage.imaging.analysis_size import ANALYSIS_SIDE, analysis_factor, analysis_image


@pytest.mark.parametrize(
    ("height", "width", "k"),
    [(512, 512, 1), (1023, 800, 1), (1024, 1024, 2), (600, 1024, 2), (1535, 1200, 2), (2048, 2048, 4), (3000, 2500, 5)],
)
def test_factor_keeps_the_longer_side_between_one_and_two_analysis_sides(height, width, k):
    assert analysis_factor(height, width) == k
    if k > 1:
        assert ANALYSIS_SIDE <= max(height, width) // k < 2 * ANALYSIS_SIDE


def test_a_film_below_twice_the_side_is_analysed_as_decoded():
    pixels = np.random.default_rng(0).random((700, 900), dtype=np.float32)
    out, k = analysis_image(pixels)
    assert k == 1 and out is pixels


def test_reduction_is_the_block_mean_and_drops_the_partial_edge():
    rng = np.random.default_rng(1)
    pixels = (rng.integers(0, 256, (1027, 1030)) / 255.0).astype(np.float32)
    out, k = analysis_image(pixels)
    assert k == 2 and out.shape == (513, 515) and out.dtype == np.float32
    expected = pixels[:1026, :1030].astype(np.float64).reshape(513, 2, 515, 2).mean(axis=(1, 3)).astype(np.float32)
    np.testing.assert_array_equal(out, expected)  # exact: 8-bit values sum exactly in float64, in any order


def test_a_bright_spot_survives_as_its_share_of_the_block():
    pixels = np.zeros((2048, 2048), np.float32)
    pixels[100, 200] = 1.0
    out, k = analysis_image(pixels)
    assert k == 4 and out[25, 50] == np.float32(1 / 16) and out.sum() == pytest.approx(1 / 16)
