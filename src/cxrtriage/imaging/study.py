"""What the reading worklist shows about a study, read from the decoded image: accession, study date and time, view
and modality (:class:`cxrtriage.worklist.StudyInfo`). The one place that reads them, so that ``POST /predict``, the
UI's Triage button and the DICOM node file the same columns.

Only a DICOM input's header (``LoadedImage.source``) has an accession, a date or a view; a PNG or JPEG gets its file
type as modality and nothing else. The study date and time are the hospital's data: they go to its worklist and are
never logged. A malformed value is left out rather than shown half-read.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cxrtriage.imaging.load import LoadedImage
from cxrtriage.worklist import KEY_PATTERN, StudyInfo

__all__ = ["study_info"]

#: the modality column of an input without a DICOM Modality: its file type
FILE_TYPES = {"png": "PNG", "jpeg": "JPEG", "dicom": "DICOM"}
#: where the date and time come from, in order of preference; a date and time are always read from the same pair
_WHEN_TAGS = (("StudyDate", "StudyTime"), ("AcquisitionDate", "AcquisitionTime"))


def _text(ds: Any, keyword: str) -> str:
    """A header value as stripped text ('' when absent or unreadable). Read raw (``get_item``), not converted:
    pydicom logs a malformed value it converts ("Invalid value for VR DA: ..."), which would put a date in the log."""
    try:
        element = ds.get_item(keyword)
        value = None if element is None else element.value
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
    except Exception:  # noqa: BLE001 - a malformed value is treated as absent, never echoed
        return ""
    return "" if value is None else str(value).strip().rstrip("\x00").strip()


def _date(value: str) -> str | None:
    """DICOM DA (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as ``YYYY-MM-DD``; None when it is not a date."""
    digits = value.replace(".", "")
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        return dt.datetime.strptime(digits, "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def _time(value: str) -> str | None:
    """DICOM TM (``HH``, ``HHMM``, ``HHMMSS.ffffff``, or the old ``HH:MM:SS``) as ``HH:MM``; None when not a time."""
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2}(\.\d{1,6})?)?", value.replace(":", ""))
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2) or 0)
    return f"{hours:02d}:{minutes:02d}" if hours < 24 and minutes < 60 else None


def _when(ds: Any) -> tuple[str | None, str | None]:
    for date_tag, time_tag in _WHEN_TAGS:
        date = _date(_text(ds, date_tag))
        if date is not None:
            return date, _time(_text(ds, time_tag))
    return None, None


def study_info(image: LoadedImage) -> StudyInfo:
    """The worklist's columns of a decoded image: from its DICOM header when it has one (StudyDate + StudyTime, else
    AcquisitionDate + AcquisitionTime; ViewPosition; Modality; an accession-like AccessionNumber), else only the file
    type as modality."""
    meta = image.meta
    modality = meta.modality or FILE_TYPES.get(meta.source_format)
    if image.source is None:
        return StudyInfo(view=meta.view_position, modality=modality)
    ds = image.source.dataset
    accession = _text(ds, "AccessionNumber")
    date, time = _when(ds)
    return StudyInfo(
        accession=accession if re.match(KEY_PATTERN, accession) else None,
        study_date=date,
        study_time=time,
        view=meta.view_position,
        modality=modality,
    )
