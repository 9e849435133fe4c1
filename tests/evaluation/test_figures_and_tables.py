"""Figures and tables the notebooks show: numbers drawn come from cxrtriage.evaluation.metrics, boxes are where the
JSON says."""

from __future__ import annotations

import numpy as np
import pytest

from cxrtriage.evaluation import example_cases, metrics, result_tables
from cxrtriage.schema import Crop, ModelInfo, Prediction, Provenance

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from cxrtriage.evaluation import figures  # noqa: E402


def _pred(label: str = "Urgent", score: float = 0.8, crops: int = 2, review: bool = False) -> Prediction:
    return Prediction(
        label=label,
        score=score,
        explanation="test",
        threshold=0.3,
        review_band=(0.25, 0.35),
        needs_review=review,
        crops=[
            Crop(
                x=10 + 30 * i, y=20, w=25, h=40, thumb_path="/nonexistent.png", region="right lower zone", strength=0.5
            )
            for i in range(crops)
        ],
        provenance=[
            Provenance(source="prior_report", snippet="Small effusion.", relation="supports"),
            Provenance(
                source="training_case:nih/x.png", snippet="similar", relation="similar_case", similarity=0.912345
            ),
        ],
        model=ModelInfo(name="m", version="0", sha256="0"),
        timings_ms={"decode": 1.0, "model": 2.0, "total": 5.0},
    )


@pytest.fixture()
def ys() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 30)
    return y, np.clip(y * 0.4 + rng.uniform(0, 0.6, size=y.size), 0, 1)


def test_roc_legend_carries_the_metrics_auc(ys) -> None:
    y, s = ys
    fig = figures.roc_plot({"adult": (y, s)}, thresholds={"adult": 0.5})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"adult (AUC {metrics.roc_auc(y, s):.3f}, n=60)"]


def test_reliability_plot_shows_the_ece(ys) -> None:
    y, s = ys
    fig = figures.reliability_plot(y, s, name="adult")
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert f"ECE {metrics.expected_calibration_error(y, s):.3f}" in legend


def test_pr_and_histogram_and_curves_render(ys) -> None:
    y, s = ys
    pr = metrics.precision_recall_curve(y, s)
    assert 0 < pr["average_precision"] <= 1 and len(pr["precision"]) == len(pr["recall"])
    assert figures.precision_recall_plot({"a": (y, s)}).axes
    assert figures.score_histogram(y, s, threshold=0.3, review_band=(0.25, 0.35)).axes
    assert figures.curve_plot({"loss": [3, 2, 1]}, xlabel="step").axes[0].get_xlabel() == "step"


def test_prediction_plot_draws_one_numbered_box_per_crop() -> None:
    from matplotlib.patches import Rectangle

    pixels = np.linspace(0, 1, 200 * 160, dtype=np.float32).reshape(200, 160)
    fig = figures.prediction_plot(pixels, _pred(crops=2), title="case")
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert [(b.get_x(), b.get_y(), b.get_width(), b.get_height()) for b in boxes] == [
        (10, 20, 25, 40),
        (40, 20, 25, 40),
    ]
    assert len(fig.axes) == 3 and "Urgent 0.80" in fig.axes[0].get_title()
    empty = figures.prediction_plot(pixels, _pred("Non-Urgent", 0.1, crops=0))
    assert "no evidence box" in empty.axes[1].texts[0].get_text()


def test_thumbnails_for_committed_notebooks_stay_within_256_px() -> None:
    """What a committed notebook may embed: a radiograph PNG no larger than THUMBNAIL_PX on either side."""
    import io

    from PIL import Image

    big = np.linspace(0, 1, 1024 * 900, dtype=np.float32).reshape(1024, 900)
    for png in (
        figures.prediction_thumbnail(big, _pred(crops=2), title="case"),
        figures.prediction_thumbnail(big[:, :, None].repeat(3, axis=2), _pred("Non-Urgent", 0.1, crops=0)),
        figures.thumbnail_grid([big] * 6, [f"t{i}" for i in range(6)]),
        figures.thumbnail_grid([big], ["one"], cols=1),
    ):
        w, h = Image.open(io.BytesIO(png)).size
        assert max(w, h) <= figures.THUMBNAIL_PX and min(w, h) > 100


