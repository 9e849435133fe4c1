"""One received DICOM instance -> what goes back: the DICOM outputs of a triaged radiograph (every DICOM-encoded format
of :mod:`cxrtriage.interop.formats`: the SR and the Secondary Capture), or an SR saying why it was not triaged. The
DICOM node and the Orthanc poller both call :func:`process_instance`, so a pushed and a pulled instance get the same
result.

The instance is parsed once (the node hands over the dataset its worker read from the spooled file, whose header
alone was read on arrival to check it; the poller's download is parsed here) and its pixels decoded once
(:func:`~cxrtriage.imaging.load.load_image` on that dataset); the outputs are built from the pipeline run (the
analysed pixels, the header the decoder kept), never from a second decode or a deep copy.
Nothing here logs or returns a patient identifier: the outcome carries the typed error's message (which holds none),
a short key for the worklist and the datasets to send (which do hold the patient and study attributes they must
carry to file beside their source).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cxrtriage.errors import CXRTriageError, InputError
from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.dicom_output import is_own_result
from cxrtriage.schema import Prediction

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

    from cxrtriage.interop.formats import OutputFormat
    from cxrtriage.pipeline import Triage

log = logging.getLogger(__name__)

#: modalities the node triages (the SOP class may be CR, DX or, as in public datasets, Secondary Capture)
RADIOGRAPH_MODALITIES = ("CR", "DX")


@dataclass
class Outcome:
    """What happened to one instance: ``status`` is ``triaged``, ``not_triaged`` (an SR says why) or ``skipped``
    (one of cxrtriage's own results coming back: nothing is sent, to avoid a loop)."""

    status: str
    reason: str = ""
    prediction: Prediction | None = None
    worklist_key: str | None = None
    outputs: list[Any] = field(default_factory=list)  # pydicom datasets to send back (SR first)
    context: OutputContext | None = None  # a triaged instance's result, decoded image and header: for the FHIR report
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
        return (
            f"not a radiograph: modality {modality or 'missing'}; cxrtriage triages chest radiographs "
            f"({' or '.join(RADIOGRAPH_MODALITIES)}) only"
        )
    return None


def process_instance(
    engine: Triage, instance: Dataset | bytes, *, formats: Sequence[OutputFormat] | None = None
) -> Outcome:
    """Triage one DICOM instance (the dataset a DICOM node parsed, with its ``file_meta``; or its encoded bytes, with
    or without the file meta) and build what goes back: ``formats`` (default: every DICOM-encoded format of the
    registry). Never raises for a bad instance: an unreadable header raises :class:`InputError` only when not even
    the UIDs an SR needs can be read (the caller then answers the sender with a failure status)."""
    from cxrtriage.interop.formats import dicom_formats
    from cxrtriage.interop.sr import not_triaged_report

    ds = _checked_header(instance)
    log_id = instance_log_id(ds)
    if is_own_result(ds):
        return Outcome("skipped", reason="one of cxrtriage's own results", log_id=log_id)
    key = worklist_key(ds)
    reason = not_a_radiograph_reason(ds)
    if reason is None:
        try:
            triaged = engine.run(engine.load(ds))  # the one decode; the header stays with the image
        except CXRTriageError as exc:  # input refused by the gate or the decoder, or a model problem
            reason = str(exc)
        else:
            context = OutputContext.of(triaged)
            outputs = build_outputs(dicom_formats() if formats is None else formats, context)
            return Outcome(
                "triaged",
                prediction=triaged.prediction,
                worklist_key=key,
                outputs=outputs,
                context=context,
                log_id=log_id,
            )
    return Outcome(
        "not_triaged",
        reason=reason,
        worklist_key=key,
        outputs=[not_triaged_report(ds, reason, engine.info)],
        log_id=log_id,
    )


#: the UIDs without which an instance can be neither filed (its study) nor answered (an SR referencing it)
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")


def unfileable_reason(ds: Dataset) -> str | None:
    """Why an instance cannot be filed or answered (a UID of :data:`REQUIRED_UIDS` missing or empty), or None. The
    DICOM node answers such an instance 0xC210 on arrival instead of acknowledging it; the poller logs it."""
    for keyword in REQUIRED_UIDS:
        if not str(ds.get(keyword, "") or "").strip():
            return f"the instance has no {keyword}: it cannot be filed or answered"
    return None


def _checked_header(instance: Dataset | bytes) -> Dataset:
    """The instance as a dataset with the UIDs every answer needs, or :class:`InputError` without identifiers."""
    import pydicom

    try:
        ds = instance if isinstance(instance, pydicom.Dataset) else pydicom.dcmread(io.BytesIO(instance), force=True)
        problem = unfileable_reason(ds)
        if problem:
            raise InputError(problem)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage; the sender gets a failure status
        raise InputError(f"the instance's DICOM header cannot be read ({type(exc).__name__})") from None
    return ds


def build_outputs(formats: Sequence[OutputFormat], context: OutputContext) -> list[Any]:
    """Each format's dataset for one triaged instance, in order; a best-effort format that fails (the picture for
    old viewers) is logged by type and left out, so it never costs the SR, which says everything."""
    outputs = []
    for fmt in formats:
        try:
            outputs.append(fmt.render(context))
        except Exception as exc:  # noqa: BLE001 - re-raised unless the format is best effort
            if not fmt.best_effort:
                raise
            log.error("%s not written (%s)", fmt.name, type(exc).__name__)
    return outputs
