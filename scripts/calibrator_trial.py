#!/usr/bin/env python3
"""Try calibrations of the shipped model honestly (issue 24: ECE <= 0.08 on every source's test patients).

The bundled int8 model scores every source's validation and test films through the one preprocessing path
(``cxrtriage.train.recalibrate.bundle_logits``). Platt (shipped), temperature, isotonic, beta and Platt with a view
offset are cross-validated within the validation sources (``cxrtriage.train.calibrator_trial``: folds by patient,
the threshold rule refitted in each fold), judged by the adoption rules there, and only then checked once on test.
Nothing in the bundle changes: an adopted calibrator would go into ``model.json``'s calibration block by a separate
change. Only aggregates are written: no image name, no label.

    python scripts/calibrator_trial.py [--out prototype/eval/calibrators.json] [--doc docs/MODEL.md]

``--doc`` then renders the "tried" block of docs/MODEL.md (``python -m cxrtriage.evaluation.calibrators_card``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def films_of(records: dict, logits: dict) -> dict:
    from cxrtriage.train.calibrator_trial import Films

    return {
        name: Films(logits[name], np.array([r.urgent for r in recs]), [r.patient for r in recs], [r.view for r in recs])
        for name, recs in records.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", help="default: CXRTRIAGE_DATA_DIR or ../shared/data")
    ap.add_argument("--model-dir", default=str(REPO / "src/cxrtriage/weights"))
    ap.add_argument("--out", default="prototype/eval/calibrators.json")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--doc", help="then render the calibrator block of this Markdown file (docs/MODEL.md)")
    args = ap.parse_args(argv)

    from cxrtriage.backends.bundle_config import BundleConfig
    from cxrtriage.cli.options import data_dir_or_exit
    from cxrtriage.evaluation.operating_points import held_out_records
    from cxrtriage.train.calibrator_trial import AUC_TOLERANCE, run_trial
    from cxrtriage.train.operating_point import SOURCE_NAMES, validation_records
    from cxrtriage.train.recalibrate import bundle_logits

    data_dir = data_dir_or_exit(args.data_dir)
    model_dir = Path(args.model_dir)
    val, test = validation_records(data_dir), held_out_records(data_dir)
    report = run_trial(
        films_of(val, bundle_logits(model_dir, val, "val")),
        films_of(test, bundle_logits(model_dir, test, "test")),
        k=args.folds,
        repeats=args.repeats,
    )
    meta = BundleConfig.load(model_dir / "model.json").to_dict()
    command = f"python scripts/calibrator_trial.py --folds {args.folds} --repeats {args.repeats} --out {args.out}"
    out = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "model": {"version": meta.get("version"), "sha256": meta.get("sha256")},
        "source_names": {n: SOURCE_NAMES.get(n, n) for n in test},
        "counts": {
            "validation": {n: {"n": len(r), "urgent": sum(x.urgent for x in r)} for n, r in val.items()},
            "test": {n: {"n": len(r), "urgent": sum(x.urgent for x in r)} for n, r in test.items()},
        },
        "protocol": {
            "cv": f"{args.folds} folds by patient, stratified by source and label, {args.repeats} repeats (seeds "
            "0..); in each fold the calibrator and the threshold rule (sensitivity >= 0.95 on each source with urgent "
            "films) are fitted on the other folds; figures are means over repeats",
            "adopt_if": "against Platt, on every validation source: CV ECE lower, CV AUC not lower by more than "
            f"{AUC_TOLERANCE}, CV sensitivity not lower; and in-sample sensitivity >= 0.95 on each",
            "logits": "the bundled int8 model's urgency logits of every validation and test film, read through the "
            "one preprocessing path (cxrtriage.train.recalibrate.bundle_logits: load_cache, normalise_cache, ONNX)",
            "test": "each candidate fitted on all validation films, applied once to the test films; test figures do "
            "not choose",
            "views": "from each source's label table: NIH View Position (PA / AP); Shenzhen and JSRT PA as published; "
            "pediatric unknown (JPEG). A PNG at inference has no view: a deployment knows it only from DICOM",
            "ece": "10 equal-width bins; ece_if_calibrated: the ECE of the same scores with labels drawn as "
            "Bernoulli(score) (mean, 90% range, share of draws at or above the measured ECE)",
        },
        **report,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{path}: adopted {out['adopted']}")
    for name, by_source in out["cv"].items():
        print(f"{name:12s} CV ECE " + ", ".join(f"{s} {f['ece']:.3f}" for s, f in by_source.items()))
    if args.doc:
        from cxrtriage.evaluation.calibrators_card import main as render_doc

        return render_doc([args.doc])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    raise SystemExit(main())
