"""A triage result as a FHIR DiagnosticReport, for an EHR: built and validated with ``fhir.resources`` (its R4B
models: FHIR 4.3, the R4-compatible release the library ships; the ``[interop]`` extra).

The report is ``preliminary`` (decision support, never a final read) and holds its Observations and the model as a
contained Device, so one JSON document is self-contained: the urgency category, the calibrated score with the
threshold and review band as components, the needs-review flag, and each finding the explanation names (none for a
finding output whose held-out AUC is below the naming bar). The imaging study is referenced by its DICOM Study
Instance UID when the input was a DICOM file; no patient identifier is copied (the receiving system links the report
to its patient through the study). The conclusion is the one-line explanation followed by the disclaimer.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid

from cxrtriage.interop.context import OutputContext
from cxrtriage.schema import DISCLAIMER, Prediction

MEDIA_TYPE = "application/fhir+json"
#: what the REST API documents of the report (fhir.resources validates the whole of it)
OPENAPI_SCHEMA = {
    "type": "object",
    "required": ["resourceType", "status"],
    "properties": {"resourceType": {"const": "DiagnosticReport"}},
}
RADIOLOGY = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}
IMAGING_CATEGORY = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
    "display": "Imaging",
}
PROBABILITY = {"unit": "probability", "system": "http://unitsofmeasure.org", "code": "1"}


def _quantity(value: float) -> dict:
    return {"value": round(float(value), 4), **PROBABILITY}


def _observation(oid: str, text: str, **value) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "preliminary",
        "category": [{"coding": [IMAGING_CATEGORY]}],
        "code": {"text": text},
        "device": {"reference": "#model"},
        **value,
    }


def fhir_models(purpose: str = "FHIR output"):
    """fhir.resources' R4B DiagnosticReport module, or MissingDependency naming the pip command."""
    from cxrtriage.optional import require

    return require("fhir.resources.R4B.diagnosticreport", extra="interop", purpose=purpose)


def from_context(context: OutputContext) -> dict:
    """The output format ``fhir``: the report of a triaged input, pointing at its study when it was DICOM (the Study
    Instance UID its decoder kept, so the header is not read again)."""
    return diagnostic_report(context.prediction, study_uid=context.source.study_uid if context.source else None)


def diagnostic_report(pred: Prediction, *, study_uid: str | None = None, issued: _dt.datetime | None = None) -> dict:
    """The validated DiagnosticReport as a JSON-ready dict (raises pydantic's ValidationError if it were invalid)."""
    module = fhir_models()
    low, high = pred.review_band
    observations = [
        _observation(
            "urgency",
            "Chest radiograph triage category (AI decision support)",
            valueCodeableConcept={"text": pred.label},
        ),
        _observation(
            "score",
            "Calibrated probability that the study is urgent",
            valueQuantity=_quantity(pred.score),
            component=[
                {"code": {"text": "Operating threshold"}, "valueQuantity": _quantity(pred.threshold)},
                {"code": {"text": "Review band, low"}, "valueQuantity": _quantity(low)},
                {"code": {"text": "Review band, high"}, "valueQuantity": _quantity(high)},
            ],
        ),
        _observation("review", "Needs human review", valueBoolean=bool(pred.needs_review)),
    ]
    for i, f in enumerate(x for x in pred.findings if x.named_in_explanation):
        observations.append(
            _observation(
                f"finding-{i}",
                f.name,
                valueQuantity=_quantity(f.probability),
                note=[{"text": f"held-out AUC {f.held_out_auc}"}],
            )
        )
    model = pred.model
    device = {
        "resourceType": "Device",
        "id": "model",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "version": [{"value": model.version}],
        "note": [{"text": f"sha256 {model.sha256}; backend {model.backend}"}],
    }
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
        "contained": [device, *observations],
        "status": "preliminary",
        "category": [{"coding": [RADIOLOGY]}],
        "code": {"text": "Chest radiograph urgency triage (AI decision support)"},
        "issued": (issued or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
        "result": [{"reference": f"#{o['id']}"} for o in observations],
        "conclusion": f"{pred.explanation} {DISCLAIMER}",
    }
    if study_uid:
        report["imagingStudy"] = [{"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}}]
    validated = module.DiagnosticReport(**report)
    return json.loads(validated.model_dump_json(exclude_none=True))
