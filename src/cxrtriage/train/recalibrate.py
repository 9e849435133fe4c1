"""``cxrtriage recalibrate``: refit the calibration and operating point of a shipped bundle without retraining.

The int8 model and its sha256 stay as they are; in ``model.json`` only the calibration, threshold, review band and
per-source validation figures change (written through :class:`~cxrtriage.backends.bundle_config.BundleConfig`).
In ``card.json``, the replaced block and the test figures measured with it go to ``previous_calibration``, and
the stale ``test_metrics`` are dropped: run ``cxrtriage evaluate --update-card`` and
``cxrtriage evaluate-anatomy --update-card`` (``make evaluate``) to measure the new operating point.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from cxrtriage.backends.bundle_config import BundleConfig, write_bundle_config
from cxrtriage.backends.bundled import META_FILE, MODEL_FILE
from cxrtriage.data import Record
from cxrtriage.train.operating_point import (
    OPERATING_POINT_KEYS,
    apply_operating_point,
    fit_operating_point,
    validation_records,
    validation_set,
)


def recalibrate(model_dir: Path, data_dir: Path) -> dict:
    """Refit the operating point of the bundle in ``model_dir`` on the validation parts of ``data_dir``; returns it."""
    records = validation_records(data_dir)
    logits = bundle_logits(Path(model_dir), records, "val")
    op = fit_operating_point({name: validation_set(recs, logits[name]) for name, recs in records.items()})
    store_operating_point(Path(model_dir), op)
    return op


def bundle_logits(model_dir: Path, records: dict[str, list[Record]], part: str) -> dict[str, np.ndarray]:
    """The int8 urgency logits of the bundle in ``model_dir`` for every source's records, read through the one
    preprocessing path (``load_cache`` then ``normalise_cache``, what ``to_model_input`` does at serving)."""
    from cxrtriage.train.export import normalise_cache, run_onnx
    from cxrtriage.train.trainer import load_cache

    pre = BundleConfig.load(Path(model_dir) / META_FILE).preprocess
    out = {}
    for name, recs in records.items():
        x = normalise_cache(
            load_cache(recs, int(pre["input_size"]), f"{name} {part}"),
            float(pre["mean"]),
            float(pre["std"]),
            pre.get("window"),
        )
        out[name] = np.asarray(run_onnx(Path(model_dir) / MODEL_FILE, x)[0], np.float64)
    return out


def store_operating_point(model_dir: Path, op: dict) -> None:
    """Write a refitted operating point: the new values into ``model.json``; the replaced ones, with the test
    figures measured at them, into ``card.json`` as ``previous_calibration``; then regenerate the model card."""
    from cxrtriage.evaluation.card_data import CARD_DATA_FILE, read_card
    from cxrtriage.evaluation.model_card import write_card

    meta_path = model_dir / META_FILE
    bundle = BundleConfig.load(meta_path)
    card = read_card(model_dir, bundle)
    meta = bundle.to_dict()
    previous = {k: meta.get(k) for k in OPERATING_POINT_KEYS}
    previous["replaced"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if card.test_metrics:
        previous["test_summary"] = card.test_metrics.get("summary")
        previous["measured"] = card.test_metrics.get("command")
    write_bundle_config(apply_operating_point(meta, op), meta_path)
    # the test metrics were measured at the old operating point: make evaluate measures the new one
    card.with_blocks(previous_calibration=previous, test_metrics=None).save(model_dir / CARD_DATA_FILE)
    write_card(model_dir)
