"""Issue 24: the gate never refuses a frontal film in another frame (black canvas, wide borders, rotation by 15
degrees, squashed or stretched), and refuses laterals. Built from the shared radiographs' test films; the full
measurement, before and after, is ``scripts/gate_robustness.py`` (prototype/eval/gate_robustness.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrtriage.data import jsrt_records, jsrt_split, lateral_paths
from cxrtriage.errors import NotAChestXrayError
from cxrtriage.imaging.acquisition import FILM_BORDER, VARIANTS
from cxrtriage.imaging.load import load_image

#: test films per source here (the script measures more)
PER_SOURCE = 6
#: the share of the shared laterals refused when the exposed field was added (28 of 34): a floor against regressions
MIN_LATERAL_REFUSAL = 0.8


@pytest.fixture(scope="module")
def frontal_films(data_dir: Path, test_records) -> list[Path]:
    by_source = {name: sorted(r.path for r in test_records if r.dataset == name) for name in ("nih", "kermany")}
    jsrt = [r.path for r in jsrt_split(jsrt_records(data_dir))["test"]]
    return [p for paths in (*by_source.values(), jsrt) for p in paths[:PER_SOURCE]]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_frontal_variant_is_refused(engine, frontal_films: list[Path], variant: str) -> None:
    """Each variant of each test film is triaged (an atypical one may go to review as Urgent), never refused."""
    refused = []
    for path in frontal_films:
        try:
            engine.predict(VARIANTS[variant](load_image(path).pixels), save_crops=False)
        except NotAChestXrayError as exc:
            refused.append(f"{path.name}: {exc}")
    assert refused == []


def test_boxes_of_a_film_on_a_canvas_point_at_the_same_place(engine, data_dir: Path) -> None:
    """The film analysed on a canvas gives the score and the evidence of the film alone, and its boxes, in the
    canvas's pixels, lie where the film's own boxes lie once shifted by where the film sits."""
    path = next(p for p in sorted((data_dir / "nih" / "images").glob("*.png")) if engine.predict(p).crops)
    film = load_image(path).pixels
    alone = engine.predict(film)
    framed = engine.predict(VARIANTS["canvas"](film))
    assert framed.image["exposed_field"][:2] == pytest.approx(
        [round(FILM_BORDER * film.shape[1]), round(FILM_BORDER * film.shape[0])], abs=5
    )
    assert abs(framed.score - alone.score) < 0.05 and framed.label == alone.label
    dx, dy = round(FILM_BORDER * film.shape[1]), round(FILM_BORDER * film.shape[0])
    a = alone.crops[0]
    b = max(framed.crops, key=lambda c: _iou((a.x + dx, a.y + dy, a.w, a.h), (c.x, c.y, c.w, c.h)))
    assert _iou((a.x + dx, a.y + dy, a.w, a.h), (b.x, b.y, b.w, b.h)) > 0.5


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_laterals_are_refused(engine, data_dir: Path, record_property) -> None:
    """The lateral refusal rate is reported (``record_property``) and may not fall below the floor."""
    paths = lateral_paths(data_dir)
    refused = 0
    for path in paths:
        try:
            engine.predict(path, save_crops=False)
        except NotAChestXrayError:
            refused += 1
    rate = refused / len(paths)
    record_property("lateral_refusal_rate", rate)
    print(f"laterals refused: {refused} of {len(paths)} ({rate:.2f})")
    assert rate >= MIN_LATERAL_REFUSAL
