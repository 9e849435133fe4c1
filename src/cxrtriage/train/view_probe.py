"""Fit the view probe (lateral vs frontal, :mod:`cxrtriage.backends.view_probe`) for a classifier bundle and store it
in its model.json. Run by ``cxrtriage export`` and on its own by ``cxrtriage fit-view-probe``.

Frontal films: the training and validation parts of NIH, pediatric (a sample), JSRT and Shenzhen. Laterals: every
film of ``<data>/laterals`` (34; few, so the figures are 5-fold cross-validated). Each film is analysed as the pipeline
analyses it: its exposed field (:func:`~cxrtriage.imaging.exposed_field.analysed_region`), then the classifier and
the segmentation. The acquisition variants of :data:`cxrtriage.imaging.acquisition.VARIANTS` (black canvas, wide
borders, rotation by +-15 degrees, aspect 0.75 and 1.33) of the first :data:`N_VARIANT_FILMS` fit films of each
source (NIH, pediatric, JSRT, Shenzhen) are scored by the fold model that did not see their film.

The probe learns from the films and, inside each training fold, from the augmented laterals and the frontal
films' acquisition variants; its C is chosen by nested CV (:mod:`cxrtriage.train.view_probe_cv`, which says why).
The two refusal cut-offs lie :data:`~cxrtriage.train.view_probe_cv.REJECT_MARGIN` above every frontal film's
nested-cross-validated score, variants included: ``reject_above`` above all of them, ``reject_with_lungs_above`` above
those where a typical pair of lungs was segmented (but never below ``reject_above``, never above
:data:`~cxrtriage.train.view_probe_cv.REJECT_WITH_LUNGS_CAP`). The held-out test films of each source are then scored
by the final probe and counted (none may be refused). The numbers go into ``view_probe.validation``.

Why the cut-off for films with two lungs is fitted (issue 24): it was a fixed 0.99, and 5 of the 34 laterals with
two segmented "lungs" scored 0.972-0.981 (in-sample) and went to review instead of being refused, while no held-out
frontal film or acquisition variant came near 0.99. ``scripts/view_gate.py`` measures the bundled probe on every
held-out frontal film and variant and on the laterals (``prototype/eval/view_gate.json``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
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
from cxrtriage.train.view_probe_cv import (
    C_GRID,
    LATERAL_AUGMENTATIONS,
    REJECT_MARGIN,
    REJECT_WITH_LUNGS_CAP,
    REVIEW_ABOVE,
    ProbeData,
    choose_c,
    cv_scores,
    fit,
    folds,
    outcome,
    refused,
)

N_PEDIATRIC = 1600
#: the classifier's sources whose frontal films the probe learns from (Shenzhen only where its data is)
SOURCES = ("nih", "kermany", "shenzhen")
#: fit films per source (NIH, pediatric, JSRT, Shenzhen; the first in the fit list) whose acquisition variants are
#: scored by the fold model that did not see their film, and learnt from by the folds that did
N_VARIANT_FILMS = 40
FRONTAL_VARIANTS = {name: make for name, make in VARIANTS.items() if name != "original"}


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


def _augmented_inputs(
    paths: list[Path],
    augmentations: dict[str, Callable[[np.ndarray], np.ndarray]],
    backend: BundledOnnxBackend,
    segmenter: Segmenter,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs [M, D], typical pair [M], index into ``paths`` of the film each row was made from [M]) of every
    augmentation of each film."""
    rows, pairs, film = [], [], []
    for i, path in enumerate(paths):
        px = load_image(path).pixels
        for make in augmentations.values():
            x, pair = _row(np.ascontiguousarray(make(px), dtype=np.float32), backend, segmenter)
            rows.append(x)
            pairs.append(pair)
            film.append(i)
    return np.stack(rows), np.array(pairs, bool), np.array(film, int)


def _sample(recs: list[Record], n: int, seed: int = 0) -> list[Record]:
    return random.Random(seed).sample(recs, min(n, len(recs))) if len(recs) > n else recs  # noqa: S311 - seeded for a reproducible sample, not a secret


