"""Matplotlib figures for the prototype notebooks and the write-up: curves, calibration, results with boxes.

Every number drawn comes from :mod:`cxrtriage.evaluation.metrics` (the code ``eval_metrics.py`` uses), so a plot and the
metrics file can never disagree. matplotlib is imported lazily (the ``notebooks`` extra): serving never needs it.
Each function draws on a given ``ax`` (or a new figure) and returns the figure, so notebooks stay one-liners.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.evaluation import metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cxrtriage.schema import Prediction

URGENT_COLOUR, NON_URGENT_COLOUR, BOX_COLOUR = "#c0392b", "#2471a3", "#f1c40f"


def pyplot() -> Any:
    from cxrtriage.optional import require

    return require("matplotlib.pyplot", extra="notebooks", purpose="figures")


def _axes(ax: Axes | None, size: tuple[float, float] = (4.5, 4.0)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, new_ax = pyplot().subplots(figsize=size)
    return fig, new_ax


def roc_plot(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    thresholds: Mapping[str, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """ROC curve per named set ``{name: (y_true, scores)}``, AUC in the legend, each set's operating point marked by a
    dot of the set's colour. A threshold shared by every marked set is named once, in the title (three sets at the
    shipped threshold would print three labels over each other); thresholds that differ are written at their dots."""
    fig, ax = _axes(ax)
    marked = {name: t for name, t in (thresholds or {}).items() if name in curves}
    shared = next(iter(marked.values())) if len(set(marked.values())) == 1 else None
    for name, (y, s) in curves.items():
        roc = metrics.roc_curve(y, s)
        (line,) = ax.plot(
            roc["fpr"], roc["tpr"], lw=1.8, label=f"{name} (AUC {metrics.roc_auc(y, s):.3f}, n={len(np.asarray(y))})"
        )
        if name in marked:
            op = metrics.operating_point(y, s, marked[name])
            ax.plot(1 - op.specificity, op.sensitivity, "o", color=line.get_color(), mec="black", ms=5, zorder=3)
            if shared is None:
                ax.annotate(
                    f"threshold {marked[name]:.2f}",
                    (1 - op.specificity, op.sensitivity),
                    textcoords="offset points",
                    xytext=(8, -12),
                    fontsize=8,
                )
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(
        xlabel="1 - specificity (false-positive rate)",
        ylabel="sensitivity (recall)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC" if shared is None else f"ROC (dots: threshold {shared:.2f})",
    )
    ax.legend(loc="lower right", fontsize=8)
    return fig


def precision_recall_plot(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], *, ax: Axes | None = None) -> Figure:
    """Precision-recall curve per named set, average precision and prevalence (the chance level) in the legend."""
    fig, ax = _axes(ax)
    for name, (y, s) in curves.items():
        pr = metrics.precision_recall_curve(y, s)
        (line,) = ax.step(
            pr["recall"], pr["precision"], where="post", lw=1.8, label=f"{name} (AP {pr['average_precision']:.3f})"
        )
        ax.axhline(float(np.mean(np.asarray(y))), ls=":", lw=1, color=line.get_color())
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Precision-recall (dotted: prevalence)",
    )
    ax.legend(loc="lower left", fontsize=8)
    return fig


def reliability_plot(
    y_true: ArrayLike, probs: ArrayLike, *, n_bins: int = 10, name: str = "", ax: Axes | None = None
) -> Figure:
    """Reliability diagram: observed urgent rate against mean score per equal-width bin, with counts and ECE."""
    return reliability_curves({name: (y_true, probs)}, n_bins=n_bins, ax=ax)


def reliability_curves(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]], *, n_bins: int = 10, ax: Axes | None = None
) -> Figure:
    """Reliability diagram of each named set ``{name: (y_true, probs)}`` on one axes, ECE in the legend and the
    images per bin beside each point (in the set's colour when there are several sets, so counts are attributable)."""
    fig, ax = _axes(ax)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    for name, (y_true, probs) in curves.items():
        rows = [r for r in metrics.reliability_table(y_true, probs, n_bins) if r["n"]]
        ece = metrics.expected_calibration_error(y_true, probs, n_bins)
        conf = [r["mean_confidence"] for r in rows]
        obs = [r["observed_rate"] for r in rows]
        (line,) = ax.plot(conf, obs, "o-", lw=1.8, label=f"{name + ': ' if name else ''}ECE {ece:.3f}")
        for r in rows:
            ax.annotate(
                str(r["n"]),
                (r["mean_confidence"], r["observed_rate"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="grey" if len(curves) == 1 else line.get_color(),
            )
    title = f"Calibration ({n_bins} bins; numbers: images per bin)"
    ax.set(xlabel="mean calibrated score in bin", ylabel="observed fraction urgent", xlim=(0, 1), ylim=(0, 1.01))
    if len(curves) == 1:
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
    else:  # above the axes, titled: inside, it would hide one set's points wherever it went
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, title=title, frameon=False)
    return fig


def score_histogram(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    threshold: float | None = None,
    review_band: Sequence[float] | None = None,
    name: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Score distribution by true class, with the threshold and the review band shaded."""
    fig, ax = _axes(ax, (5.0, 3.2))
    y, s = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    bins = np.linspace(0, 1, 26)
    ax.hist(
        s[y == 0], bins=bins, alpha=0.6, color=NON_URGENT_COLOUR, label=f"truly non-urgent (n={int((y == 0).sum())})"
    )
    ax.hist(s[y == 1], bins=bins, alpha=0.6, color=URGENT_COLOUR, label=f"truly urgent (n={int((y == 1).sum())})")
    if review_band is not None:
        ax.axvspan(
            review_band[0], review_band[1], color="orange", alpha=0.2, label="review band (-> Urgent, needs review)"
        )
    if threshold is not None:
        ax.axvline(threshold, color="black", lw=1.2, label=f"threshold {threshold:.2f}")
    ax.set(
        xlabel="calibrated urgency score", ylabel="images", title=f"Score by true class{' — ' + name if name else ''}"
    )
    ax.legend(fontsize=7)
    return fig


def curve_plot(
    series: Mapping[str, Sequence[float]],
    *,
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    ylabel: str = "",
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Line plot of named series (loss curves, learning curves)."""
    fig, ax = _axes(ax, (5.0, 3.2))
    for name, values in series.items():
        xs = list(x) if x is not None else list(range(1, len(values) + 1))
        ax.plot(xs[: len(values)], values, marker="o" if len(values) < 40 else None, ms=3, lw=1.6, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return fig


def _crop_image(path: str) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, ValueError):
        return None


def prediction_plot(pixels: ArrayLike, prediction: Prediction, *, title: str = "", max_side: int = 256) -> Figure:
    """The radiograph (downsampled to at most ``max_side`` px) with numbered evidence boxes, then the crops.

    Boxes are in original-image pixels (as in the JSON); the image is shown in the same coordinate frame.
    """
    plt = pyplot()
    from matplotlib.patches import Rectangle

    img = np.asarray(pixels, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    h, w = img.shape
    step = max(1, int(np.ceil(max(h, w) / max_side)))
    shown = img[::step, ::step]
    crops = list(prediction.crops)
    fig, axes = plt.subplots(
        1,
        1 + max(1, len(crops)),
        figsize=(3.2 * (1 + max(1, len(crops))), 3.4),
        gridspec_kw={"width_ratios": [1.6] + [1] * max(1, len(crops))},
    )
    ax0 = axes[0]
    ax0.imshow(shown, cmap="gray", extent=(0, w, h, 0))
    for i, c in enumerate(crops, start=1):
        colour = "#8e44ad" if c.source == "medgemma" else BOX_COLOUR
        ax0.add_patch(Rectangle((c.x, c.y), c.w, c.h, fill=False, ec=colour, lw=2))
        ax0.text(
            c.x + 4,
            c.y + 4,
            str(i),
            color="black",
            fontsize=9,
            fontweight="bold",
            va="top",
            bbox={"facecolor": colour, "edgecolor": "none", "pad": 1},
        )
    colour = URGENT_COLOUR if prediction.label == "Urgent" else NON_URGENT_COLOUR
    review = " · needs review" if prediction.needs_review else ""
    ax0.set_title(
        f"{title}\n{prediction.label} {prediction.score:.2f} (thr {prediction.threshold:.2f}){review}",
        fontsize=9,
        color=colour,
    )
    ax0.axis("off")
    if not crops:
        axes[1].text(
            0.5,
            0.5,
            "no evidence box\n(no positive activation\nor no activation map)",
            ha="center",
            va="center",
            fontsize=9,
        )
        axes[1].axis("off")
    for i, c in enumerate(crops, start=1):
        ax = axes[i]
        thumb = _crop_image(c.thumb_path) if c.thumb_path and Path(c.thumb_path).is_file() else None
        if thumb is None:  # crops not saved: cut it from the image itself
            thumb = img[c.y : c.y + c.h, c.x : c.x + c.w]
        ax.imshow(thumb, cmap="gray")
        who = (
            "MedGemma box (unverified)"
            if c.source == "medgemma"
            else f"strength {c.strength:.2f}"
            if c.strength is not None
            else ""
        )
        ax.set_title(f"crop {i}: {c.region or ''}\n{who}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- radiographs in committed notebooks

#: the longest side, in pixels, of any PNG that shows a radiograph in a committed notebook (tests check it)
THUMBNAIL_PX = 256
#: the data sources whose images a committed notebook may show: NIH ChestX-ray14 (public domain) and the pediatric
#: set of Kermany et al. (CC BY 4.0). Shenzhen, JSRT, the laterals and the DICOM samples are never drawn.
SHOWABLE_SOURCES = ("nih", "kermany")
IMAGE_CREDIT = (
    "Radiographs shown: NIH ChestX-ray14 (NIH Clinical Center, public domain; Wang et al., CVPR 2017) and the "
    "pediatric set of Kermany et al., Cell 2018 (CC BY 4.0, doi:10.17632/rscbjbr9sj), downsampled to at most "
    f"{THUMBNAIL_PX} px. Images of research-use-only sources are never shown."
)


def _png(fig: Figure, side: int) -> bytes:
    """The figure as PNG bytes at a DPI that keeps its longest side at most ``side`` pixels."""
    import io

    w, h = fig.get_size_inches()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=side / max(w, h))
    pyplot().close(fig)
    return buf.getvalue()


def _shown(pixels: ArrayLike, side: int) -> tuple[np.ndarray, int, int]:
    img = np.asarray(pixels, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    h, w = img.shape
    step = max(1, int(np.ceil(max(h, w) / side)))
    return img[::step, ::step], h, w


def prediction_thumbnail(
    pixels: ArrayLike, prediction: Prediction, *, title: str = "", side: int = THUMBNAIL_PX
) -> bytes:
    """A PNG of at most ``side`` x ``side`` pixels: the radiograph (downsampled) with its numbered evidence boxes and
    a one-line label. What a committed notebook shows instead of :func:`prediction_plot` (whose crops panel is wider
    than a thumbnail); the crops' coordinates go in a table beside it."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    shown, h, w = _shown(pixels, side)
    fig = plt.figure(figsize=(2.56, 2.56))
    ax = fig.add_axes((0, 0, 1, 0.86))
    ax.imshow(shown, cmap="gray", extent=(0, w, h, 0))
    for i, c in enumerate(prediction.crops, start=1):
        colour = "#8e44ad" if c.source == "medgemma" else BOX_COLOUR
        ax.add_patch(Rectangle((c.x, c.y), c.w, c.h, fill=False, ec=colour, lw=1.2))
        ax.text(
            c.x + 3, c.y + 3, str(i), color="black", fontsize=6, va="top", bbox={"fc": colour, "ec": "none", "pad": 0.5}
        )
    ax.set_aspect("auto")
    ax.axis("off")
    colour = URGENT_COLOUR if prediction.label == "Urgent" else NON_URGENT_COLOUR
    review = ", review" if prediction.needs_review else ""
    fig.text(0.5, 0.965, title, ha="center", va="center", fontsize=6.5)
    fig.text(
        0.5,
        0.9,
        f"{prediction.label} {prediction.score:.2f}{review}",
        ha="center",
        va="center",
        fontsize=7,
        color=colour,
    )
    return _png(fig, side)


def thumbnail_grid(
    images: Sequence[ArrayLike], titles: Sequence[str], *, cols: int = 3, side: int = THUMBNAIL_PX
) -> bytes:
    """A PNG of at most ``side`` px on its longest side holding several downsampled radiographs with short titles."""
    plt = pyplot()
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.56, 2.56 * rows / cols * 1.2), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        ax.imshow(_shown(img, side // cols)[0], cmap="gray", aspect="auto")
        ax.set_title(title, fontsize=5.5, pad=1.5)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.05, hspace=0.25)
    return _png(fig, side)
