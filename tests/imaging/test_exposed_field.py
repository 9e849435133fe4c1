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


def _refine_on_the_whole_image(bright: np.ndarray, box: tuple[int, int, int, int], reach: int) -> tuple[int, ...]:
    """The edge refinement as it was before it read only the strips it searches (the reference): every row's and
    column's share of bright pixels over the whole image."""

    def edge(content: np.ndarray, start: int, stop: int) -> int | None:
        step = 1 if stop >= start else -1
        return next((i for i in range(start, stop, step) if content[i] > 0.05), None)

    h, w = bright.shape
    x0, y0, x1, y1 = box
    rows = bright[:, x0:x1].mean(axis=1)
    top = edge(rows, max(0, y0 - reach), min(h, y0 + reach))
    bottom = edge(rows, min(h, y1 + reach) - 1, max(0, y1 - reach) - 1)
    y0, y1 = top if top is not None else y0, bottom + 1 if bottom is not None else y1
    cols = bright[y0:y1].mean(axis=0)
    left = edge(cols, max(0, x0 - reach), min(w, x0 + reach))
    right = edge(cols, min(w, x1 + reach) - 1, max(0, x1 - reach) - 1)
    return left if left is not None else x0, y0, right + 1 if right is not None else x1, y1


@pytest.mark.parametrize("seed", range(6))
def test_edges_refined_on_strips_equal_the_whole_image_threshold(seed: int) -> None:
    """The field stage thresholds only the rows and columns it searches (speed): the edges must be the ones the
    whole-image threshold gave, for boxes near, at and across the image's border."""
    from cxrtriage.imaging.exposed_field import DARK_TOL, _refine

    rng = np.random.default_rng(seed)
    image = acquisition.on_canvas(_film(seed=seed), noise=0.02 * (seed % 2), marker=bool(seed % 3))
    h, w = image.shape
    level = float(image.min()) + DARK_TOL
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        box = (x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1)))
        reach = int(rng.integers(1, 12))
        assert _refine(image, level, box, reach) == _refine_on_the_whole_image(image > level, box, reach)


def test_the_local_range_is_the_range_of_each_3x3_neighbourhood() -> None:
    from cxrtriage.imaging.exposed_field import _local_range

    x = np.random.default_rng(1).random((37, 29)).astype(np.float32)
    p = np.pad(x, 1, mode="edge")
    views = [p[i : i + 37, j : j + 29] for i in range(3) for j in range(3)]
    assert np.array_equal(_local_range(x), np.max(views, axis=0) - np.min(views, axis=0))


def test_clip_unit_copies_only_what_has_values_outside_0_1() -> None:
    from cxrtriage.imaging.preprocess import clip_unit

    inside = np.random.default_rng(2).random((20, 30)).astype(np.float32)
    assert clip_unit(inside) is inside  # a decoded image: no copy
    for outside in (inside * 3 - 1, np.where(inside > 0.5, np.nan, inside)):
        got = clip_unit(outside)
        assert got is not outside and np.array_equal(got, np.clip(outside, 0.0, 1.0), equal_nan=True)