def _films(data_dir: Path) -> tuple[list[Path], dict[str, list[Path]], dict[str, list[Path]]]:
    """(frontal fit films, the same per source, held-out frontal test films per set)."""
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
    test = {
        "nih_test": [r.path for r in parts["test"] if r.dataset == "nih"],
        "pediatric_test": [
            r.path for r in _sample([r for r in parts["test"] if r.dataset == "kermany"], N_PEDIATRIC // 2)
        ],
        "jsrt_test": [r.path for r in jsrt_all["test"]],
        "shenzhen_test": [r.path for r in parts["test"] if r.dataset == "shenzhen"],
    }
    return fit_frontal, by_source, test


def probe_data(data_dir: Path, backend: BundledOnnxBackend, segmenter: Segmenter) -> tuple[ProbeData, int]:
    """The probe inputs of the fit films (frontal, then the laterals) and of their augmented rows: the acquisition
    variants of the first :data:`N_VARIANT_FILMS` fit films per source and every lateral augmentation; and the
    number of frontal variant films."""
    fit_frontal, by_source, _ = _films(data_dir)
    laterals = lateral_paths(data_dir)
    variant_films = [p for paths in by_source.values() for p in paths[:N_VARIANT_FILMS]]
    (x_fr, pair_fr), (x_lat, pair_lat) = _inputs(fit_frontal, backend, segmenter), _inputs(laterals, backend, segmenter)
    x_var, pair_var, var_film = _augmented_inputs(variant_films, FRONTAL_VARIANTS, backend, segmenter)
    x_la, pair_la, la_film = _augmented_inputs(laterals, LATERAL_AUGMENTATIONS, backend, segmenter)
    film_row = {p: i for i, p in enumerate(fit_frontal)}
    data = ProbeData(
        x=np.concatenate([x_fr, x_lat]),
        y=np.concatenate([np.zeros(len(fit_frontal), int), np.ones(len(laterals), int)]),
        pairs=np.concatenate([pair_fr, pair_lat]),
        x_aug=np.concatenate([x_var, x_la]),
        aug_of=np.concatenate([[film_row[variant_films[f]] for f in var_film], len(fit_frontal) + la_film]).astype(int),
        aug_pairs=np.concatenate([pair_var, pair_la]),
    )
    return data, len(variant_films)


def fit_view_probe(model_dir: Path, data_dir: Path, segmenter_dir: Path | None = None, write: bool = True) -> dict:
    backend = BundledOnnxBackend(model_dir)
    segmenter = Segmenter(segmenter_dir)
    data, n_variant_films = probe_data(data_dir, backend, segmenter)
    everything = np.arange(len(data.y))
    # nested CV: each outer fold's C chosen by an inner CV on its training part; the cut-offs and every cv5 figure
    # come from these out-of-sample scores
    cv, cv_aug, fold_cs = cv_scores(data, folds(data.y), lambda train: choose_c(data, train))
    result = outcome(data, cv, cv_aug)
    reject_above, reject_with_lungs_above = result["reject_above"], result["reject_with_lungs_above"]
    c = choose_c(data, everything)
    model = fit(data, everything, c)
    scaler, lr = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    held_out = {}
    for name, paths in _films(data_dir)[2].items():
        xt, pt = _inputs(paths, backend, segmenter)
        s = model.predict_proba(xt)[:, 1]
        out = refused(s, pt, reject_above, reject_with_lungs_above)
        held_out[name] = {"n": len(paths), "refused": int(out.sum()), "review": int(((s > REVIEW_ABOVE) & ~out).sum())}
    fr, lat, var = data.y == 0, data.y == 1, data.frontal_aug()
    fr_all, pairs_all = np.concatenate([cv[fr], cv_aug[var]]), np.concatenate([data.pairs[fr], data.aug_pairs[var]])
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
        "fit": f"scikit-learn LogisticRegression(C={c}, class_weight=balanced) on standardised inputs; C chosen from "
        f"{list(C_GRID)} by 5-fold CV; trained on the films, the laterals' {len(LATERAL_AUGMENTATIONS)} "
        f"augmentations and the acquisition variants of {n_variant_films} frontal films",
        "validation": {
            "frontal_fit_images": int(fr.sum()),
            "laterals": int(lat.sum()),
            "cv5_rule": "the pipeline's: refused above reject_above without a typical pair of lungs, above "
            "reject_with_lungs_above with one; review above review_above otherwise",
            "cv5_nested": "each outer fold trains on its films, the augmentations of its laterals and the variants "
            "of its frontal films, with C chosen by an inner 5-fold CV on its training part (most laterals refused, "
            "then fewest passed as frontal, then the lowest cut-off); every film and variant is scored by the fold "
            "model that did not see its film",
            "cv5_c_per_fold": fold_cs,
            "lateral_augmentations": list(LATERAL_AUGMENTATIONS),
            "cut_off_rule": f"reject_above: {REJECT_MARGIN} above the highest cross-validated frontal score, "
            f"acquisition variants included; reject_with_lungs_above: {REJECT_MARGIN} above the highest of those "
            f"with a typical pair of lungs, at least reject_above, at most {REJECT_WITH_LUNGS_CAP}",
            "variant_films": n_variant_films,
            "variants": list(FRONTAL_VARIANTS),
            "cv5_variant_refused": result["variant_refused"],
            "cv5_variant_top_scores": sorted((round(float(v), 4) for v in cv_aug[var]), reverse=True)[:10],
            "cv5_frontal_top_score_with_pair": round(float(fr_all[pairs_all].max()), 4),
            "cv5_lateral_scores_with_pair": sorted(round(float(v), 4) for v in cv[lat & data.pairs]),
            "laterals_with_typical_pair": int(data.pairs[lat].sum()),
            "cv5_laterals_refused": result["laterals_refused"],
            "cv5_laterals_review": result["laterals_review"],
            "cv5_laterals_passed_as_frontal": result["laterals_passed_as_frontal"],
            "cv5_frontal_review": result["frontal_review"],
            "cv5_frontal_refused": result["frontal_refused"],
            "cv5_lateral_scores": sorted(round(float(v), 4) for v in cv[lat]),
            "cv5_frontal_top_scores": sorted((round(float(v), 4) for v in cv[fr]), reverse=True)[:10],
            "held_out_frontal": held_out,
        },
    }
    if write:
        keep_measurements(model_dir)  # a model.json from before card.json: its measured results must not be lost
        meta_path = Path(model_dir) / META_FILE
        write_bundle_config({**BundleConfig.load(meta_path).to_dict(), "view_probe": block}, meta_path)
    return block
