"""What commissioning changes on films it never saw: a source's held-back films split in two halves by patient
(stratified by urgency, fixed seed); ``cxrtriage commission`` on one half; the bundled operating point and the
site's profile measured on the other half. Writes ``prototype/eval/commissioning_<source>.json``.

Run: ``python -m cxrtriage.evaluation.commissioning_holdout --data-dir D`` (``--out`` defaults to the Shenzhen file).

Shenzhen's validation and test patients (``shenzhen_split.csv``) are the source: one film per patient, both classes
with at least 20 films per half. The classifier trained on Shenzhen's training patients, and Shenzhen's validation
films were among those the bundled calibration and threshold were fitted on, so this is a seen site with a
pooled operating point, not an unseen hospital; the unseen adult site is held back from this machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage import decision
from cxrtriage.config import Settings
from cxrtriage.evaluation.commissioning import commission, triage_sample
from cxrtriage.evaluation.commissioning_fit import clopper_pearson
from cxrtriage.evaluation.commissioning_report import write_site
from cxrtriage.evaluation.input_files import write_jsonl
from cxrtriage.evaluation.metrics import to_jsonable

SEED = 25


def halves(data_dir: Path, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Shenzhen's validation and test films as two gold lists (path relative to ``data_dir``, label), split by
    patient and stratified by urgency."""
    from cxrtriage.data import load_split_records

    records = load_split_records(Path(data_dir), ("shenzhen",))
    films = [r for part in ("val", "test") for r in records[part] if r.dataset == "shenzhen"]
    rng = np.random.default_rng(seed)
    a: list[dict] = []
    b: list[dict] = []
    for urgent in (1, 0):
        patients = sorted({r.patient for r in films if r.urgent == urgent})
        rng.shuffle(patients)
        first = set(patients[: len(patients) // 2])
        for r in sorted((r for r in films if r.urgent == urgent), key=lambda r: r.path.as_posix()):
            row = {"path": r.path.relative_to(data_dir).as_posix(), "label": "Urgent" if urgent else "Non-Urgent"}
            (a if r.patient in first else b).append(row)
    return a, b


def _measure(labels: np.ndarray, scores: np.ndarray, threshold: float, band: tuple[float, float]) -> dict[str, Any]:
    decided = [decision.decide(float(s), threshold, band) for s in scores]
    urgent = np.array([d.label == decision.URGENT for d in decided])
    tp, fn = int((urgent & (labels == 1)).sum()), int((~urgent & (labels == 1)).sum())
    tn, fp = int((~urgent & (labels == 0)).sum()), int((urgent & (labels == 0)).sum())
    return {
        "threshold": threshold,
        "review_band": list(band),
        "sensitivity": tp / (tp + fn),
        "sensitivity_ci95": list(clopper_pearson(tp, tp + fn)),
        "specificity": tn / (tn + fp),
        "specificity_ci95": list(clopper_pearson(tn, tn + fp)),
        "review_rate": float(np.mean([d.needs_review for d in decided])),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def run(data_dir: Path, out: Path, site_dir: Path, command: str, site_head: str = "auto") -> dict[str, Any]:
    from cxrtriage.pipeline import Triage

    first, second = halves(data_dir)
    with tempfile.TemporaryDirectory(prefix="commission-holdout-") as tmp:  # gold lists, crops: nothing left
        work = Path(tmp)
        gold_a, gold_b = work / "commission_half.jsonl", work / "measure_half.jsonl"
        write_jsonl(first, gold_a)
        write_jsonl(second, gold_b)
        settings = Settings(crops_dir=work / "crops")
        engine = Triage.from_config(settings)
        done = commission(engine, gold_a, name="Shenzhen half A", out=site_dir, data_dir=data_dir, site_head=site_head)
        write_site(done, site_dir, f"{command} (commission on half A)")
        held = triage_sample(engine, gold_b, data_dir)
        cases = held.cases()
        after = done.fit.scores(cases)
    report = {
        "command": command,
        "source": "shenzhen",
        "what": "Shenzhen validation + test films (one per patient) split in two halves by patient, stratified by "
        f"urgency (seed {SEED}); commissioned on half A, measured on half B, which the profile never saw",
        "caveat": "the classifier trained on Shenzhen's training patients and the bundled calibration and threshold "
        "were fitted on validation films of every source, Shenzhen's included: a seen site, not an unseen hospital",
        "commission_half": {"n": len(first), "urgent": sum(r["label"] == "Urgent" for r in first)},
        "measure_half": {
            "n": len(cases.labels),
            "urgent": int(cases.labels.sum()),
            "refused_by_gate": len(held.refused),
        },
        "adopted": done.figures["adopted"],
        "commissioning_figures": done.figures,
        "held_out_half": {
            "before": _measure(cases.labels, cases.base_scores, engine.backend.threshold, engine.backend.review_band),
            "after": _measure(cases.labels, after, done.fit.threshold, done.fit.review_band),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("prototype/eval/commissioning_shenzhen.json"))
    p.add_argument("--site-dir", type=Path, help="where the half-A profile goes (default: a temporary folder)")
    p.add_argument("--site-head", choices=("auto", "off"), default="auto")
    p.add_argument("--update-card", action="store_true", help="also store the figures in the bundled model's card")
    args = p.parse_args(argv)
    command = "python -m cxrtriage.evaluation.commissioning_holdout " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    with tempfile.TemporaryDirectory(prefix="site-shenzhen-") as tmp:  # the profile is kept only where asked
        site_dir = args.site_dir or Path(tmp)
        r = run(args.data_dir.resolve(), args.out, site_dir, command, args.site_head)
    for when in ("before", "after"):
        m = r["held_out_half"][when]
        print(
            f"{when}: threshold {m['threshold']:.4f} specificity {m['specificity']:.3f} sensitivity "
            f"{m['sensitivity']:.3f} (95% CI {m['sensitivity_ci95'][0]:.3f}-{m['sensitivity_ci95'][1]:.3f})"
        )
    kept = f" and the profile in {args.site_dir}" if args.site_dir else ""
    print(f"adopted {r['adopted']}; wrote {args.out}{kept}")
    if args.update_card:
        from cxrtriage.evaluation.model_card import update_bundle_commissioning

        print(f"wrote {update_bundle_commissioning(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
