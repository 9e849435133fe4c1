"""Regenerate the sample radiographs bundled in ``src/cxrtriage/samples`` from the data directory, reproducibly.

    CXRTRIAGE_DATA_DIR=/path/to/data python scripts/make_samples.py            # write the samples, manifest, SAMPLES.md
    CXRTRIAGE_DATA_DIR=/path/to/data python scripts/make_samples.py --check    # rebuild in a scratch folder, compare

Why: a clone, a wheel, the container and the Space have no data directory, yet the demo and the UI need something
real to triage. Only redistributable images are bundled (NIH ChestX-ray14: no use restrictions; Kermany pediatric:
CC BY 4.0), always from the project's held-out TEST split, so no bundled sample was trained on. The files are the
data directory's own bytes (checked against the datasets' published sha256), and the DICOM is built from one of
them with obviously synthetic identifiers, fixed dates and UIDs derived from a fixed string: every run writes the
same bytes, and ``--check`` proves it. The fixed picks below were chosen once among a few candidates by what the
bundled model says (clear examples; see SAMPLES.md) and are pinned by name so that a retrained model cannot move them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "cxrtriage" / "samples"
#: everything bundled together stays under this (the wheel, the container and the Space carry it)
MAX_TOTAL_BYTES = 1_000_000

NIH_LICENCE = "public domain (NIH Clinical Center: no restrictions on use)"
NIH_CITATION = (
    "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale chest X-ray database and "
    "benchmarks on weakly-supervised classification and localization of common thorax diseases. CVPR 2017."
)
NIH_ATTRIBUTION = "NIH Clinical Center, NIH ChestX-ray14 (https://nihcc.app.box.com/v/ChestXray-NIHCC)"
KERMANY_LICENCE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
KERMANY_CITATION = (
    "Kermany DS, Goldbaum M, Cai W, et al. Identifying medical diagnoses and treatable diseases by image-based deep "
    "learning. Cell 2018;172(5):1122-1131. Data: Kermany D, Zhang K, Goldbaum M. Labeled optical coherence "
    "tomography (OCT) and chest X-ray images for classification. Mendeley Data, v2, 2018. doi:10.17632/rscbjbr9sj"
)
KERMANY_ATTRIBUTION = (
    "Kermany, Zhang, Goldbaum (Guangzhou Women and Children's Medical Center), 'Chest X-Ray Images (Pneumonia)', "
    "doi:10.17632/rscbjbr9sj; resized to 224x224 (aspect ratio not kept) before it reached this project, "
    "otherwise unchanged"
)
RSNA_NOTE = "RSNA Pneumonia Detection Challenge radiologist re-read"

#: the pinned picks (held-out TEST split); see the module docstring for how they were chosen
NIH_URGENT = "00001383_000.png"
NIH_NON_URGENT = "00001323_001.png"
KERMANY_PNEUMONIA = "images/PNEUMONIA/person1019_bacteria_2950.jpeg"
DICOM_NAME = "dicom/nih_00001323_001_as_CR.dcm"
#: a candidate from the same short list that the bundled model gets wrong (not bundled; its output is reported)
COUNTER_EXAMPLE = "00003384_000.png"

#: the DICOM sample's header: obviously synthetic, fixed, so the file is byte-for-byte reproducible
SYNTHETIC = {
    "PatientName": "SYNTHETIC^SAMPLE",
    "PatientID": "SAMPLE-0001",
    "AccessionNumber": "SAMPLE-ACC-0001",
    "StudyDate": "20000101",
    "StudyTime": "120000",
}
UID_SEED = "cxrtriage bundled sample 0001"


@dataclass(frozen=True)
class Sample:
    """One bundled file and what SAMPLES.md says about it."""

    file: str
    dataset: str
    original_file: str
    label: str
    findings: str
    view: str
    licence: str
    attribution: str
    citation: str
    note: str = ""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(records: list, image_id: str, what: str):
    found = [r for r in records if r.image_id == image_id]
    if not found:
        raise SystemExit(f"error: {what} {image_id} is not in the held-out test split of the committed split")
    return found[0]


def _copy_verified(src: Path, dst: Path, expected_sha256: str) -> None:
    """Copy the dataset file byte for byte, after checking it is the published file (its labels.csv sha256)."""
    if not src.is_file():
        raise SystemExit(f"error: missing {src}")
    if expected_sha256 and sha256(src) != expected_sha256:
        raise SystemExit(f"error: {src} does not match the sha256 in its labels.csv")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _labels_sha256(table: Path, column: str, value: str) -> str:
    import csv

    with table.open(newline="", encoding="utf-8") as fh:
        return next((row.get("sha256", "") for row in csv.DictReader(fh) if row[column] == value), "")


def write_dicom(picture: Path, out: Path) -> None:
    """A CR Image Storage instance of ``picture``'s pixels with the synthetic header above (8-bit MONOCHROME2,
    explicit VR little endian, uncompressed: any DICOM reader opens it), built by the PACS demo's builder with UIDs
    seeded so that a rebuild is byte for byte the same."""
    import datetime as dt

    from pydicom.uid import generate_uid

    from cxrtriage.pacs.synthetic import dicom_from_picture

    def uid(part: str) -> str:
        return generate_uid(entropy_srcs=[UID_SEED, part])  # 2.25.<int>: fresh, from no real study, reproducible

    when = dt.datetime.strptime(SYNTHETIC["StudyDate"] + SYNTHETIC["StudyTime"], "%Y%m%d%H%M%S")
    dicom_from_picture(
        picture,
        out,
        patient_id=SYNTHETIC["PatientID"],
        accession=SYNTHETIC["AccessionNumber"],
        patient_name=SYNTHETIC["PatientName"],
        when=when,
        uid=uid,
        manufacturer="synthetic sample (cxrtriage make_samples.py)",
        extra={
            "SpecificCharacterSet": "ISO_IR 100",
            "ContentDate": SYNTHETIC["StudyDate"],
            "ContentTime": SYNTHETIC["StudyTime"],
            "StudyDescription": "SYNTHETIC header; pixels: NIH ChestX-ray14 (public)",
            "PatientOrientation": ["L", "F"],  # PA film as viewed: image left is the patient's right, down the feet
            "ImageType": ["DERIVED", "SECONDARY"],
        },
    )


def build(data: Path, out: Path) -> list[Sample]:
    """Write the sample files into ``out`` and return what each is."""
    from cxrtriage.data import load_split_records, rsna_boxes

    test = load_split_records(data)["test"]
    nih = [r for r in test if r.dataset == "nih"]
    ped = [r for r in test if r.dataset == "kermany"]
    urgent, normal = _record(nih, NIH_URGENT, "NIH image"), _record(nih, NIH_NON_URGENT, "NIH image")
    child = _record(ped, KERMANY_PNEUMONIA, "pediatric image")
    if not (urgent.urgent and not normal.urgent and child.urgent):
        raise SystemExit("error: the pinned picks no longer carry the labels SAMPLES.md gives them")
    boxes = rsna_boxes(data).get(NIH_URGENT, [])
    nih_table, ped_table = data / "nih" / "labels.csv", data / "kermany" / "labels.csv"
    for rec, table, column in ((urgent, nih_table, "image_index"), (normal, nih_table, "image_index")):
        _copy_verified(rec.path, out / "nih" / rec.image_id, _labels_sha256(table, column, rec.image_id))
    ped_name = Path(child.image_id).name
    _copy_verified(child.path, out / "kermany" / ped_name, _labels_sha256(ped_table, "file", child.image_id))
    write_dicom(out / "nih" / normal.image_id, out / DICOM_NAME)
    nih_common = {"dataset": "NIH ChestX-ray14", "licence": NIH_LICENCE}
    nih_common |= {"attribution": NIH_ATTRIBUTION + "; 512x512 downsample of the 1024x1024 original"}
    return [
        Sample(
            f"nih/{urgent.image_id}",
            original_file=urgent.image_id,
            label="Urgent",
            findings=urgent.findings,
            view=urgent.view,
            citation=NIH_CITATION,
            note=f"{len(boxes)} lung-opacity boxes in the {RSNA_NOTE} (not bundled; Shih et al., Radiology: AI 2019)",
            **nih_common,
        ),
        Sample(
            f"nih/{normal.image_id}",
            original_file=normal.image_id,
            label="Non-Urgent",
            findings=normal.findings,
            view=normal.view,
            citation=NIH_CITATION,
            note=f"'Normal' in the {RSNA_NOTE}",
            **nih_common,
        ),
        Sample(
            DICOM_NAME,
            dataset="NIH ChestX-ray14 pixels in a DICOM built by scripts/make_samples.py",
            original_file=normal.image_id,
            label="Non-Urgent",
            findings=normal.findings,
            view="PA",
            licence=NIH_LICENCE,
            attribution=NIH_ATTRIBUTION,
            citation=NIH_CITATION,
            note=(
                "CR Image Storage, 8-bit MONOCHROME2, uncompressed; synthetic identifiers: PatientName "
                f"{SYNTHETIC['PatientName']}, PatientID {SYNTHETIC['PatientID']}, AccessionNumber "
                f"{SYNTHETIC['AccessionNumber']}, StudyDate {SYNTHETIC['StudyDate']} {SYNTHETIC['StudyTime']}, UIDs "
                f"derived from the string '{UID_SEED}' (2.25 root)"
            ),
        ),
        Sample(
            f"kermany/{ped_name}",
            dataset="Kermany pediatric chest X-ray (Guangzhou)",
            original_file=ped_name,
            label="Urgent",
            findings="PNEUMONIA (bacterial)",
            view="not recorded (child)",
            licence=KERMANY_LICENCE,
            attribution=KERMANY_ATTRIBUTION,
            citation=KERMANY_CITATION,
        ),
    ]


def model_outputs(paths: list[Path]) -> tuple[str, list[dict]]:
    """The bundled model's name and what it says on each sample (recorded in the manifest and SAMPLES.md); no crops
    are written."""
    from cxrtriage.config import Settings
    from cxrtriage.pipeline import Triage

    engine = Triage.from_config(Settings(backend="bundled", model_dir=None))
    outs = []
    for path in paths:
        res = engine.predict(path, save_crops=False)
        outs.append({"label": res.label, "score": round(res.score, 3), "needs_review": res.needs_review})
    return f"{engine.info.name} {engine.info.version}", outs


def manifest(samples: list[Sample], out: Path, model: str, outputs: list[dict], counter: dict) -> dict:
    entries = []
    for s, o in zip(samples, outputs):
        path = out / s.file
        entries.append({**s.__dict__, "bytes": path.stat().st_size, "sha256": sha256(path), "bundled_model": o})
    return {
        "generated_by": "scripts/make_samples.py",
        "split": "held-out test split of src/cxrtriage/splits/split.csv",
        "bundled_model": model,
        "total_bytes": sum(e["bytes"] for e in entries),
        "counter_example": {"original_file": COUNTER_EXAMPLE, "bundled_model": counter},
        "samples": entries,
    }


SAMPLES_MD = """# Bundled sample radiographs

