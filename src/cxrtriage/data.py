"""Dataset tables of the public CXR data (NIH ChestX-ray14 subset, Kermany pediatric, JSRT, Shenzhen) and the
fixed splits.

Only labels and IDs are read here; images are read through :mod:`cxrtriage.imaging.load` by whoever needs them.
The split (image IDs only, no data) ships in ``cxrtriage/splits/split.csv``; Shenzhen's part of it ships in its own
``cxrtriage/splits/shenzhen_split.csv``, so that the hash of ``split.csv`` recorded by models trained before the
site arrived (``model.json`` ``training_data.split_sha256``) still describes the file they were trained on.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from cxrtriage import config
from cxrtriage.files import sha256_file

SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "split.csv"
SHENZHEN_SPLIT_FILE = SPLIT_FILE.with_name("shenzhen_split.csv")
SPLIT_NAMES = ("train", "val", "test")


class _HasImageId(Protocol):
    @property
    def image_id(self) -> str: ...


_R = TypeVar("_R", bound=_HasImageId)


@dataclass(frozen=True)
class Record:
    """One labelled image: ``dataset/image_id`` is its stable identity."""

    dataset: str  # "nih" | "kermany" | "jsrt" | "shenzhen"
    image_id: str  # NIH image index, or the Kermany / Shenzhen file path relative to the dataset's folder
    path: Path
    patient: str
    urgent: int  # 1 urgent, 0 non-urgent
    view: str = ""
    sex: str = ""
    age: str = ""
    findings: str = ""

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.image_id}"


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: see prototype/data_scripts/download_datasets.sh")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def nih_records(data_dir: Path) -> list[Record]:
    root = Path(data_dir) / "nih"
    return [
        Record(
            dataset="nih",
            image_id=row["image_index"],
            path=root / row["file"],
            patient=f"nih-{row['patient_id']}",
            urgent=int(row["urgency"] == "urgent"),
            view=row.get("view", ""),
            sex=row.get("sex", ""),
            age=row.get("age", ""),
            findings=row.get("nih_labels", ""),
        )
        for row in _read_csv(root / "labels.csv")
    ]


def _kermany_patient(row: dict[str, str]) -> str:
    """Patient key; the table's key is a placeholder ('IM', 'NORMAL2-IM') for normal files, so derive it
    from the file name (IM-0115-0001.jpeg -> IM-0115, NORMAL2-IM-0123-0001.jpeg -> NORMAL2-IM-0123)."""
    key = row.get("patient_key", "")
    if key and key not in ("IM", "NORMAL2-IM"):
        return f"kermany-{key}"
    stem = Path(row["file"]).stem
    return "kermany-" + stem.rsplit("-", 1)[0]


def kermany_records(data_dir: Path) -> list[Record]:
    root = Path(data_dir) / "kermany"
    return [
        Record(
            dataset="kermany",
            image_id=row["file"],
            path=root / row["file"],
            patient=_kermany_patient(row),
            urgent=int(row["urgency"] == "urgent"),
            findings=row.get("label", ""),
        )
        for row in _read_csv(root / "labels.csv")
    ]


def shenzhen_records(data_dir: Path) -> list[Record]:
    """The Shenzhen No.3 People's Hospital films (research use: never shipped, never copied). Tuberculosis is
    Urgent. No patient IDs are published and each file is its own study, so each film is its own patient."""
    root = Path(data_dir) / "shenzhen"
    return [
        Record(
            dataset="shenzhen",
            image_id=row["file"],
            path=root / row["file"],
            patient=f"shenzhen-{row.get('study_id') or Path(row['file']).stem}",
            urgent=int(row["urgency"] == "urgent"),
            view="PA",
            sex=row.get("sex", ""),
            age=row.get("age", ""),
            findings=row.get("finding", ""),
        )
        for row in _read_csv(root / "labels.csv")
    ]


def nih_boxes(data_dir: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Expert boxes by NIH image id, (x, y, w, h) in the pixel space of the shipped PNGs."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for row in _read_csv(Path(data_dir) / "nih" / "boxes.csv"):
        boxes[row["image_index"]].append(tuple(float(row[k]) for k in ("x", "y", "w", "h")))  # type: ignore[misc]
    return dict(boxes)


@dataclass(frozen=True)
class JsrtRecord:
    """One JSRT radiograph with its SCR masks (0/255 PNGs at the image's size); ``left`` is the patient's left."""

    image_id: str
    path: Path
    nodule: int
    masks: dict[str, Path]


#: the SCR structures the bundled segmentation network predicts, in its output-channel order
JSRT_STRUCTURES = ("right_lung", "left_lung", "heart")


def jsrt_records(data_dir: Path) -> list[JsrtRecord]:
    """The JSRT/SCR images of ``<data>/jsrt_scr`` (research use: never shipped, never copied)."""
    root = Path(data_dir) / "jsrt_scr"
    return [
        JsrtRecord(
            image_id=row["id"],
            path=root / row["file"],
            nodule=int(row["nodule"]),
            masks={s: root / row[s] for s in JSRT_STRUCTURES},
        )
        for row in _read_csv(root / "labels.csv")
    ]


def stratified_split(
    records: Sequence[_R], label: Callable[[_R], int], seed: int, fractions: tuple[float, float, float]
) -> dict[str, list[_R]]:
    """Image-level split for sources with one image per patient, stratified by ``label`` (0/1): each class is
    sorted by ``image_id``, shuffled with ``seed + label`` and cut by ``fractions`` (depends on names and seed only)."""
    parts: dict[str, list[_R]] = {name: [] for name in SPLIT_NAMES}
    for value in (0, 1):
        group = sorted((r for r in records if label(r) == value), key=lambda r: r.image_id)
        random.Random(seed + value).shuffle(group)  # noqa: S311 - a seeded, reproducible split, not a secret
        n_train, n_val = round(fractions[0] * len(group)), round(fractions[1] * len(group))
        parts["train"] += group[:n_train]
        parts["val"] += group[n_train : n_train + n_val]
        parts["test"] += group[n_train + n_val :]
    return {k: sorted(v, key=lambda r: r.image_id) for k, v in parts.items()}


def jsrt_split(
    records: list[JsrtRecord], seed: int = 1202, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
) -> dict[str, list[JsrtRecord]]:
    """Image-level split of JSRT (one image per patient) with a fixed seed, stratified by nodule/no nodule."""
    return stratified_split(records, lambda r: r.nodule, seed, fractions)


def jsrt_urgency_parts(data_dir: Path) -> dict[str, list[Record]]:
    """JSRT films WITHOUT a nodule as non-urgent adult negatives of another site, in the same image-level parts as
    the segmentation split (so no JSRT test film is trained on by either network)."""
    return {
        part: [
            Record(
                dataset="jsrt",
                image_id=r.image_id,
                path=r.path,
                patient=f"jsrt-{r.image_id}",
                urgent=0,
                view="PA",
                findings="No Finding",
            )
            for r in recs
            if r.nodule == 0
        ]
        for part, recs in jsrt_split(jsrt_records(data_dir)).items()
    }


def rsna_labels(data_dir: Path) -> dict[str, tuple[int, str]]:
    """The RSNA radiologist re-read by NIH image id: (rsna_target, rsna_class), 1 = lung opacity; class "Normal",
    "No Lung Opacity / Not Normal" or "Lung Opacity". Empty when the file is absent."""
    path = Path(data_dir) / "nih" / "rsna_labels.csv"
    return (
        {row["image_index"]: (int(row["rsna_target"]), row["rsna_class"]) for row in _read_csv(path)}
        if path.is_file()
        else {}
    )


def rsna_opacity_labels(data_dir: Path) -> dict[str, int]:
    """Radiologist lung-opacity labels of the RSNA re-read, by record key (``nih/<image index>``): 1 opacity."""
    return {f"nih/{image_id}": target for image_id, (target, _) in rsna_labels(data_dir).items()}


def rsna_boxes(data_dir: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Radiologist lung-opacity boxes of the RSNA re-read by NIH image id, (x, y, w, h) in the shipped PNG's pixels."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for row in _read_csv(Path(data_dir) / "nih" / "rsna_boxes.csv"):
        boxes[row["image_index"]].append(tuple(float(row[k]) for k in ("x", "y", "w", "h")))  # type: ignore[misc]
    return dict(boxes)


def lateral_paths(data_dir: Path) -> list[Path]:
    """The lateral chest radiographs of ``<data>/laterals`` (what the frontal-view check must refuse)."""
    root = Path(data_dir) / "laterals"
    return [root / row["file"] for row in _read_csv(root / "labels.csv")]


def make_split(records: list[Record], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Patient-level split: every image of a patient lands in the same part (images of one patient
    are correlated, so an image-level split would leak)."""
    patients = sorted({r.patient for r in records})
    random.Random(seed).shuffle(patients)  # noqa: S311 - a seeded, reproducible split, not a secret
    n = len(patients)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    part = {p: "train" for p in patients[:n_train]}
    part.update({p: "val" for p in patients[n_train : n_train + n_val]})
    part.update({p: "test" for p in patients[n_train + n_val :]})
    return {r.key: part[r.patient] for r in records}


def write_split(assignments: dict[str, str], path: Path = SPLIT_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "split"])
        for key in sorted(assignments):
            writer.writerow([key, assignments[key]])


