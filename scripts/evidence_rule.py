#!/usr/bin/env python3
"""Fit the level at which a Non-Urgent result's activation map "stands out" (issue 24: fewer crops on negative films).

Every validation film of NIH (``split.csv``) and Shenzhen (``shenzhen_split.csv``) goes through ``Triage.predict``
with the bundled model and segmentation; for each, the peak prominence of its activation map inside the evidence
region (``cxrtriage.explain.evidence.peak_prominence``, exactly what the evidence stage computes) is recorded. The
level is the 95th percentile over the films whose label is non-urgent: about 1 normal film in 20 keeps a crop on a
Non-Urgent result. No test film is read. For comparison the script also reports the prominence of urgent and
non-urgent validation films, so a reader sees how little it separates them (why it is not used on Urgent results).

    python scripts/evidence_rule.py [--out prototype/eval/evidence_rule.json]

The level goes into ``NON_URGENT_MIN_PROMINENCE`` in ``src/cxrtriage/explain/evidence.py`` (rounded to 2 decimals;
tests/explain/test_evidence_rule.py keeps the two equal). No image is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
QUANTILE = 95.0


def collect(data_dir: Path) -> list[dict]:
    """(source, label, prominence, the result's label) of every NIH and Shenzhen validation film."""
    from cxrtriage.data import load_split_records
    from cxrtriage.errors import NotAChestXrayError
    from cxrtriage.explain.evidence import peak_prominence
    from cxrtriage.pipeline import Triage

    seen: dict = {}
    original = Triage._find_evidence

    def recording(self, case) -> None:  # the evidence stage's own inputs, then the stage itself
        anatomy = case.anatomy
        region = anatomy.evidence_region() if anatomy is not None and anatomy.lungs else None
        seen["prominence"] = peak_prominence(case.output.cam, region) if case.output.cam is not None else None
        seen["result"] = case.decision.label
        original(self, case)

    Triage._find_evidence = recording  # type: ignore[method-assign]
    engine = Triage()
    films = [r for r in load_split_records(data_dir, ("nih", "shenzhen"))["val"]]
    rows = []
    for rec in films:
        seen.clear()
        try:
            engine.predict(rec.path, save_crops=False)
        except NotAChestXrayError:
            continue
        if seen.get("prominence") is not None:
            rows.append({"source": rec.dataset, "urgent": int(rec.urgent), **seen})
    return rows


def summary(values: list[float]) -> dict:
    q = np.percentile(values, [5, 25, 50, 75, 95]) if values else [None] * 5
    return {"n": len(values), **{f"p{p}": round(float(v), 3) for p, v in zip((5, 25, 50, 75, 95), q)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "prototype/eval/evidence_rule.json")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from cxrtriage.config import Settings

    rows = collect(Settings().find_data_dir())
    normal = [r["prominence"] for r in rows if not r["urgent"]]
    level = float(np.percentile(normal, QUANTILE))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)  # noqa: S607
    result = {
        "what": "peak prominence ((max - mean) / std of the activation map inside the evidence region) of validation "
        "films; the level above which a Non-Urgent result shows a crop",
        "command": " ".join(["python", "scripts/evidence_rule.py", *sys.argv[1:]]),
        "commit": head.stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "films": "validation parts of NIH (split.csv) and Shenzhen (shenzhen_split.csv); no test film",
        "rule": f"{QUANTILE:g}th percentile of the prominence of the non-urgent validation films",
        "non_urgent_min_prominence": round(level, 2),
        "non_urgent_films_at_or_above": int(sum(v >= round(level, 2) for v in normal)),
        "prominence": {
            "non_urgent_films": summary(normal),
            "urgent_films": summary([r["prominence"] for r in rows if r["urgent"]]),
            "by_source": {
                f"{s}_{'urgent' if u else 'non_urgent'}": summary(
                    [r["prominence"] for r in rows if r["source"] == s and r["urgent"] == u]
                )
                for s in sorted({r["source"] for r in rows})
                for u in (0, 1)
            },
            "results_labelled_non_urgent": summary([r["prominence"] for r in rows if r["result"] == "Non-Urgent"]),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("non_urgent_min_prominence", "non_urgent_films_at_or_above")}))


if __name__ == "__main__":
    main()
