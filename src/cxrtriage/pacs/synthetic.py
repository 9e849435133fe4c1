"""A DICOM instance made from a PNG or JPEG with synthetic identifiers, so that the public PNG datasets can be sent
through a real DICOM network in the demo and the tests. The identifiers are invented by the caller (never taken
from a file name) and the pixels are the file's own, 8-bit greyscale."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: SOP classes by the modality the instance claims (CR: triaged; OT: a non-radiograph the node must answer
#: "not triaged")
SOP_CLASS = {"CR": "1.2.840.10008.5.1.4.1.1.1", "OT": "1.2.840.10008.5.1.4.1.1.7"}


def dicom_from_picture(
    picture: Path,
    out: Path,
    *,
    patient_id: str,
    accession: str,
    modality: str = "CR",
    view_position: str = "PA",
    study_uid: str | None = None,
    patient_name: str | None = None,
    when: _dt.datetime | None = None,
    uid: Callable[[str], str] | None = None,
    manufacturer: str = "synthetic (cxrtriage demo)",
    extra: Mapping[str, Any] | None = None,
):
    """Write ``picture`` as a DICOM file at ``out`` with the given synthetic identifiers; returns the dataset.

    ``when`` (default now) dates the study; ``uid(part)`` makes the UIDs (default: fresh random ones; a seeded one
    makes the file reproducible, as the bundled sample needs); ``extra`` sets further attributes last."""
    import numpy as np
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    make_uid = uid or (lambda _part: generate_uid())
    pixels = np.asarray(Image.open(picture).convert("L"), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = make_uid("instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    now = when or _dt.datetime.now()
    ds.PatientName, ds.PatientID = patient_name or f"SYNTHETIC^{patient_id}", patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or make_uid("study"), make_uid("series")
    ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", accession, ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = modality, "CHEST", view_position
    ds.Manufacturer = manufacturer
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return ds
