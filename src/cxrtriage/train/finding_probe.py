"""Fit the lung-opacity output (:mod:`cxrtriage.backends.finding_probe`) of a classifier bundle on the RSNA
radiologists' re-read of the shared NIH images, and store it in model.json under ``finding_probes``.

A logistic regression on the classifier's own image embedding and urgency logit: a second head trained inside
the CNN on these 190 training films reached validation AUC 0.54 (prototype/eval/gen2_candidate), so the finding
is read from what the network already computes. Patients of the committed split's training part fit it (the
regularisation chosen by 5-fold cross-validation grouped by patient, inside them); the validation and test
patients, never fitted on, give the held-out AUC with a patient-bootstrap interval. The explanation names the
finding only when that held-out AUC is at least ``NAME_MIN_AUC``; the JSON always carries the probability and the
AUC, so a reader can weigh it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrtriage.backends.bundle_config import BundleConfig, write_bundle_config
from cxrtriage.backends.bundled import META_FILE, BundledOnnxBackend
from cxrtriage.backends.finding_probe import NAME_MIN_AUC, FindingProbe
from cxrtriage.data import load_split_records, rsna_labels
from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.card_data import keep_measurements
from cxrtriage.imaging.exposed_field import analysed_region
from cxrtriage.imaging.load import load_image

C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
LIKELY_ABOVE = 0.5


def rsna_inputs(model_dir: Path | None, data_dir: Path) -> dict[str, dict]:
    """Probe inputs, labels, classes and patients of the RSNA-labelled NIH images, by split part."""
    backend = BundledOnnxBackend(model_dir)
    labels = rsna_labels(data_dir)
    out: dict[str, dict] = {}
    for part, recs in load_split_records(data_dir).items():
        rows, y, cls, pats = [], [], [], []
        for r in recs:
            if r.dataset != "nih" or r.image_id not in labels:
                continue
            res = backend.analyze(analysed_region(load_image(r.path).pixels))  # as the pipeline analyses it
            rows.append(FindingProbe.inputs(res.embedding, res.logit))
            y.append(labels[r.image_id][0])
            cls.append(labels[r.image_id][1])
            pats.append(r.patient)
        out[part] = {
            "x": np.stack(rows) if rows else np.zeros((0, 0)),
            "y": np.array(y, int),
            "class": cls,
            "patients": pats,
        }
    return out


def fit_finding_probe(model_dir: Path | None, data_dir: Path, write: bool = True) -> dict | None:
    """The ``finding_probes.lung_opacity`` block (written into model.json when ``write``); None without RSNA labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not rsna_labels(data_dir):
        return None
    parts = rsna_inputs(model_dir, data_dir)
    tr = parts["train"]

    def model(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    cv = GroupKFold(n_splits=5)
    cv_auc = {
        c: metrics.roc_auc(
            tr["y"],
            cross_val_predict(model(c), tr["x"], tr["y"], cv=cv, groups=tr["patients"], method="predict_proba")[:, 1],
        )
        for c in C_GRID
    }
    best_c = max(cv_auc, key=lambda c: cv_auc[c])
    fitted = model(best_c).fit(tr["x"], tr["y"])
    held = {
        k: np.concatenate([parts["val"][k], parts["test"][k]])
        if k in ("x", "y")
        else parts["val"][k] + parts["test"][k]
        for k in ("x", "y", "class", "patients")
    }
    p = fitted.predict_proba(held["x"])[:, 1]
    ci = metrics.bootstrap_auc_ci(held["y"], p, groups=held["patients"], n_boot=2000, seed=0)
    not_other = np.array([c != "No Lung Opacity / Not Normal" for c in held["class"]])
    auc = metrics.roc_auc(held["y"], p)
    scaler, lr = fitted.named_steps["standardscaler"], fitted.named_steps["logisticregression"]
    block = {
        "name": "lung opacity",
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": lr.coef_[0].tolist(),
        "intercept": float(lr.intercept_[0]),
        "likely_above": LIKELY_ABOVE,
        "inputs": "L2-normalised classifier embedding, then the urgency logit",
        "labels": "RSNA Pneumonia Detection Challenge radiologists' re-read of NIH images (rsna_target: lung opacity)",
        "fit": f"scikit-learn LogisticRegression(C={best_c}) on standardised inputs, {len(tr['y'])} training-patient "
        f"films ({int(tr['y'].sum())} opacity); C chosen by 5-fold patient-grouped cross-validation",
        "cv_auc_by_c": {str(c): v for c, v in cv_auc.items()},
        "held_out": {
            "patients": "validation and test patients of the committed split, never fitted on",
            "n": int(len(held["y"])),
            "n_opacity": int(held["y"].sum()),
            "auc": auc,
            "auc_ci95": [float(ci[0]), float(ci[1])],
            "auc_opacity_vs_normal": metrics.roc_auc(held["y"][not_other], p[not_other]),
        },
        "named_in_explanation": bool(auc >= NAME_MIN_AUC),
        "rule": f"named in the explanation only when the held-out AUC is >= {NAME_MIN_AUC} and the probability >= "
        f"{LIKELY_ABOVE} on an Urgent result; always reported in the result's findings",
    }
    if write:
        from cxrtriage import config

        meta_path = (Path(model_dir) if model_dir else config.Settings().bundle_dir) / META_FILE
        keep_measurements(meta_path.parent)  # a model.json from before card.json: its measured results stay
        meta = BundleConfig.load(meta_path).to_dict()
        write_bundle_config({**meta, "finding_probes": {"lung_opacity": block}}, meta_path)
    return block