def read_split(path: Path = SPLIT_FILE) -> dict[str, str]:
    return {row["key"]: row["split"] for row in _read_csv(path)}


def read_all_splits() -> dict[str, str]:
    """Every committed assignment: NIH and pediatric (``split.csv``) and Shenzhen (``shenzhen_split.csv``)."""
    return {**read_split(SPLIT_FILE), **read_split(SHENZHEN_SPLIT_FILE)}


def split_sha256(path: Path = SPLIT_FILE) -> str:
    return sha256_file(path)


def load_split_records(data_dir: Path, datasets: tuple[str, ...] = ("nih", "kermany")) -> dict[str, list[Record]]:
    """Records of the committed split, grouped by part; images missing from the split are ignored. Shenzhen
    (``"shenzhen"``) is read only when asked for, so callers written before the site arrived see the same sets."""
    loaders = {"nih": nih_records, "kermany": kermany_records, "shenzhen": shenzhen_records}
    split = read_all_splits()
    parts: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
    for name in datasets:
        for rec in loaders[name](data_dir):
            part = split.get(rec.key)
            if part:
                parts[part].append(rec)
    return parts


DEFAULT_SPLIT = {"seed": 1129, "nih": (0.70, 0.15, 0.15), "kermany": (0.80, 0.10, 0.10)}


