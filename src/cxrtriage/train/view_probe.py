"""Fit the view probe (lateral vs frontal, :mod:`cxrtriage.backends.view_probe`) for a classifier bundle and store it
in its model.json. Run by ``cxrtriage export`` and on its own by ``cxrtriage fit-view-probe``.

Frontal films: the training and validation parts of NIH, pediatric (a sample) and JSRT. Laterals: every film of
``<data>/laterals`` (34; few, so the figures are 5-fold cross-validated). The refusal cut-off lies above every
frontal film's cross-validated score; the held-out test films of each source are then scored by the final probe
and counted (none may be refused). The numbers go into ``view_probe.validation``.
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
from cxrtriage.imaging.load import load_image

REVIEW_ABOVE = 0.5
REJECT_MARGIN = 0.05
#: with two lungs segmented a film is refused only above this (the pipeline's rule, :func:`frontal.check_view`)
REJECT_WITH_LUNGS_ABOVE = 0.99
N_PEDIATRIC = 1600
C = 0.1


def _inputs(paths: list[Path], backend: BundledOnnxBackend, segmenter: Segmenter) -> tuple[np.ndarray, np.ndarray]:
    """(probe inputs [N, D], whether a typical pair of lungs was segmented [N])."""
    rows, pairs = [], []
    for path in paths:
        px = load_image(path).pixels
        emb = backend.analyze(px).embedding
        anatomy = measure(segmenter.segment(px))
        rows.append(ViewProbe.inputs(emb, anatomy.view_features()))
        pairs.append(anatomy.typical_pair)
    return np.stack(rows), np.array(pairs, bool)


def refused(scores: np.ndarray, pairs: np.ndarray, reject_above: float, reject_with_lungs_above: float) -> np.ndarray:
    """Which films the pipeline refuses as lateral: above ``reject_above`` without a typical pair of lungs, above
    ``reject_with_lungs_above`` with one."""
    return (scores > reject_with_lungs_above) | ((scores > reject_above) & ~pairs)


def _sample(recs: list[Record], n: int, seed: int = 0) -> list[Record]:
    return random.Random(seed).sample(recs, min(n, len(recs))) if len(recs) > n else recs  # noqa: S311 - seeded for a reproducible sample, not a secret


def fit_view_probe(model_dir: Path, data_dir: Path, segmenter_dir: Path | None = None, write: bool = True) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    backend = BundledOnnxBackend(model_dir)
    segmenter = Segmenter(segmenter_dir)
    parts = load_split_records(data_dir)
    jsrt_all = jsrt_split(jsrt_records(data_dir))
    fit_frontal: list[Path] = []
    for part in ("train", "val"):
        fit_frontal += [r.path for r in parts[part] if r.dataset == "nih"]
        fit_frontal += [r.path for r in _sample([r for r in parts[part] if r.dataset == "kermany"], N_PEDIATRIC // 2)]
        fit_frontal += [r.path for r in jsrt_all[part]]
    laterals = lateral_paths(data_dir)
    (x_fr, pair_fr), (x_lat, pair_lat) = _inputs(fit_frontal, backend, segmenter), _inputs(laterals, backend, segmenter)
    x = np.concatenate([x_fr, x_lat])
    y = np.concatenate([np.zeros(len(fit_frontal), int), np.ones(len(laterals), int)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000))
    cv = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[
        :, 1
    ]
    reject_above = float(min(0.99, cv[y == 0].max() + REJECT_MARGIN))
    reject_with_lungs_above = max(REJECT_WITH_LUNGS_ABOVE, reject_above)
    model.fit(x, y)
    scaler, lr = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    test = {
        "nih_test": [r.path for r in parts["test"] if r.dataset == "nih"],
        "pediatric_test": [
            r.path for r in _sample([r for r in parts["test"] if r.dataset == "kermany"], N_PEDIATRIC // 2)
        ],
        "jsrt_test": [r.path for r in jsrt_all["test"]],
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