Real, redistributable chest radiographs shipped inside the `cxrtriage` package, so that a clone, a wheel install, the
demo container and the Space can triage something without the data directory (`cxrtriage demo`, the web UI's
examples). **They were chosen as clear examples; they are not representative of accuracy** (see the model card,
`src/cxrtriage/weights/MODEL_CARD.md`, for measured performance). Generated by `scripts/make_samples.py` from the data
directory (`CXRTRIAGE_DATA_DIR`); `scripts/make_samples.py --check` rebuilds them and compares every byte.

## How they were chosen

All four come from the project's held-out **test** split (`src/cxrtriage/splits/split.csv`), so none was trained,
calibrated or tuned on. Candidates were: NIH test films labelled urgent that have a radiologist box in the RSNA
re-read and are PA (the DICOM sample says PA), NIH test PA films with no finding, and pediatric test films with
pneumonia. Among a few of each, the bundled model was run and films it gets right with a clear score were picked, so
**these samples show the model at its best**. The honest counter-example from the same short list: NIH
`{counter_file}`, a PA film with no NIH finding, read as "Normal" by the RSNA radiologists, is called
{counter_label} with a score of {counter_score:.3f} by the bundled model (a false positive; not bundled). The
Kermany image is the smallest pneumonia candidate (the total is kept under 1 MB). The picks are pinned by name in
the script.