def make_default_split(data_dir: Path) -> dict[str, str]:
    """The committed split: NIH 70/15/15 and pediatric 80/10/10 by patient, fixed seed."""
    seed = int(DEFAULT_SPLIT["seed"])  # type: ignore[arg-type]
    out = make_split(nih_records(data_dir), DEFAULT_SPLIT["nih"], seed)  # type: ignore[arg-type]
    out.update(make_split(kermany_records(data_dir), DEFAULT_SPLIT["kermany"], seed))  # type: ignore[arg-type]
    return out


SHENZHEN_SEED, SHENZHEN_FRACTIONS = 1129, (0.70, 0.15, 0.15)


def make_shenzhen_split(data_dir: Path) -> dict[str, str]:
    """The committed Shenzhen split (``shenzhen_split.csv``): 70/15/15 stratified by tuberculosis / normal, fixed
    seed, one film per patient. Write it with ``write_split(make_shenzhen_split(d), SHENZHEN_SPLIT_FILE)``."""
    parts = stratified_split(shenzhen_records(data_dir), lambda r: r.urgent, SHENZHEN_SEED, SHENZHEN_FRACTIONS)
    return {r.key: part for part, recs in parts.items() for r in recs}


# ----------------------------------------------------------------------------- examples (demo, UI, quickstart)


#: a synthetic prior report written for the demo (not taken from any dataset)
DEMO_PRIOR_REPORT = (
    "FINDINGS: Small right pleural effusion, new since the prior study. No pneumothorax. "
    "Heart size is normal.\nIMPRESSION: Small right effusion. Possible early right lower lobe pneumonia."
)
#: a synthetic normal prior report (not from any dataset), to show negated mentions quoted as "contradicts"
DEMO_NORMAL_PRIOR_REPORT = (
    "FINDINGS: The lungs are clear. No focal consolidation, pleural effusion or pneumothorax. "
    "Heart size is normal.\nIMPRESSION: No acute cardiopulmonary abnormality."
)


#: the sample radiographs that ship inside the package (public-domain NIH and CC BY 4.0 pediatric films and a DICOM
#: built from one of them with synthetic identifiers; see samples/SAMPLES.md), so that a clone or an installed wheel
#: without the data directory still has something to triage
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLES_MANIFEST = SAMPLES_DIR / "samples.json"


@dataclass(frozen=True)
class ExampleSet:
    """The example images and where they come from, in words the UI and the demo show (no server paths)."""

    paths: list[Path]
    source: str
    bundled: bool = False


