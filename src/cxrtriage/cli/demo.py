"""``cxrtriage demo``: triage a few real example radiographs (or the given paths) and print readable results.

Until the web demo exists this is what ``make demo`` runs. Examples come from the data directory
(CXRTRIAGE_DATA_DIR): held-out NIH test images, the SIIM DICOM and a pediatric test image.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cxrtriage import config
from cxrtriage.errors import CXRTriageError
from cxrtriage.schema import DISCLAIMER

#: a synthetic prior report written for the demo (not taken from any dataset)
DEMO_PRIOR_REPORT = ("FINDINGS: Small right pleural effusion, new since the prior study. No pneumothorax. "
                     "Heart size is normal.\nIMPRESSION: Small right effusion. Possible early right lower lobe pneumonia.")
#: a synthetic normal prior report (not from any dataset), to show negated mentions quoted as "contradicts"
DEMO_NORMAL_PRIOR_REPORT = ("FINDINGS: The lungs are clear. No focal consolidation, pleural effusion or pneumothorax. "
                            "Heart size is normal.\nIMPRESSION: No acute cardiopulmonary abnormality.")


def example_paths() -> list[Path]:
    from cxrtriage.data import load_split_records

    data = config.data_dir()
    if data is None:
        return []
    out: list[Path] = []
    test = load_split_records(data)["test"]
    nih = [r for r in test if r.dataset == "nih"]
    ped = [r for r in test if r.dataset == "kermany"]
    out += [next(r.path for r in nih if r.urgent), next(r.path for r in nih if not r.urgent)]
    dicom = data / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    if dicom.is_file():
        out.append(dicom)
    if ped:
        out.append(ped[0].path)
    return out


@dataclass(frozen=True)
class Example:
    """A named real example for the quickstart: an image path and, for one of them, a prior report."""

    name: str
    path: Path
    prior_report: str | None = None
    note: str = ""


def quickstart_examples(data: Path) -> list[Example]:
    """The quickstart notebook's five examples, each a different input path through the engine: an adult PNG, a
    pediatric JPEG, the MONOCHROME1 ACR-NEMA DICOM, the JPEG-compressed DICOM, and an adult PNG with a (synthetic)
    prior report. Test-split images only; a missing file is an error that names it."""
    from cxrtriage.data import load_split_records

    test = load_split_records(data)["test"]
    nih = [r for r in test if r.dataset == "nih"]
    ped = [r for r in test if r.dataset == "kermany"]
    if not nih or not ped:
        raise FileNotFoundError(f"{data}: the NIH and pediatric test images of the committed split were not found")
    adult = next(r for r in nih if not r.urgent)
    urgent = next(r for r in nih if r.urgent)
    child = next(r for r in ped if r.urgent)
    examples = [
        Example("adult PNG", adult.path, note=f"NIH ChestX-ray14 {adult.view}, test split, truth {_truth(adult.urgent)}"),
        Example("pediatric JPEG", child.path, note=f"pediatric (Kermany), test split, truth {_truth(child.urgent)}"),
        Example("MONOCHROME1 ACR-NEMA DICOM", data / "dicom" / "CR-MONO1-10-chest.dcm",
                note="1993 Fuji CR, no Part-10 header, 10-bit MONOCHROME1; no label"),
        Example("JPEG-compressed DICOM", data / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm",
                note="SIIM-ACR CR PA, JPEG Baseline transfer syntax; pneumothorax-negative"),
        Example("adult PNG + prior report", urgent.path, DEMO_PRIOR_REPORT,
                note=f"NIH {urgent.view}, test split, truth {_truth(urgent.urgent)}; the prior report is synthetic demo text"),
    ]
    missing = [str(e.path) for e in examples if not e.path.is_file()]
    if missing:
        raise FileNotFoundError(f"example images missing from the data directory: {', '.join(missing)}")
    return examples


def _truth(urgent: int) -> str:
    return "Urgent" if urgent else "Non-Urgent"


def run_demo(paths: list[str], out: Path = Path("runs/demo/predictions.jsonl")) -> int:
    from cxrtriage.pipeline import get_triage

    targets = [Path(p) for p in paths] or example_paths()
    if not targets:
        print("No example images: set CXRTRIAGE_DATA_DIR to the data folder (see prototype/data_scripts/download_datasets.sh) "
              "or run `make demo IMG=path/to/chest.png`.", file=sys.stderr)
        return 2
    engine = get_triage()
    info = engine.backend.info
    print(f"cxrtriage demo — {info.backend} backend, model {info.name} {info.version} "
          f"({engine.backend.footprint_mb():.2f} MB on disk), offline\n")
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
