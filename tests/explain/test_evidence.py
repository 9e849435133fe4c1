"""Tests for CAM evidence boxes, anatomical zones and crop thumbnails (offline, fast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtriage.anatomy.components import label_components
from cxrtriage.backends.cam import class_activation_map
from cxrtriage.explain import evidence
from cxrtriage.explain.evidence import (
    EvidenceBox,
    anatomical_zone,
    cam_peak,
    find_evidence_boxes,
    save_crop_thumbnails,
)
from cxrtriage.schema import Crop

W, H = 600, 400  # non-square original image
GRID = 16
CELL_W, CELL_H = W / GRID, H / GRID  # 37.5 x 25 original pixels per cell


def cell_extent(i: int, j: int) -> tuple[float, float, float, float]:
    """Original-pixel extent (x0, y0, x1, y1) of map cell (row i, column j)."""
    return j * CELL_W, i * CELL_H, (j + 1) * CELL_W, (i + 1) * CELL_H


def make_cam(hot: dict[tuple[int, int], float], background: float = 0.0) -> np.ndarray:
    """CAM built through class_activation_map from a synthetic 8-channel feature map."""
    rng = np.random.default_rng(0)
    weight = np.zeros(8, dtype=np.float32)
    weight[0] = 2.0
    fmap = rng.normal(size=(8, GRID, GRID)).astype(np.float32)  # ignored channels
    fmap[0] = background / 2.0
    for (i, j), value in hot.items():
        fmap[0, i, j] = value / 2.0
    cam = class_activation_map(fmap, weight)
    assert cam.dtype == np.float32 and cam.shape == (GRID, GRID)
    return cam


def covers(box: EvidenceBox, extent: tuple[float, float, float, float], slack: float) -> bool:
    x0, y0, x1, y1 = extent
    return (
        box.x <= x0 + 1
        and box.y <= y0 + 1
        and box.x + box.w >= x1 - 1
        and box.y + box.h >= y1 - 1
        # ...and not much larger than the cell
        and box.x >= x0 - slack * CELL_W
        and box.y >= y0 - slack * CELL_H
        and box.x + box.w <= x1 + slack * CELL_W
        and box.y + box.h <= y1 + slack * CELL_H
    )


# ----------------------------------------------------------------------------- CAM


def test_cam_is_weighted_channel_sum() -> None:
    rng = np.random.default_rng(1)
    fmap = rng.normal(size=(5, 4, 3))
    weight = rng.normal(size=5)
    cam = class_activation_map(fmap, weight)
    assert cam.shape == (4, 3) and cam.dtype == np.float32
    np.testing.assert_allclose(cam, np.einsum("c,chw->hw", weight, fmap), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "fmap, weight, message",
    [
        (np.zeros((4, 4)), np.zeros(4), "dimensions"),
        (np.zeros((3, 4, 4)), np.zeros(4), "channels"),
        (np.full((2, 4, 4), np.nan), np.zeros(2), "NaN"),
        (np.zeros((2, 4, 4)), np.array([1.0, np.inf]), "NaN or infinite"),
        (np.zeros((2, 0, 4)), np.zeros(2), "empty"),
    ],
)
def test_cam_rejects_bad_inputs(fmap: np.ndarray, weight: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_activation_map(fmap, weight)


# ----------------------------------------------------------------------------- boxes


def test_single_hot_cell_box_covers_cell_in_original_pixels() -> None:
    cam = make_cam({(3, 2): 5.0}, background=-1.0)
    boxes = find_evidence_boxes(cam, (W, H))
    assert len(boxes) == 1
    box = boxes[0]
    assert covers(box, cell_extent(3, 2), slack=0.5), box
    x0, y0, x1, y1 = cell_extent(3, 2)
    assert x0 <= box.peak_xy[0] < x1 and y0 <= box.peak_xy[1] < y1
    assert 0.9 < box.strength <= 1.0
    assert box.region == "right upper zone"  # image left, top third
    assert all(isinstance(v, int) for v in (box.x, box.y, box.w, box.h))


def test_two_hot_cells_ranked_by_strength() -> None:
    cam = make_cam({(12, 13): 2.5, (3, 2): 5.0})
    boxes = find_evidence_boxes(cam, (W, H), rel_threshold=0.3)
    assert len(boxes) == 2
    strong, weak = boxes
    assert strong.strength > weak.strength
    assert covers(strong, cell_extent(3, 2), slack=0.5)
    assert covers(weak, cell_extent(12, 13), slack=1.0)
    assert sum(b.strength for b in boxes) <= 1.0 + 1e-9
    assert weak.region == "left lower zone"  # image right, bottom third


def test_weak_region_below_relative_threshold_is_not_boxed() -> None:
    cam = make_cam({(12, 13): 1.0, (3, 2): 5.0})
    boxes = find_evidence_boxes(cam, (W, H))  # 1.0 < 0.5 * peak
    assert len(boxes) == 1 and covers(boxes[0], cell_extent(3, 2), slack=0.5)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_no_positive_evidence_gives_no_boxes(value: float) -> None:
    cam = np.full((GRID, GRID), value, dtype=np.float32)
    assert find_evidence_boxes(cam, (W, H)) == []
    cam[5, 5] = value - 3.0
    assert find_evidence_boxes(cam, (W, H)) == []


def test_max_boxes_respected_and_strongest_kept() -> None:
    cam = make_cam({(2, 2): 5.0, (2, 12): 4.5, (12, 7): 4.0})
    assert len(find_evidence_boxes(cam, (W, H))) == 3
    boxes = find_evidence_boxes(cam, (W, H), max_boxes=2)
    assert len(boxes) == 2
    assert covers(boxes[0], cell_extent(2, 2), slack=0.5)
    assert covers(boxes[1], cell_extent(2, 12), slack=0.5)
    assert find_evidence_boxes(cam, (W, H), max_boxes=0) == []


def test_tiny_regions_below_min_strength_dropped() -> None:
    hot = {(i, j): 5.0 for i in range(4, 8) for j in range(3, 7)}  # 16-cell block
    hot[12, 12] = 5.0  # single cell: ~1/17 of the positive mass
    cam = make_cam(hot)
    boxes = find_evidence_boxes(cam, (W, H))
    assert len(boxes) == 2
    assert 0.05 <= boxes[1].strength < 0.1
    kept = find_evidence_boxes(cam, (W, H), min_strength=0.1)
    assert len(kept) == 1
    big = kept[0]
    assert big.x <= 3 * CELL_W + 1 and big.x + big.w >= 7 * CELL_W - 1
    assert big.y <= 4 * CELL_H + 1 and big.y + big.h >= 8 * CELL_H - 1
    assert big.strength > 0.85


def test_boxes_clipped_to_image_at_borders() -> None:
    cam = make_cam({(0, 0): 5.0, (GRID - 1, GRID - 1): 5.0})
    boxes = find_evidence_boxes(cam, (W, H))
    assert len(boxes) == 2
    for box in boxes:
        assert box.x >= 0 and box.y >= 0 and box.w >= 1 and box.h >= 1
        assert box.x + box.w <= W and box.y + box.h <= H
    corners = sorted((b.x, b.y, b.x + b.w, b.y + b.h) for b in boxes)
    assert corners[0][:2] == (0, 0)
    assert corners[1][2:] == (W, H)


def test_tiny_image_still_gives_valid_boxes() -> None:
    cam = make_cam({(8, 8): 5.0})
    (box,) = find_evidence_boxes(cam, (3, 2))
    assert box.w >= 1 and box.h >= 1 and box.x + box.w <= 3 and box.y + box.h <= 2


def test_components_use_8_connectivity() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # diagonal chain: one component
    mask[5, 0] = True  # isolated
    labels, n = label_components(mask)
    assert n == 2
    assert labels[0, 0] == labels[1, 1] == labels[2, 2] != labels[5, 0]
    assert (labels[~mask] == 0).all()


def _bfs_labels(mask: np.ndarray) -> np.ndarray:
    """The pixel-by-pixel breadth-first search the evidence stage used before the run-based labels (the
    reference: same components, numbered in the raster order of their first pixel)."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    n = 0
    for r0, c0 in zip(*np.nonzero(mask)):
        if labels[r0, c0]:
            continue
        n += 1
        labels[r0, c0] = n
        queue = [(int(r0), int(c0))]
        while queue:
            r, c = queue.pop()
            for rr in range(max(0, r - 1), min(h, r + 2)):
                for cc in range(max(0, c - 1), min(w, c + 2)):
                    if mask[rr, cc] and not labels[rr, cc]:
                        labels[rr, cc] = n
                        queue.append((rr, cc))
    return labels