def test_tables_flatten_predictions() -> None:
    p = _pred(review=True)
    row = result_tables.summary_row("ex", p)
    assert row["needs_review"] is True and row["crops"] == 2 and row["provenance"] == 2
    assert result_tables.provenance_rows(p)[1]["similarity"] == 0.912
    assert [r["crop"] for r in result_tables.crop_rows(p)] == [1, 2]
    timing = result_tables.timing_rows({"a": p})[0]
    assert list(timing) == ["example", "decode_ms", "model_ms", "total_ms"]


def test_headline_and_subgroup_rows_read_an_evaluation_report(ys) -> None:
    y, s = ys
    report = {
        **metrics.summarize(y, s, 0.5, n_boot=50),
        "threshold": 0.5,
        "target_recall": {
            "target": 0.95,
            "threshold": 0.2,
            "operating_point": metrics.operating_point(y, s, 0.2).to_dict(),
        },
        "subgroups": {"sex": metrics.to_jsonable(metrics.subgroup_metrics(y, s, ["F", "M"] * 30, 0.5))},
    }
    row = result_tables.headline_rows({"adult": report})[0]
    assert row["n"] == 60 and row["AUC [95% CI]"].startswith(f"{metrics.roc_auc(y, s):.3f} [")
    assert row["sensitivity there"] == round(metrics.operating_point(y, s, 0.2).sensitivity, 3)
    assert {r["group"] for r in result_tables.subgroup_rows(report)} == {"F", "M"}


def test_pick_cases_shows_misses_and_review_cases_from_every_group() -> None:
    ids = [f"c{i}" for i in range(8)]
    truth = [True, False, False, True, True, True, False, True]
    labels = ["Urgent", "Non-Urgent", "Urgent", "Non-Urgent", "Urgent", "Urgent", "Non-Urgent", "Urgent"]
    review = [False, False, False, False, True, False, False, False]
    groups = ["adult"] * 5 + ["child"] * 3
    picked = example_cases.pick_cases(ids, truth, labels, review, groups, n=7)
    cats = {c for _, c in picked}
    assert {"true_positive", "true_negative", "false_positive", "false_negative", "needs_review"} <= cats
    assert {"c5", "c6"} <= {i for i, _ in picked}  # the child group is represented before any cell repeats
    assert len(example_cases.pick_cases(ids, truth, labels, review, groups, n=50)) == 8
    with pytest.raises(ValueError, match="same length"):
        example_cases.pick_cases(ids, truth[:-1], labels, review, groups)


def test_roc_marks_every_set_s_operating_point_and_names_a_shared_threshold_once(ys) -> None:
    y, s = ys
    curves = {"adult": (y, s), "child": (y, 1 - s / 2), "site": (y[:20], s[:20])}
    ax = figures.roc_plot(curves, thresholds=dict.fromkeys(curves, 0.5)).axes[0]
    lines = {ln.get_label(): ln.get_color() for ln in ax.get_lines()}
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(dots) == 3 and {d.get_color() for d in dots} == {c for k, c in lines.items() if "AUC" in k}
    for d, (name, (yy, ss)) in zip(dots, curves.items()):
        op = metrics.operating_point(yy, ss, 0.5)
        assert (d.get_xdata()[0], d.get_ydata()[0]) == (1 - op.specificity, op.sensitivity), name
    assert ax.get_title() == "ROC (dots: threshold 0.50)" and not ax.texts  # no three labels over each other


def test_reliability_curves_give_each_set_its_ece(ys) -> None:
    y, s = ys
    fig = figures.reliability_curves({"adult": (y, s), "site": (y[:20], s[:20])})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[1:] == [
        f"adult: ECE {metrics.expected_calibration_error(y, s):.3f}",
        f"site: ECE {metrics.expected_calibration_error(y[:20], s[:20]):.3f}",
    ]
