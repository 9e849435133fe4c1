"""``cxrtriage recalibrate``: refit the calibration and operating point of a shipped bundle without retraining.

The int8 model and its sha256 stay as they are; only ``model.json`` changes (calibration, threshold, review band,
per-source validation figures). The replaced block and the test figures measured with it move to
``previous_calibration``, and the stale ``test_metrics`` are dropped: run ``cxrtriage evaluate --update-card`` and
``cxrtriage evaluate-anatomy --update-card`` (``make evaluate``) to measure the new operating point.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from cxrtriage.backends.bundled import META_FILE, MODEL_FILE
from cxrtriage.train.operating_point import (OPERATING_POINT_KEYS, apply_operating_point, fit_operating_point,
                                             validation_records, validation_set)


def recalibrate(model_dir: Path, data_dir: Path) -> dict:
    from cxrtriage.evaluation.model_card import write_card
    from cxrtriage.train.export import normalise_cache, run_onnx
    from cxrtriage.train.trainer import load_cache

    meta_path = Path(model_dir) / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    pre = meta["preprocess"]
    sets = {}
    for name, recs in validation_records(data_dir).items():
        x = normalise_cache(load_cache(recs, int(pre["input_size"]), f"{name} val"), float(pre["mean"]), float(pre["std"]),
                       pre.get("window"))
        sets[name] = validation_set(recs, run_onnx(Path(model_dir) / MODEL_FILE, x)[0])
    op = fit_operating_point(sets)
    previous = {k: meta.get(k) for k in OPERATING_POINT_KEYS}
    previous["replaced"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if meta.get("test_metrics"):
        previous["test_summary"] = meta["test_metrics"].get("summary")
        previous["measured"] = meta["test_metrics"].get("command")
    new = apply_operating_point(meta, op)
    new["previous_calibration"] = previous
    new.pop("test_metrics", None)  # measured at the old operating point: make evaluate measures the new one
    meta_path.write_text(json.dumps(new, indent=2) + "\n")
    write_card(Path(model_dir))
    return op
