"""The exposed field (no data needed): a film on a canvas or inside wide borders is found, text on the canvas is left
out, a film that fills its image is left exactly as it is, and boxes map back to the original pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrtriage.imaging import acquisition
from cxrtriage.imaging.exposed_field import find_field, to_original_pixels, whole
from cxrtriage.schema import Crop


def _film(h: int = 300, w: int = 260, seed: int = 0) -> np.ndarray:
    """A film-like image: smooth structure plus noise, dark lung-like blobs, no uniform region."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.15, 0.9, (12, 10)).astype(np.float32)
    x = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    x = x + rng.normal(0, 0.03, x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0)


def _close(field, box: tuple[int, int, int, int], tol: int) -> bool:
    return all(abs(a - b) <= tol for a, b in zip((field.x0, field.y0, field.x1, field.y1), box, strict=True))


def test_a_film_that_fills_its_image_is_left_alone() -> None:
    film = _film()
    field = find_field(film)
    assert field.is_whole and field.crop(film) is film


@pytest.mark.parametrize("saturated", ["bottom", "side"])
def test_a_saturated_white_part_of_the_film_is_never_cut_off(saturated: str) -> None:
    """Bright, flat regions (an over-exposed abdomen, a shoulder) belong to the film: only dark flat margins are
    canvas."""
    film = _film()
    if saturated == "bottom":
        film[200:] = 1.0
    else:
        film[:, 180:] = 1.0
    assert find_field(film).is_whole


def test_a_film_on_a_black_canvas_is_found_without_its_own_borders() -> None:
    film = _film()
    image = acquisition.on_canvas(film)
    by, bx = round(acquisition.FILM_BORDER * 300), round(acquisition.FILM_BORDER * 260)
    field = find_field(image)
    assert _close(field, (bx, by, bx + 260, by + 300), tol=4), field


def test_noise_and_a_marker_on_the_canvas_do_not_move_the_field() -> None:
    film = _film()
    field = find_field(acquisition.on_canvas(film, noise=0.02, marker=True))
    by, bx = round(acquisition.FILM_BORDER * 300), round(acquisition.FILM_BORDER * 260)
    assert _close(field, (bx, by, bx + 260, by + 300), tol=4), field


def test_wide_borders_are_cut_off() -> None:
    image = acquisition.with_borders(_film())
    field = find_field(image)
    assert _close(field, (52, 60, 52 + 260, 60 + 300), tol=4), field


def test_a_blank_or_tiny_field_is_left_to_the_gate() -> None:
    """Nothing clearly film-like: the whole image goes to the gate, which judges (and refuses) it."""
    assert find_field(np.zeros((200, 200), np.float32)).is_whole
    speck = np.zeros((400, 400), np.float32)
    speck[10:30, 10:30] = _film(20, 20)
    assert find_field(speck).is_whole


def test_boxes_on_the_field_are_reported_in_original_pixels() -> None:
    """A box on the analysed field: shifted by the field's offset, then scaled to the original resolution."""
    image = acquisition.on_canvas(_film())
    field = find_field(image)
    crop = Crop(x=10, y=20, w=30, h=40, thumb_path="t.png")
    h, w = image.shape
    (out,) = to_original_pixels([crop], (w, h), (2 * w, 2 * h), field)
    assert (out.x, out.y) == (2 * (10 + field.x0), 2 * (20 + field.y0)) and (out.w, out.h) == (60, 80)
    assert field.xywh((2 * w, 2 * h))[:2] == [2 * field.x0, 2 * field.y0]
    assert to_original_pixels([crop], (w, h), (w, h), whole((h, w))) == [crop]


def test_block_means_are_the_means_of_each_block_and_drop_the_ragged_edge() -> None:
    from cxrtriage.imaging.exposed_field import _block_mean

    x = np.random.default_rng(0).random((103, 66)).astype(np.float32)
    got = _block_mean(x, 4)
    want = x[:100, :64].reshape(25, 4, 16, 4).mean(axis=(1, 3))
    assert got.shape == (25, 16) and np.allclose(got, want, atol=1e-6)
    assert np.array_equal(_block_mean(x, 1), x)
