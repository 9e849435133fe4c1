"""One received DICOM instance -> what goes back: the SR (and Secondary Capture) of a triaged radiograph, or an SR
saying why it was not triaged. The DICOM node and the Orthanc poller both call :func:`process_instance`, so a
pushed and a pulled instance get the same result.

Nothing here logs or returns a patient identifier: the outcome carries the typed error's message (which holds none),
a short key for the worklist and the datasets to send (which do hold the patient and study attributes they must
carry to file beside their source).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cxrtriage.errors import CXRTriageError, InputError
from cxrtriage.schema import Prediction

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

    from cxrtriage.pipeline import Triage

log = logging.getLogger(__name__)

#: modalities the node triages (the SOP class may be CR, DX or, as in public datasets, Secondary Capture)
RADIOGRAPH_MODALITIES = ("CR", "DX")
#: the Manufacturer cxrtriage writes into its own SR and Secondary Capture: such an instance is never triaged again
OWN_MANUFACTURER = "cxrtriage"


@dataclass
class Outcome:
    """What happened to one instance: ``status`` is ``triaged``, ``not_triaged`` (an SR says why) or ``skipped``
    (one of cxrtriage's own results coming back: nothing is sent, to avoid a loop)."""

    status: str
    reason: str = ""
    prediction: Prediction | None = None
    worklist_key: str | None = None
    outputs: list[Any] = field(default_factory=list)  # pydicom datasets to send back (SR first)
    source: Any = None  # the received dataset (header and pixels), for the FHIR study reference
    log_id: str = "-"  # a hash of the SOP Instance UID: what log lines name (never the accession or a patient ID)


def worklist_key(ds: Dataset) -> str:
    """The worklist key of an instance: its Accession Number when that is accession-like (the sender's own key), plus
    a short hash of the SOP Instance UID so that two images of one study are two rows; only the hash when the
    accession is missing or odd. Never a name or a patient ID."""
    from cxrtriage.worklist import KEY_PATTERN

    digest = instance_log_id(ds)
    accession = str(ds.get("AccessionNumber", "") or "").strip()
    key = f"{accession}-{digest}"
    return key if accession and re.match(KEY_PATTERN, key) else f"instance-{digest}"


def instance_log_id(ds: Dataset) -> str:
    """8 hex characters of the SOP Instance UID's sha256: enough to follow one instance through the logs."""
    return hashlib.sha256(str(ds.get("SOPInstanceUID", "")).encode()).hexdigest()[:8]


def not_a_radiograph_reason(ds: Dataset) -> str | None:
    """Why the header alone rules the instance out (None for a CR/DX image, which the pipeline's own gate then
    checks: view, body part, pixels)."""
    modality = str(ds.get("Modality", "") or "").upper()
    if modality not in RADIOGRAPH_MODALITIES:
        return (f"not a radiograph: modality {modality or 'missing'}; cxrtriage triages chest radiographs "
                f"({' or '.join(RADIOGRAPH_MODALITIES)}) only")
    return None


def process_instance(engine: Triage, data: bytes, *, secondary_capture: bool = True) -> Outcome:
    """Triage one DICOM instance given as its encoded bytes (with or without the file meta) and build what goes
    back. Never raises for a bad instance: an unreadable header raises :class:`InputError` only when not even the
    UIDs an SR needs can be read (the caller then answers the sender with a failure status)."""
    import pydicom

    from cxrtriage.interop.sr import not_triaged_report, structured_report

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
            if not str(ds.get(keyword, "")):
                raise InputError(f"the instance has no {keyword}: it cannot be filed or answered")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage; the sender gets a failure status
        raise InputError(f"the instance's DICOM header cannot be read ({type(exc).__name__})") from None
    if str(ds.get("Manufacturer", "")) == OWN_MANUFACTURER:
        return Outcome("skipped", reason="one of cxrtriage's own results", source=ds, log_id=instance_log_id(ds))
    key = worklist_key(ds)
    reason = not_a_radiograph_reason(ds)
    if reason is None:
        try:
            prediction = engine.predict(data)
        except CXRTriageError as exc:  # input refused by the gate or the decoder, or a model problem
            reason = str(exc)
        else:
            outputs = [structured_report(prediction, ds)]
            if secondary_capture:
                outputs += _secondary_capture(prediction, ds)
            return Outcome("triaged", prediction=prediction, worklist_key=key, outputs=outputs, source=ds,
                           log_id=instance_log_id(ds))
    return Outcome("not_triaged", reason=reason, worklist_key=key,
                   outputs=[not_triaged_report(ds, reason, engine.info)], source=ds, log_id=instance_log_id(ds))


def _secondary_capture(prediction: Prediction, ds: Dataset) -> list[Dataset]:
    """The burned-in evidence picture, or nothing when it cannot be drawn (the SR, which says everything, still
    goes back)."""
    from cxrtriage.interop.secondary_capture import secondary_capture

    try:
        return [secondary_capture(prediction, ds)]
    except Exception as exc:  # noqa: BLE001 - a picture for old viewers must never cost the SR
        log.error("secondary capture not written (%s)", type(exc).__name__)
        return []
