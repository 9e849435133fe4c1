#!/usr/bin/env python3
"""The view probe's score on frontal films and their acquisition variants, against the laterals (issue 24: refuse
9 laterals in 10 and no frontal film).

Every held-out frontal film we have (the test parts of NIH and pediatric in ``split.csv``, of Shenzhen in
``shenzhen_split.csv``, and JSRT's test part) goes through ``Triage.predict`` with the bundled model and
segmentation, and so do the acquisition variants of ``cxrtriage.imaging.acquisition.VARIANTS`` (canvas, borders,
rotation by +-15 degrees, aspect 0.75 and 1.33) of the first ``--n`` test films of each source; then every lateral of
``<data>/laterals``. For each film the script records the score the pipeline hands to the view check
(``frontal.check_view``), whether a typical pair of lungs was found, and the outcome (triaged, review, refused).

The laterals' scores here are IN-SAMPLE: the bundled probe was fitted on all 34 of them. Their cross-validated
scores are in ``model.json`` (``view_probe.validation.cv5_lateral_scores``) and are copied beside them.

    python scripts/view_gate.py [--n 60] [--out prototype/eval/view_gate.json] [--baseline-model DIR]

``--baseline-model DIR`` measures the same films through another bundle as well (its summary goes under
``baseline``): e.g. a copy of ``src/cxrtriage/weights`` holding the ``model.json`` of the commit before a refit of
the probe (``git show REV:src/cxrtriage/weights/model.json``).

No image is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: cut-offs whose consequences are tabulated (besides the bundle's own)
CUTS = (0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


def _films(data_dir: Path) -> dict[str, list[Path]]:
    """Every held-out frontal test film, per source, in key order (deterministic)."""
    from cxrtriage.data import jsrt_records, jsrt_split, load_split_records

    test = sorted(load_split_records(data_dir, ("nih", "kermany", "shenzhen"))["test"], key=lambda r: r.key)
    out = {name: [r.path for r in test if r.dataset == name] for name in ("nih", "kermany", "shenzhen")}
    out["jsrt"] = [r.path for r in jsrt_split(jsrt_records(data_dir))["test"]]
    return out


def measure(data_dir: Path, n: int, model_dir: Path | None = None) -> dict:
    from cxrtriage import pipeline

    seen: dict = {}
    check_view = pipeline.frontal.check_view

    def recording(score, reject_above, review_above, typical_pair=False, reject_with_lungs_above=1.0):
        seen.update(score=None if score is None else round(float(score), 5), pair=bool(typical_pair))
        return check_view(score, reject_above, review_above, typical_pair, reject_with_lungs_above)

    pipeline.frontal.check_view = recording  # the pipeline's own call, with the pipeline's own inputs
    try:
        return _measure(pipeline.Triage(model_dir=model_dir), data_dir, n, seen)
    finally:
        pipeline.frontal.check_view = check_view


def _measure(engine, data_dir: Path, n: int, seen: dict) -> dict:
    from cxrtriage.data import lateral_paths
    from cxrtriage.errors import NotAChestXrayError
    from cxrtriage.imaging.acquisition import VARIANTS
    from cxrtriage.imaging.load import load_image

    def run(pixels) -> dict:
        seen.clear()
        try:
            outcome = "review" if engine.predict(pixels, save_crops=False).needs_review else "triaged"
        except NotAChestXrayError:
            outcome = "refused"
        return {"score": seen.get("score"), "pair": seen.get("pair"), "outcome": outcome}

    frontal: list[dict] = []
    for source, paths in _films(data_dir).items():
        for i, path in enumerate(paths):
            pixels = load_image(path).pixels
            for name, make in VARIANTS.items():
                if name == "original" or i < n:
                    frontal.append({"source": source, "film": path.name, "variant": name, **run(make(pixels))})
    laterals = [{"film": p.name, **run(load_image(p).pixels)} for p in lateral_paths(data_dir)]
    probe = engine.backend.view_probe
    return {
        "frontal": frontal,
        "laterals": laterals,
        "bundle": {
            "reject_above": probe.reject_above,
            "reject_with_lungs_above": probe.reject_with_lungs_above,
            "review_above": probe.review_above,
        },
    }


def _top(rows: list[dict], k: int = 10) -> list[dict]:
    return sorted((r for r in rows if r["score"] is not None), key=lambda r: -r["score"])[:k]


def histogram(scores: list[float]) -> dict[str, int]:
    """Counts per 0.05-wide bin of the score (the per-film rows of the many low-scoring films are left out)."""
    counts = np.histogram(scores, bins=np.linspace(0.0, 1.0, 21))[0]
    return {f"{0.05 * i:.2f}-{0.05 * (i + 1):.2f}": int(c) for i, c in enumerate(counts)}


def summarise(raw: dict, cv_laterals: list[float]) -> dict:
    """Score distributions, the highest frontal scores, and what each cut-off for films WITH a typical pair would
    refuse (frontal films and variants, in-sample laterals); films without a pair keep the bundle's reject_above."""
    fr, lat, b = raw["frontal"], raw["laterals"], raw["bundle"]
    scored = [r for r in fr if r["score"] is not None]
    by_variant = {}
    for v in sorted({r["variant"] for r in fr}):
        s = [r["score"] for r in scored if r["variant"] == v]
        by_variant[v] = {
            "n": sum(r["variant"] == v for r in fr),
            "max": max(s) if s else None,
            "p99": round(float(np.percentile(s, 99)), 4) if s else None,
            "refused": sum(r["outcome"] == "refused" for r in fr if r["variant"] == v),
            "with_pair": sum(bool(r["pair"]) for r in fr if r["variant"] == v),
        }

    def refused(rows: list[dict], cut: float) -> int:
        return sum(
            r["score"] is not None and (r["score"] > cut if r["pair"] else r["score"] > b["reject_above"]) for r in rows
        )

    with_pair = [r["score"] for r in scored if r["pair"]]
    return {
        "frontal_films": len({(r["source"], r["film"]) for r in fr}),
        "frontal_rows": len(fr),
        "frontal_refused_now": [f"{r['variant']}: {r['source']}/{r['film']}" for r in fr if r["outcome"] == "refused"],
        "frontal_max_score": max(r["score"] for r in scored),
        "frontal_max_score_with_pair": max(with_pair) if with_pair else None,
        "frontal_top": _top(fr),
        "by_variant": by_variant,
        "laterals_in_sample": {
            "n": len(lat),
            "outcomes": {k: sum(r["outcome"] == k for r in lat) for k in ("refused", "review", "triaged")},
            "with_pair": sum(bool(r["pair"]) for r in lat),
            "scores_with_pair": sorted(r["score"] for r in lat if r["pair"] and r["score"] is not None),
            "scores_without_pair": sorted(r["score"] for r in lat if not r["pair"] and r["score"] is not None),
        },
        "laterals_cv5_scores_from_model_json": cv_laterals,
        "cut_with_pair": {
            f"{c:g}": {"frontal_refused": refused(fr, c), "laterals_refused_in_sample": refused(lat, c)} for c in CUTS
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="test films per source that get every variant")
    parser.add_argument("--out", type=Path, default=REPO / "prototype/eval/view_gate.json")
    parser.add_argument(
        "--baseline-model", type=Path, help="another bundle (e.g. the probe before a refit), measured too"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from cxrtriage.backends.bundle_config import BundleConfig
    from cxrtriage.config import Settings

    t0 = time.perf_counter()
    raw = measure(Settings().find_data_dir(), args.n)
    baseline = None
    if args.baseline_model is not None:  # the same films through the other bundle: its summary only
        other = BundleConfig.load(args.baseline_model / "model.json").view_probe
        base_raw = measure(Settings().find_data_dir(), args.n, args.baseline_model)
        baseline = {
            "model_dir": str(args.baseline_model),
            "bundle": base_raw["bundle"],
            "summary": summarise(
                base_raw, list((other.validation or {}).get("cv5_lateral_scores", [])) if other else []
            ),
        }
    vp = BundleConfig.load(REPO / "src/cxrtriage/weights/model.json").view_probe
    cv = list((vp.validation or {}).get("cv5_lateral_scores", [])) if vp is not None else []
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)  # noqa: S607
    result = {
        "what": "view-probe score the pipeline computes, on held-out frontal films and their acquisition variants "
        "and on the laterals; what a lower cut-off for films with a typical pair of lungs would refuse",
        "command": " ".join(["python", "scripts/view_gate.py", *sys.argv[1:]]),
        "commit": head.stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds": round(time.perf_counter() - t0, 1),
        "bundle": raw["bundle"],
        "summary": summarise(raw, cv),
        **({"baseline": baseline} if baseline else {}),
        "laterals": raw["laterals"],
        "frontal_at_or_above_review": [
            r for r in raw["frontal"] if (r["score"] or 0.0) > raw["bundle"]["review_above"]
        ],
        "frontal_score_histogram": histogram([r["score"] for r in raw["frontal"] if r["score"] is not None]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")  # no image, file names only
    s = result["summary"]
    print(json.dumps({k: s[k] for k in ("frontal_rows", "frontal_max_score", "frontal_max_score_with_pair")}))
    print(json.dumps(s["cut_with_pair"]))


if __name__ == "__main__":
    main()
