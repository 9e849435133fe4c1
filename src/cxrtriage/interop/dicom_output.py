"""What every DICOM object cxrtriage writes (the SR, the Secondary Capture) shares: the one Manufacturer value that
marks it as cxrtriage's own (the DICOM node recognises its results coming back by it and never triages them again),
the patient and study attributes it copies from its source, and the highdicom import with its install hint.

The source is never deep-copied: :func:`complete_source` makes a header-only dataset that shares the source's element
objects and only adds or removes elements of its own, so building a result neither copies the pixel data nor
changes the dataset the caller holds.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import TYPE_CHECKING

from cxrtriage.imaging.dicom import header_only

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

#: the Manufacturer (0008,0070) of every DICOM object cxrtriage writes; an instance carrying it is one of its results
MANUFACTURER = "cxrtriage"

#: Type 2 attributes the results copy from their source: present but empty when the source lacks them (legal in DICOM)
COPIED_TYPE2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def highdicom_module(purpose: str = "DICOM output") -> ModuleType:
    """highdicom, or MissingDependency naming the pip command (``[interop]``)."""
    from cxrtriage.optional import require

    return require("highdicom", extra="interop", purpose=purpose)


def is_own_result(ds: Dataset) -> bool:
    """True for an instance cxrtriage wrote (its SR or Secondary Capture coming back from the PACS)."""
    return str(ds.get("Manufacturer", "")) == MANUFACTURER


def complete_source(source: Dataset) -> Dataset:
    """A header-only copy of ``source`` (element objects shared, pixel data left out) with empty Type 2 patient/study
    attributes added where absent (old CR files omit some) and an invalid Patient's Age left out."""
    filled = header_only(source)
    for keyword in COPIED_TYPE2:
        if keyword not in filled:
            setattr(filled, keyword, "")  # a new element of the copy: the source's own are never assigned to
    if "PatientAge" in filled and not re.fullmatch(r"\d{3}[DWMY]", str(filled.get("PatientAge", ""))):
        del filled.PatientAge  # an invalid AS value (e.g. "62") would make the result itself invalid
    return filled