## Files

| file | source | original file | truth | findings (dataset labels) | view | bundled model ({model}) | bytes | sha256 |
|---|---|---|---|---|---|---|---|---|
{rows}

Total: {total} bytes (under 1 MB, checked by `tests/test_samples.py`).

Notes:

{notes}

## Licences, attribution, citation

- **NIH ChestX-ray14** (`nih/`, and the pixels of `dicom/`): {nih_licence}. Attribution: {nih_attribution}.
  The images are 512x512 downsamples of the 1024x1024 originals. Cite: {nih_citation}
- **Kermany pediatric** (`kermany/`): {ped_licence}. Attribution: {ped_attribution}. Cite: {ped_citation}
- The DICOM header is synthetic: its identifiers name no person, and its dates and UIDs are invented. It exists to
  show the DICOM input path; it is not from any PACS.

The labels are the datasets' own (NIH's were mined from report text and are noisy; Kermany's are the publisher's).
"""


def write_docs(out: Path, data: dict) -> None:
    rows, notes = [], []
    for e in data["samples"]:
        o = e["bundled_model"]
        said = f"{o['label']} {o['score']:.3f}" + (" (needs review)" if o["needs_review"] else "")
        rows.append(
            f"| `{e['file']}` | {e['dataset']} | `{e['original_file']}` | {e['label']} | "
            f"{e['findings'].replace('|', ', ')} | "
            f"{e['view']} | {said} | {e['bytes']} | `{e['sha256'][:16]}…` |"
        )
        if e["note"]:
            notes.append(f"- `{e['file']}`: {e['note']}.")
    (out / "samples.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "SAMPLES.md").write_text(
        SAMPLES_MD.format(
            model=data["bundled_model"],
            counter_file=data["counter_example"]["original_file"],
            counter_label=data["counter_example"]["bundled_model"]["label"],
            counter_score=data["counter_example"]["bundled_model"]["score"],
            rows="\n".join(rows),
            total=data["total_bytes"],
            notes="\n".join(notes),
            nih_licence=NIH_LICENCE,
            nih_attribution=NIH_ATTRIBUTION,
            nih_citation=NIH_CITATION,
            ped_licence=KERMANY_LICENCE,
            ped_attribution=KERMANY_ATTRIBUTION,
            ped_citation=KERMANY_CITATION,
        ),
        encoding="utf-8",
    )


def check(data: Path) -> int:
    """Rebuild in a scratch folder and compare every sample's sha256 with the committed manifest."""
    committed = json.loads((OUT / "samples.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as scratch:
        samples = build(data, Path(scratch))
        fresh = {s.file: sha256(Path(scratch) / s.file) for s in samples}
    want = {e["file"]: e["sha256"] for e in committed["samples"]}
    differ = sorted(f for f in want.keys() | fresh.keys() if want.get(f) != fresh.get(f))
    for name in differ:
        print(f"DIFFERS {name}: committed {want.get(name)}, rebuilt {fresh.get(name)}")
    print("samples reproduce byte for byte" if not differ else f"{len(differ)} sample(s) differ")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: CXRTRIAGE_DATA_DIR or ../shared/data")
    parser.add_argument("--check", action="store_true", help="rebuild in a scratch folder and compare the sha256s")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from cxrtriage.config import Settings

    data = args.data_dir or Settings().find_data_dir(required=True)
    if args.check:
        return check(data)
    for sub in ("nih", "kermany", "dicom"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
    samples = build(data, OUT)
    model, outputs = model_outputs([OUT / s.file for s in samples] + [data / "nih" / "images" / COUNTER_EXAMPLE])
    info = manifest(samples, OUT, model, outputs[:-1], outputs[-1])
    write_docs(OUT, info)
    for e in info["samples"]:
        print(f"{e['bytes']:>8}  {e['sha256']}  {e['file']}  (model: {e['bundled_model']})")
    total = info["total_bytes"] + (OUT / "samples.json").stat().st_size + (OUT / "SAMPLES.md").stat().st_size
    print(f"total {total} bytes with samples.json and SAMPLES.md (limit {MAX_TOTAL_BYTES})")
    if total > MAX_TOTAL_BYTES:
        print("error: the samples are over 1 MB together", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
