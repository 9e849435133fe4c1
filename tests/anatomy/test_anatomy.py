"""The anatomy stage as a user meets it: lung and heart masks on real films, zones named from each lung, the
frontal-view check (refuse what is clearly not a frontal chest film, send doubtful frontal films to review),
evidence crops kept on the lung fields, and a pipeline that still works without the segmentation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cxrtriage.anatomy import frontal
from cxrtriage.anatomy.components import components, largest_component
from cxrtriage.anatomy.measure import Anatomy, Field, measure
from cxrtriage.errors import NotAChestXrayError

# ----------------------------------------------------------------------------- helpers


def _first_nih_path(data_dir: Path) -> Path:
    with open(data_dir / "nih" / "labels.csv", newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    path = data_dir / "nih" / row["file"]
    assert path.is_file(), path
    return path


def _nih_records(data_dir: Path, n_urgent: int, n_normal: int):
    from cxrtriage.data import nih_records

    recs = sorted(nih_records(data_dir), key=lambda r: r.image_id)
    urgent = [r for r in recs if r.urgent == 1][:n_urgent]
    normal = [r for r in recs if r.urgent == 0][:n_normal]
    assert len(urgent) == n_urgent and len(normal) == n_normal
    return urgent + normal


def _jsrt_test(data_dir: Path):
    from cxrtriage.data import jsrt_records, jsrt_split

    test = jsrt_split(jsrt_records(data_dir))["test"]
    if not test:
        pytest.skip("no JSRT/SCR test images in the data directory")
    return test


def _read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation, written here independently of the package's own."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):  # separable: rows first, then columns
        out |= padded[radius + dy : radius + dy + h, radius : radius + w]
    padded = np.pad(out, radius)
    out2 = np.zeros_like(mask)
    for dx in range(-radius, radius + 1):
        out2 |= padded[radius : radius + h, radius + dx : radius + dx + w]
    return out2


def _in_band(pred) -> bool:
    low, high = pred.review_band
    return low <= pred.score < high


# ----------------------------------------------------------------------------- connected components


def test_two_separate_blobs_are_two_components_largest_first():
    m = np.zeros((10, 12), bool)
    m[1:3, 1:3] = True  # 4 px
    m[5:9, 6:11] = True  # 20 px
    parts = components(m)
    assert len(parts) == 2
    assert parts[0].sum() == 20 and parts[1].sum() == 4
    assert (parts[0] | parts[1]).sum() == m.sum() and not (parts[0] & parts[1]).any()
    assert np.array_equal(largest_component(m), parts[0])
    assert parts[0].shape == m.shape and parts[0].dtype == bool


def test_diagonal_touch_is_two_components_under_4_connectivity():
    m = np.zeros((4, 4), bool)
    m[0:2, 0:2] = True
    m[2:4, 2:4] = True  # touches the first block only at a corner
    assert len(components(m)) == 2
    m[2, 1] = True  # now an edge neighbour joins them
    assert len(components(m)) == 1


def test_u_shape_joined_below_is_one_component():
    """Two arms that only meet on a later row: the union must merge runs found separately earlier."""
    m = np.zeros((6, 7), bool)
    m[0:5, 0] = True
    m[0:5, 6] = True
    m[5, 0:7] = True
    m[1, 3] = True  # a separate speck between the arms
    parts = components(m)
    assert len(parts) == 2
    assert parts[0].sum() == 5 + 5 + 7 and parts[1].sum() == 1


def test_empty_mask_has_no_components():
    m = np.zeros((5, 5), bool)
    assert components(m) == []
    lc = largest_component(m)
    assert lc.shape == (5, 5) and not lc.any()


# ----------------------------------------------------------------------------- segmentation on real films


@pytest.fixture(scope="module")
def segmenter():
    from cxrtriage.anatomy.masks import get_segmenter

    return get_segmenter()


@pytest.fixture(scope="module", params=["nih", "jsrt"])
def real_film(request, data_dir) -> Path:
    if request.param == "nih":
        return _first_nih_path(data_dir)
    return _jsrt_test(data_dir)[0].path


def test_segmenter_finds_both_lungs_and_heart_on_real_films(real_film, segmenter):
    from cxrtriage.imaging.load import load_image

    pixels = load_image(real_film).pixels
    anatomy = measure(segmenter.segment(pixels))
    assert [side for side, _ in anatomy.lungs] == ["right", "left"]
    assert anatomy.heart is not None and anatomy.heart.area_fraction > 0.02
    # radiological convention: the patient's right lung is on the image left
    assert anatomy.right_lung.centroid[0] < 0.5 < anatomy.left_lung.centroid[0]
    assert anatomy.right_lung.centroid[0] < anatomy.heart.centroid[0] < anatomy.left_lung.centroid[0]
    ctr = anatomy.cardiothoracic_ratio
    assert ctr is not None and 0.3 < ctr < 0.7
    assert anatomy.typical_pair and anatomy.frontal_problems() == []


def test_masks_are_at_the_original_image_size(real_film, segmenter):
    from cxrtriage.anatomy.masks import segment_image

    width, height = Image.open(real_film).size
    result = segment_image(real_film, segmenter)
    for name in ("lungs", "heart", "right_lung", "left_lung"):
        mask = getattr(result, name)
        assert mask.shape == (height, width), name
        assert mask.dtype == bool and mask.any(), name
    assert not (result.right_lung & result.left_lung).any()
    summary = result.summary()
    assert summary["lungs_found"] == ["right", "left"]
    assert summary["right_lung_area_px"] == int(result.right_lung.sum()) > 0
    assert (summary["width"], summary["height"]) == (width, height)


def test_masks_keep_the_original_size_when_decoded_reduced(data_dir, segmenter, monkeypatch):
    """A large image is decoded at 1/k of its size; the masks must still match the uploaded image."""
    from cxrtriage.anatomy.masks import segment_image
    from cxrtriage.imaging.load import load_image

    path = _first_nih_path(data_dir)
    width, height = Image.open(path).size
    monkeypatch.setenv("CXRTRIAGE_MAX_WORKING_PIXELS", str(width * height // 3))
    loaded = load_image(path)
    assert loaded.meta.reduction > 1 and loaded.pixels.shape != (height, width)
    result = segment_image(loaded, segmenter)
    assert result.lungs.shape == (height, width) and result.heart.shape == (height, width)
    monkeypatch.delenv("CXRTRIAGE_MAX_WORKING_PIXELS")
    reference = segment_image(path, segmenter)
    assert _dice(result.lungs, reference.lungs) > 0.9


def test_runtime_lungs_match_the_scr_masks_on_jsrt_test_films(data_dir, segmenter):
    from cxrtriage.anatomy.masks import segment_image

    test = _jsrt_test(data_dir)
    for rec in (test[0], test[-1]):
        result = segment_image(rec.path, segmenter)
        right, left = _read_mask(rec.masks["right_lung"]), _read_mask(rec.masks["left_lung"])
        assert result.lungs.shape == right.shape
        assert _dice(result.lungs, right | left) > 0.9, rec.image_id
        # each side against the same side: a right/left swap would fail here
        assert _dice(result.right_lung, right) > 0.85, rec.image_id
        assert _dice(result.left_lung, left) > 0.85, rec.image_id


# ----------------------------------------------------------------------------- zones


def test_zones_named_from_each_real_lung(data_dir, segmenter):
    from cxrtriage.imaging.load import load_image

    seg = segmenter.segment(load_image(_first_nih_path(data_dir)).pixels)
    anatomy = measure(seg)
    s = anatomy.lungs_grid.shape[0]

    def point(mask: np.ndarray, top: bool) -> tuple[float, float]:
        rows, cols = np.nonzero(mask)
        y0, y1 = rows.min(), rows.max()
        band = rows <= y0 + 0.2 * (y1 - y0) if top else rows >= y1 - 0.2 * (y1 - y0)
        i = int(np.argsort(cols[band])[band.sum() // 2])
        return (cols[band][i] + 0.5) / s, (rows[band][i] + 0.5) / s

    image_left = seg.low_res("right_lung")
    image_right = seg.low_res("left_lung")
    assert np.nonzero(image_left)[1].mean() < np.nonzero(image_right)[1].mean()
    assert anatomy.zone(*point(image_left, top=True)) == "right upper zone"
    assert anatomy.zone(*point(image_right, top=False)) == "left lower zone"
    assert anatomy.zone(*point(image_left, top=False)) == "right lower zone"
    assert anatomy.zone(*point(image_right, top=True)) == "left upper zone"


def _field(x0: float, y0: float, x1: float, y1: float) -> Field:
    return Field(box=(x0, y0, x1, y1), centroid=((x0 + x1) / 2, (y0 + y1) / 2), area_fraction=(x1 - x0) * (y1 - y0))


def _synthetic_anatomy(*, lungs: str = "both", confidence: float = 0.95, s: int = 64) -> Anatomy:
    """A frontal-looking anatomy: image-left (patient's right) lung x 0.1-0.4, image-right lung x 0.6-0.9."""
    grid = np.zeros((s, s), bool)
    right = left = None
    if lungs in ("both", "right"):
        right = _field(0.1, 0.1, 0.4, 0.9)
        grid[int(0.1 * s) : int(0.9 * s), int(0.1 * s) : int(0.4 * s)] = True
    if lungs in ("both", "left"):
        left = _field(0.6, 0.1, 0.9, 0.9)
        grid[int(0.1 * s) : int(0.9 * s), int(0.6 * s) : int(0.9 * s)] = True
    heart = _field(0.4, 0.5, 0.7, 0.85) if lungs != "none" else None
    return Anatomy(right_lung=right, left_lung=left, heart=heart, lungs_grid=grid, confidence=confidence)


def test_zone_names_on_a_synthetic_anatomy():
    a = _synthetic_anatomy()
    assert a.zone(0.25, 0.2) == "right upper zone"  # upper part of the image-left lung
    assert a.zone(0.25, 0.5) == "right middle zone"
    assert a.zone(0.75, 0.8) == "left lower zone"  # lower part of the image-right lung
    assert a.zone(0.5, 0.7) == "central (mediastinal) zone"  # between the lungs, over the heart
    assert _synthetic_anatomy(lungs="none").zone(0.25, 0.2) is None


# ----------------------------------------------------------------------------- frontal.check


MAX = 0.6


def test_synthetic_anatomies_are_what_they_claim():
    assert _synthetic_anatomy().typical_pair
    assert not _synthetic_anatomy(confidence=0.5).typical_pair
    assert not _synthetic_anatomy(lungs="none").typical_pair


def test_typical_frontal_with_usual_layout_passes_without_reasons():
    assert frontal.check(_synthetic_anatomy(), 0.9 * MAX, MAX) == []
    assert frontal.check(_synthetic_anatomy(), None, None) == []


@pytest.mark.parametrize(
    "anatomy",
    [_synthetic_anatomy(lungs="none"), _synthetic_anatomy(confidence=0.5)],
    ids=["no-lungs", "unconfident-pair"],
)
def test_unusual_layout_without_a_typical_pair_is_refused(anatomy):
    with pytest.raises(NotAChestXrayError, match="layout"):
        frontal.check(anatomy, 1.05 * MAX, MAX)


def test_typical_pair_with_slightly_unusual_layout_goes_to_review_not_refused():
    reasons = frontal.check(_synthetic_anatomy(), 1.05 * MAX, MAX)
    assert reasons and all(isinstance(r, str) and r for r in reasons)
    assert any("layout" in r for r in reasons)


def test_layout_far_from_every_chest_film_is_refused_even_with_two_lungs():
    with pytest.raises(NotAChestXrayError, match="layout"):
        frontal.check(_synthetic_anatomy(), 1.6 * MAX, MAX)
    # just below the hard limit it is review, not refusal
    assert frontal.check(_synthetic_anatomy(), 1.45 * MAX, MAX)


def test_missing_lung_on_a_chest_like_layout_is_review_not_refusal():
    """A white-out hemithorax is a sick patient: triaged for a human, never refused."""
    reasons = frontal.check(_synthetic_anatomy(lungs="right"), 0.9 * MAX, MAX)
    assert any("left lung" in r for r in reasons)


def test_check_view_refuses_reviews_or_passes():
    with pytest.raises(NotAChestXrayError, match="lateral"):
        frontal.check_view(0.9, reject_above=0.83, review_above=0.5)
    reasons = frontal.check_view(0.6, reject_above=0.83, review_above=0.5)
    assert len(reasons) == 1 and "lateral" in reasons[0]
    assert frontal.check_view(0.3, reject_above=0.83, review_above=0.5) == []
    assert frontal.check_view(None, reject_above=0.83, review_above=0.5) == []


def test_check_view_with_two_lungs_reviews_unless_the_probe_is_near_certain():
    """The segmenter finds two "lungs" on some laterals: those are refused only above the higher cut-off, and a
    film with two lungs between the cut-offs goes to a human instead of away."""
    reasons = frontal.check_view(
        0.95, reject_above=0.83, review_above=0.5, typical_pair=True, reject_with_lungs_above=0.99
    )
    assert len(reasons) == 1 and "lateral" in reasons[0]
    with pytest.raises(NotAChestXrayError, match="0.99"):
        frontal.check_view(0.995, reject_above=0.83, review_above=0.5, typical_pair=True, reject_with_lungs_above=0.99)
    assert (
        frontal.check_view(0.995, reject_above=0.83, review_above=0.5, typical_pair=True) != []
    )  # older bundles: never


# ----------------------------------------------------------------------------- the pipeline


def test_real_laterals_are_refused_or_sent_to_review(engine, data_dir):
    from cxrtriage.data import lateral_paths

    paths = list(dict.fromkeys(lateral_paths(data_dir)))  # labels.csv may list a file twice
    assert len(paths) >= 10
    refused, accepted = [], []
    for p in paths:
        try:
            pred = engine.predict(p, save_crops=False)
        except NotAChestXrayError as exc:
            refused.append((p.name, str(exc)))
        else:
            accepted.append((p.name, pred))
    # A lateral whose masks still look like a typical pair of lungs is sent to review rather than refused (the
    # view probe alone never turns a typical pair away: sick children scored high with one classifier), so the
    # refusal share is below the probe's cross-validated one; every lateral not refused must reach a human. A lateral
    # may also be refused by the similarity or chest-layout gate: its message then names what it is not.
    assert len(refused) >= 0.6 * len(paths), [n for n, _ in accepted]
    assert all("lateral" in msg or "frontal chest radiograph" in msg for _, msg in refused), refused
    for name, pred in accepted:
        assert not (pred.label == "Non-Urgent" and not pred.needs_review), name
        assert pred.needs_review and pred.label == "Urgent", name
        assert any("atypical" in w for w in pred.warnings), (name, pred.warnings)


def test_nih_frontal_reports_anatomy(engine, data_dir):
    pred = engine.predict(_first_nih_path(data_dir), save_crops=False)
    assert pred.anatomy is not None
    assert pred.anatomy["lungs_found"] == ["right", "left"]
    ctr = pred.anatomy["cardiothoracic_ratio"]
    assert isinstance(ctr, float) and 0.3 < ctr < 0.7
    assert "cardiothoracic_ratio_note" in pred.anatomy and pred.anatomy["segmenter"]
    assert not any("atypical" in w for w in pred.warnings)


def test_crops_lie_on_the_lungs_and_non_urgent_crops_are_few_and_strong(engine, data_dir, segmenter):
    from cxrtriage.anatomy.masks import segment_image

    n_crops, n_non_urgent = 0, 0
    for rec in _nih_records(data_dir, n_urgent=5, n_normal=5):
        pred = engine.predict(rec.path, save_crops=True)
        masks = segment_image(rec.path, segmenter)
        lungs = masks.lungs
        height, width = lungs.shape
        near = _grow(lungs, round(0.05 * width))
        for c in pred.crops:
            n_crops += 1
            assert c.x + c.w <= width and c.y + c.h <= height
            cx, cy = c.x + c.w // 2, c.y + c.h // 2
            share = float(lungs[c.y : c.y + c.h, c.x : c.x + c.w].mean())
            assert near[cy, cx] or share >= 0.3, (rec.image_id, c, share)
            assert c.region and "zone" in c.region
        if pred.label == "Non-Urgent":
            n_non_urgent += 1
            assert len(pred.crops) <= 1, rec.image_id
            assert all(c.strength is not None and c.strength >= 0.5 for c in pred.crops), (rec.image_id, pred.crops)
    assert n_crops > 0 and n_non_urgent > 0  # the checks above were exercised


def _atypical_film(src: Path, out: Path) -> list[tuple[int, int, int, int]]:
    """An ICU-looking film: rotated ~10 degrees, 10% cut off the image-left side, lines and tubes, burned-in text
    blocks in two corners. Returns the text rectangles (x0, y0, x1, y1)."""
    img = Image.open(src).convert("L").rotate(10, resample=Image.BILINEAR, expand=False, fillcolor=0)
    w, h = img.size
    img = img.crop((int(0.10 * w), 0, w, h))
    w, h = img.size
    d = ImageDraw.Draw(img)
    d.line([(int(0.55 * w), 0), (int(0.5 * w), int(0.45 * h)), (int(0.45 * w), int(0.7 * h))], fill=250, width=6)
    d.line(
        [(int(0.9 * w), int(0.15 * h)), (int(0.7 * w), int(0.35 * h)), (int(0.62 * w), int(0.55 * h))],
        fill=235,
        width=4,
    )
    d.line([(0, int(0.8 * h)), (int(0.3 * w), int(0.6 * h))], fill=245, width=3)
    rects = [
        (int(0.02 * w), int(0.02 * h), int(0.30 * w), int(0.08 * h)),
        (int(0.70 * w), int(0.90 * h), int(0.97 * w), int(0.97 * h)),
    ]
    for x0, y0, x1, y1 in rects:
        d.rectangle((x0, y0, x1, y1), fill=255)
        for k in range(x0 + 3, x1 - 6, 9):  # dark "letters" on the white label
            d.rectangle((k, y0 + 3, k + 5, y1 - 3), fill=20)
    img.save(out)
    return rects


def test_atypical_frontal_is_triaged_not_refused(engine, data_dir, segmenter, tmp_path):
    from cxrtriage.anatomy.masks import segment_image

    for rec in _nih_records(data_dir, n_urgent=2, n_normal=2):
        path = tmp_path / f"icu_{rec.image_id}"
        rects = _atypical_film(rec.path, path)
        lungs = segment_image(path, segmenter).lungs
        for x0, y0, x1, y1 in rects:  # the text blocks really lie outside the lungs
            assert lungs[y0:y1, x0:x1].mean() < 0.05, rec.image_id
        try:
            pred = engine.predict(path)
        except NotAChestXrayError as exc:  # pragma: no cover - the failure itself
            pytest.fail(f"{rec.image_id}: an atypical frontal film was refused: {exc}")
        assert pred.anatomy is not None and pred.anatomy["lungs_found"] == ["right", "left"], rec.image_id
        atypical = [w for w in pred.warnings if "atypical" in w]
        if pred.needs_review:  # review must be explained: by the score's review band or by a warning
            assert _in_band(pred) or atypical, (rec.image_id, pred.score, pred.warnings)
        if atypical:
            assert pred.label == "Urgent" and pred.needs_review, rec.image_id
        for c in pred.crops:
            cx, cy = c.x + c.w / 2, c.y + c.h / 2
            for x0, y0, x1, y1 in rects:
                assert not (x0 <= cx <= x1 and y0 <= cy <= y1), (rec.image_id, c, (x0, y0, x1, y1))


# ----------------------------------------------------------------------------- without the segmentation


def test_pipeline_without_segmenter_still_triages_and_says_so(engine, data_dir, tmp_path):
    from cxrtriage.pipeline import Triage

    path = _first_nih_path(data_dir)
    bare = Triage(backend=engine.backend, crops_dir=tmp_path, segmenter=None)
    pred = bare.predict(path)
    assert pred.anatomy is None
    assert any("segmentation is not installed" in w for w in pred.warnings), pred.warnings
    with_seg = engine.predict(path, save_crops=False)
    assert pred.score == with_seg.score  # the segmentation never changes the score
    assert pred.label in ("Urgent", "Non-Urgent")
    assert all(c.region and "zone" in c.region for c in pred.crops)


def test_default_segmenter_absent_gives_the_same_warning(engine, data_dir, tmp_path, monkeypatch):
    from cxrtriage.pipeline import Triage

    monkeypatch.setenv("CXRTRIAGE_SEGMENTER_DIR", str(tmp_path / "no-segmenter"))
    bare = Triage(backend=engine.backend, crops_dir=tmp_path)
    assert bare.segmenter is None
    pred = bare.predict(_first_nih_path(data_dir), save_crops=False)
    assert pred.anatomy is None
    assert any("segmentation is not installed" in w for w in pred.warnings)


def test_pipeline_without_segmenter_keeps_similar_training_cases(engine, data_dir, tmp_path):
    from cxrtriage.pipeline import Triage

    path = _first_nih_path(data_dir)
    with_seg = engine.predict(path, save_crops=False)
    assert any(p.source.startswith("training_case:") for p in with_seg.provenance)
    bare = Triage(backend=engine.backend, crops_dir=tmp_path, segmenter=None)
    pred = bare.predict(path, save_crops=False)
    assert any(p.source.startswith("training_case:") for p in pred.provenance), pred.provenance


def test_largest_component_is_the_first_of_components_ties_to_the_raster_first() -> None:
    """``largest_component`` paints only the largest piece: the same mask as ``components(...)[0]``, and of two
    pieces of equal size the one whose first pixel comes first in raster order."""
    rng = np.random.default_rng(26)
    for _ in range(20):
        mask = rng.random((40, 37)) > 0.55
        assert np.array_equal(largest_component(mask), components(mask)[0])
    tie = np.zeros((10, 10), dtype=bool)
    tie[6:8, 1:3] = True  # lower piece, 4 px
    tie[1:3, 6:8] = True  # upper piece, 4 px: first in raster order
    assert np.array_equal(largest_component(tie), tie & (np.arange(10)[:, None] < 5))
    assert not largest_component(np.zeros((5, 5), dtype=bool)).any()
