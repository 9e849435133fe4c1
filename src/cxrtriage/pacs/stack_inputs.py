"""What the demo's modality sends (:mod:`cxrtriage.pacs.stack`): the shared DICOM files and public PNGs converted to
DICOM with synthetic identifiers, each with the answer it must get, and dcmtk's ``storescu`` that sends them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cxrtriage.pacs.stack_tools import MODALITY_AET, DemoError, find_tool


@dataclass
class Sent:
    """One instance the modality sent: what it is (no identifier of a real patient: these are synthetic or the
    shared anonymised files) and its UIDs, to find its SR afterwards."""

    name: str
    path: Path
    sop_instance_uid: str
    study_instance_uid: str
    expect: str  # "triaged" or "not_triaged"


def demo_inputs(data_dir: Path, folder: Path) -> list[Sent]:
    """The shared DICOM files as they are, plus public PNGs converted to DICOM with synthetic identifiers: an urgent
    and a non-urgent adult test film, a child's film, a lateral view (the node must refuse it) and an adult film
    labelled as another modality (OT: it must be answered "not triaged")."""
    import pydicom
    from pydicom.uid import generate_uid

    from cxrtriage.data import example_paths, lateral_paths, load_split_records
    from cxrtriage.pacs.synthetic import dicom_from_picture

    sent: list[Sent] = []
    for path in sorted((data_dir / "dicom").glob("*.dcm")):
        ds = pydicom.dcmread(path, force=True)
        if any(s.sop_instance_uid == str(ds.SOPInstanceUID) for s in sent):
            # the MONOCHROME1 twin of a shared file reuses its SOP Instance UID; a PACS would take it for the same
            # instance and drop it, so a copy with a fresh UID is sent instead
            ds.SOPInstanceUID = generate_uid()
            if "MediaStorageSOPInstanceUID" in ds.get("file_meta", {}):
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = folder / f"{path.stem}-new-uid.dcm"
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(path)
        sent.append(Sent(path.name, path, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), "triaged"))
    pictures = [p for p in example_paths(data_dir) if p.suffix.lower() != ".dcm"]
    names = ["adult-urgent", "adult-non-urgent", "child"][: len(pictures)]
    plan = [(n, p, "CR", "PA", "triaged") for n, p in zip(names, pictures)]
    laterals = lateral_paths(data_dir)
    if laterals:
        plan.append(("lateral", laterals[0], "CR", "LL", "not_triaged"))
    adults = [r.path for r in load_split_records(data_dir, ("nih",))["test"]]
    if adults:
        plan.append(("other-modality", adults[-1], "OT", "PA", "not_triaged"))
    for i, (name, picture, modality, view, expect) in enumerate(plan, start=1):
        out = folder / f"{name}.dcm"
        ds = dicom_from_picture(
            picture, out, patient_id=f"SYN{i:04d}", accession=f"DEMO{i:04d}", modality=modality, view_position=view
        )
        sent.append(Sent(name, out, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), expect))
    return sent


def storescu(files: list[Path], aec: str, port: int, log: Path) -> None:
    """Send ``files`` like a modality (``-xy``: JPEG baseline files go as they are, others uncompressed)."""
    cmd = [find_tool("storescu"), "-xy", "-aet", MODALITY_AET, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
    with open(log, "ab") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode  # noqa: S603 - dcmtk's storescu found by path, argument list
    if code != 0:
        raise DemoError(f"storescu to {aec} failed with exit code {code} (see {log})")
