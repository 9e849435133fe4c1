"""``cxrtriage demo``: triage a few real example radiographs (or the given paths) and print readable results.

``make demo-cli`` runs it. Examples come from the data layer (:func:`cxrtriage.data.examples_from`): held-out NIH
test images, the SIIM DICOM and a pediatric test image of the data directory, or, without one, the samples bundled
in the package (``cxrtriage/samples``), so that a fresh clone or install demonstrates itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cxrtriage.config import Settings
from cxrtriage.data import DEMO_PRIOR_REPORT, examples_from
from cxrtriage.errors import CXRTriageError
from cxrtriage.schema import DISCLAIMER


def run_demo(paths: list[str], settings: Settings, out: Path = Path("runs/demo/predictions.jsonl")) -> int:
    """Triage ``paths`` (or the examples of the settings' data directory) with the engine of ``settings``."""
    from cxrtriage.pipeline import Triage

    if paths:
        targets, source = [Path(p) for p in paths], "the given files"
    else:
        try:
            found = examples_from(settings.find_data_dir())
        except FileNotFoundError as exc:  # no data and a broken install without its samples
            print(f"No example images: {exc}. Run `make demo-cli IMG=path/to/chest.png`.", file=sys.stderr)
            return 2
        targets, source = found.paths, found.source
    engine = Triage.from_config(settings)
    info = engine.info
    print(
        f"cxrtriage demo — {info.backend} backend, model {info.name} {info.version} "
        f"({engine.footprint_mb():.2f} MB on disk), offline\nImages: {source}\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with out.open("w", encoding="utf-8") as sink:
        for i, path in enumerate(targets):
            prior = DEMO_PRIOR_REPORT if (not paths and i == 0) else None
            try:
                res = engine.predict(path, prior)
            except CXRTriageError as exc:
                failed += 1
                print(f"{path}\n  ERROR: {exc}\n")
                sink.write(json.dumps({"path": str(path), "error": str(exc)}) + "\n")
                continue
            sink.write(json.dumps({"path": str(path), **res.model_dump(mode="json")}) + "\n")
            review = "  [needs review]" if res.needs_review else ""
            print(f"{path}\n  {res.label}  score {res.score:.2f} (threshold {res.threshold:.2f}){review}")
            print(f"  {res.explanation}")
            for c in res.crops:
                by = " [MedGemma's box]" if c.source == "medgemma" else ""
                print(f"  crop x={c.x} y={c.y} w={c.w} h={c.h} ({c.region}){by} -> {c.thumb_path}")
            if prior:
                print(f"  prior report (synthetic demo text): {prior!r}")
            for p in res.provenance:
                print(f"  provenance [{p.source}] {p.relation}: {p.snippet}")
            for w in res.warnings:
                print(f"  warning: {w}")
            print(f"  {res.timings_ms['total']:.0f} ms end to end\n")
    print(DISCLAIMER)
    print(f"Full JSON for each image: {out}")
    return 1 if failed else 0