def bundled_samples() -> list[Path]:
    """The bundled sample files in the manifest's order (urgent adult, non-urgent adult, DICOM, child).
    Raises FileNotFoundError naming the file when the manifest or a sample is missing (a broken install)."""
    manifest = json.loads(_read_text(SAMPLES_MANIFEST))
    paths = [SAMPLES_DIR / entry["file"] for entry in manifest["samples"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"bundled samples missing (reinstall cxrtriage): {', '.join(missing)}")
    return paths


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: the package was installed without its sample files")
    return path.read_text(encoding="utf-8")


def examples_from(data: Path | None) -> ExampleSet:
    """The demo's and the web UI's examples: held-out test images of the data directory ``data`` when it holds the
    dataset tables, else (``data`` None, empty or another folder) the bundled samples, so that a clone, a wheel or a
    container without the data still demonstrates every input path. Callers holding settings pass
    ``settings.find_data_dir()``."""
    if data is not None:
        found = _data_examples(Path(data))
        if found:
            return ExampleSet(found, "held-out test images of the data directory")
        why = "the data directory holds no example images"
    else:
        why = "no data directory was found (CXRTRIAGE_DATA_DIR)"
    return ExampleSet(bundled_samples(), f"the samples bundled with cxrtriage, as {why}; see SAMPLES.md", bundled=True)


def example_paths(data_dir: Path | None = None) -> list[Path]:
    """The example images of :func:`examples_from` for ``data_dir`` (None: the configured data directory,
    :meth:`cxrtriage.config.Settings.find_data_dir`, read at this call)."""
    return examples_from(config.Settings().find_data_dir() if data_dir is None else Path(data_dir)).paths


def _data_examples(data: Path) -> list[Path]:
    """An urgent and a non-urgent NIH test image, the JPEG-compressed DICOM and a pediatric test image of ``data``,
    as far as they are there (none when it holds neither dataset's table)."""
    datasets = tuple(name for name in ("nih", "kermany") if (data / name / "labels.csv").is_file())
    test = load_split_records(data, datasets)["test"] if datasets else []
    nih = [r for r in test if r.dataset == "nih"]
    ped = [r for r in test if r.dataset == "kermany"]
    picks = [next((r.path for r in nih if r.urgent), None), next((r.path for r in nih if not r.urgent), None)]
    out = [p for p in picks if p is not None]
    dicom = data / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    if dicom.is_file():
        out.append(dicom)
    if ped:
        out.append(ped[0].path)
    return [p for p in out if p.is_file()]


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
    test = load_split_records(data)["test"]
    nih = [r for r in test if r.dataset == "nih"]
    ped = [r for r in test if r.dataset == "kermany"]
    adult = next((r for r in nih if not r.urgent), None)
    urgent = next((r for r in nih if r.urgent), None)
    child = next((r for r in ped if r.urgent), None)
    if adult is None or urgent is None or child is None:
        raise FileNotFoundError(
            f"{data}: the NIH (urgent and non-urgent) and pediatric (urgent) test images of the "
            "committed split were not found"
        )
    examples = [
        Example(
            "adult PNG", adult.path, note=f"NIH ChestX-ray14 {adult.view}, test split, truth {_truth(adult.urgent)}"
        ),
        Example("pediatric JPEG", child.path, note=f"pediatric (Kermany), test split, truth {_truth(child.urgent)}"),
        Example(
            "MONOCHROME1 ACR-NEMA DICOM",
            data / "dicom" / "CR-MONO1-10-chest.dcm",
            note="1993 Fuji CR, no Part-10 header, 10-bit MONOCHROME1; no label",
        ),
        Example(
            "JPEG-compressed DICOM",
            data / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm",
            note="SIIM-ACR CR PA, JPEG Baseline transfer syntax; pneumothorax-negative",
        ),
        Example(
            "adult PNG + prior report",
            urgent.path,
            DEMO_PRIOR_REPORT,
            note=f"NIH {urgent.view}, test split, truth {_truth(urgent.urgent)}; "
            "the prior report is synthetic demo text",
        ),
    ]
    missing = [str(e.path) for e in examples if not e.path.is_file()]
    if missing:
        raise FileNotFoundError(f"example images missing from the data directory: {', '.join(missing)}")
    return examples


def _truth(urgent: int) -> str:
    return "Urgent" if urgent else "Non-Urgent"