def _cell_labels_reference(labels: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Per cell, the most frequent positive label of its working pixels, the lower one on a tie (a loop)."""
    out = np.zeros(shape, dtype=np.int32)
    for i in range(shape[0]):
        for j in range(shape[1]):
            block = labels[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor]
            values, counts = np.unique(block[block > 0], return_counts=True)
            out[i, j] = values[np.argmax(counts)] if values.size else 0
    return out


@pytest.mark.parametrize("density", [0.1, 0.3, 0.5, 0.7])
def test_run_labels_and_cell_labels_equal_the_pixel_search_they_replace(density: float) -> None:
    """Boxes, their order and their strengths hang on the label numbers: the run-based labels (evidence stage's
    speed) must number every component exactly as the breadth-first search did, on masks of every texture."""
    rng = np.random.default_rng(int(density * 10))
    for _ in range(20):
        mask = rng.random((64, 64)) < density
        labels, n = label_components(mask)
        assert np.array_equal(labels, _bfs_labels(mask)) and n == labels.max()
        assert np.array_equal(evidence._cell_labels(labels, (16, 16), 4), _cell_labels_reference(labels, (16, 16), 4))


@pytest.mark.parametrize(
    "cam, size, kwargs, message",
    [
        (np.zeros(4), (W, H), {}, "dimensions"),
        (np.full((4, 4), np.inf), (W, H), {}, "NaN or infinite"),
        (np.ones((4, 4)), (0, H), {}, "width"),
        (np.ones((4, 4)), (W,), {}, "width, height"),
        (np.ones((4, 4)), (W, H), {"rel_threshold": 0.0}, "rel_threshold"),
        (np.ones((4, 4)), (W, H), {"min_strength": 1.5}, "min_strength"),
        (np.ones((4, 4)), (W, H), {"max_boxes": -1}, "max_boxes"),
    ],
)
def test_find_boxes_rejects_bad_inputs(cam: np.ndarray, size: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        find_evidence_boxes(cam, size, **kwargs)


# ----------------------------------------------------------------------------- zones


def test_anatomical_zone_follows_radiological_convention() -> None:
    assert anatomical_zone(0.25 * W, 0.8 * H, W, H) == "right lower zone"
    assert anatomical_zone(0.8 * W, 0.2 * H, W, H) == "left upper zone"
    assert anatomical_zone(0.2 * W, 0.5 * H, W, H) == "right middle zone"
    assert anatomical_zone(0.5 * W, 0.5 * H, W, H).startswith("central (mediastinal)")
    with pytest.raises(ValueError):
        anatomical_zone(1.0, 1.0, 0, H)
    with pytest.raises(ValueError):
        anatomical_zone(float("nan"), 1.0, W, H)


# ----------------------------------------------------------------------------- cam_peak


def test_cam_peak_inside_hot_cell() -> None:
    cam = make_cam({(11, 4): 3.0, (2, 9): 1.0}, background=-0.5)
    x, y = cam_peak(cam, (W, H))
    x0, y0, x1, y1 = cell_extent(11, 4)
    assert x0 <= x < x1 and y0 <= y < y1


# ----------------------------------------------------------------------------- thumbnails

NAME = re.compile(r"^[0-9a-f]{16}\.png$")


def _box(x: int, y: int, w: int, h: int) -> EvidenceBox:
    return EvidenceBox(x=x, y=y, w=w, h=h, strength=0.5, peak_xy=(x, y), region="right upper zone")


def _pixels() -> np.ndarray:
    return np.random.default_rng(2).random((H, W), dtype=np.float32)


def test_thumbnails_written_as_pngs_with_box_coords(tmp_path: Path) -> None:
    boxes = [_box(200, 100, 100, 50), _box(0, 0, 50, 100)]
    crops = save_crop_thumbnails(_pixels(), boxes, tmp_path)
    assert len(crops) == 2
    # box 1: margin 10x5 -> 120x60 crop -> 224x112; box 2: clipped at the corner -> 55x110 -> 112x224
    for crop, box, size in zip(crops, boxes, [(224, 112), (112, 224)]):
        assert isinstance(crop, Crop)
        assert (crop.x, crop.y, crop.w, crop.h) == (box.x, box.y, box.w, box.h)
        assert crop.region == box.region and crop.strength == box.strength
        path = Path(crop.thumb_path)
        assert path.parent == tmp_path and path.is_file() and NAME.match(path.name)
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.size == size
            assert im.mode == "L"
            im.verify()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(c.thumb_path).name for c in crops)


def test_thumbnail_names_are_random(tmp_path: Path) -> None:
    box = [_box(10, 10, 40, 40)]
    first = save_crop_thumbnails(_pixels(), box, tmp_path)[0].thumb_path
    second = save_crop_thumbnails(_pixels(), box, tmp_path)[0].thumb_path
    assert first != second
    assert all(NAME.match(p.name) for p in tmp_path.iterdir())  # no temp files left
    assert len(list(tmp_path.iterdir())) == 2


def test_thumbnail_content_matches_crop(tmp_path: Path) -> None:
    pixels = np.zeros((H, W), dtype=np.float32)
    pixels[:, W // 2 :] = 1.0
    (crop,) = save_crop_thumbnails(pixels, [_box(400, 100, 100, 100)], tmp_path, thumb_size=32)
    with Image.open(crop.thumb_path) as im:
        arr = np.asarray(im)
    assert arr.shape == (32, 32) and arr.min() == 255  # all from the white half


def test_default_directory_is_config_crops_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "crops"
    monkeypatch.setenv("CXRTRIAGE_CROPS_DIR", str(target))
    (crop,) = save_crop_thumbnails(_pixels(), [_box(10, 10, 20, 20)])
    assert Path(crop.thumb_path).parent == target


def test_failed_write_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    from cxrtriage import files  # the thumbnails' atomic write lives there

    real_replace = files.os.replace

    def flaky_replace(src: str, dst: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        save_crop_thumbnails(_pixels(), [_box(0, 0, 30, 30), _box(50, 50, 30, 30)], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_thumbnails_validate_inputs(tmp_path: Path) -> None:
    assert save_crop_thumbnails(_pixels(), [], tmp_path) == []
    with pytest.raises(ValueError, match="does not fit"):
        save_crop_thumbnails(_pixels(), [_box(590, 10, 20, 20)], tmp_path)
    with pytest.raises(ValueError, match="dimensions"):
        save_crop_thumbnails(np.zeros((H, W, 3), np.float32), [_box(0, 0, 5, 5)], tmp_path)
    bad = _pixels()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_crop_thumbnails(bad, [_box(0, 0, 5, 5)], tmp_path)
    with pytest.raises(ValueError, match="thumb_size"):
        save_crop_thumbnails(_pixels(), [_box(0, 0, 5, 5)], tmp_path, thumb_size=0)
    assert list(tmp_path.iterdir()) == []


def test_end_to_end_boxes_to_thumbnails(tmp_path: Path) -> None:
    cam = make_cam({(12, 3): 4.0, (4, 12): 3.0}, background=-0.2)
    boxes = find_evidence_boxes(cam, (W, H))
    crops = save_crop_thumbnails(_pixels(), boxes, tmp_path)
    assert [c.region for c in crops] == ["right lower zone", "left upper zone"]
    assert all(Path(c.thumb_path).is_file() for c in crops)


# ----------------------------------------------------------------------------- runtime deps


def test_runtime_module_does_not_import_torch_or_scipy() -> None:
    tree = ast.parse(Path(evidence.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "scipy", "cv2", "skimage"}
