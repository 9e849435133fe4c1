"""A triage result as a DICOM Comprehensive SR following TID 1500 (Measurement Report), written with highdicom (the
``[interop]`` extra), so a PACS files it beside the radiograph it describes.

The image-level measurement group holds the calibrated score and the operating threshold (UCUM "1"), the urgency
category and needs-review flag as qualitative evaluations, each named finding, the quoted prior-report sentences and
the disclaimer as text; each evidence box is a planar ROI group whose SCOORD is a closed rectangle on the source
image (the crops are in original pixels, which is the source image's grid). The model is the algorithm
identification (name, version, sha256 as a parameter) and the observing device. Patient and study attributes are
copied from the source by highdicom (the SR belongs to the same patient and must file with the study); nothing
here logs them. The report is preliminary: never complete, verified or final. Only the source's header is used
(the output format ``sr`` of :mod:`cxrtriage.interop.formats` passes the one the decoder kept).
"""

from __future__ import annotations

import warnings

from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.dicom_output import MANUFACTURER, complete_source, highdicom_module
from cxrtriage.schema import DISCLAIMER, ModelInfo, Prediction

SR_PROCEDURE = ("168731009", "SCT", "Chest X-ray")
#: cxrtriage's own concepts, in a private coding scheme (DICOM PS3.16 8.2: designators starting "99"), rather than
#: borrowing codes of a public terminology that mean something else
LOCAL = "99CXRTRIAGE"
LABEL_CODES = {"Urgent": ("URGENT", LOCAL, "Urgent"), "Non-Urgent": ("NONURGENT", LOCAL, "Non-urgent")}
NOT_TRIAGED = ("NOTTRIAGED", LOCAL, "Not triaged")
YES, NO = ("373066001", "SCT", "Yes"), ("373067005", "SCT", "No")


def _algorithm(hd, model: ModelInfo):
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=[f"sha256={model.sha256}", f"backend={model.backend}"]
    )


def _text_items(hd, texts: list[tuple[str, str]]) -> list:
    from pydicom.sr.coding import Code

    return [
        hd.sr.TextContentItem(
            name=Code(name.upper().replace(" ", ""), LOCAL, name),
            value=value[:1024],
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for name, value in texts
    ]


def _image_group(hd, source, algorithm, measurements: list, evaluations: list, texts: list[tuple[str, str]]):
    """The image-level measurement group (TID 1501) on ``source``, with ``texts`` appended as TEXT items."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="cxrtriage image-level result", uid=hd.UID()),
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)],
    )
    group[0].ContentSequence.extend(_text_items(hd, texts))
    return group


def _report_dataset(
    hd, source, model: ModelInfo, groups: list, *, series_number: int, instance_number: int, series_description: str
):
    """The ComprehensiveSR around ``groups``: the model as observing device, patient and study from ``source``."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=model.name, model_name=model.version
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=Code(*SR_PROCEDURE),
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    with warnings.catch_warnings():
        # highdicom warns about unusual person names by quoting them: a patient identifier must never reach a log
        warnings.simplefilter("ignore", UserWarning)
        sr = hd.sr.ComprehensiveSR(
            evidence=[source],
            content=report[0],
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            series_description=series_description,
        )
    sr.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the disclaimer's dash and quoted reports are not Latin-1
    return sr


def from_context(context: OutputContext):
    """The output format ``sr``: the SR of a triaged DICOM input, on the header its decoder kept."""
    if context.source is None:
        raise ValueError("a DICOM SR needs a DICOM source")
    return structured_report(context.prediction, context.source.dataset)


def structured_report(pred: Prediction, source, *, series_number: int = 901, instance_number: int = 1):
    """The TID 1500 Comprehensive SR (a highdicom ``ComprehensiveSR`` dataset) for ``pred`` on the pydicom dataset
    ``source`` (its header is enough)."""
    import numpy as np
    from pydicom.sr.coding import Code

    hd = highdicom_module("DICOM SR output")
    source = complete_source(source)
    algorithm = _algorithm(hd, pred.model)
    one = Code("1", "UCUM", "no units")
    measurements = [
        hd.sr.Measurement(
            name=Code("SCORE", LOCAL, "Calibrated probability of urgency"),
            value=float(pred.score),
            unit=one,
            algorithm_id=algorithm,
        ),
        hd.sr.Measurement(
            name=Code("THRESHOLD", LOCAL, "Operating threshold"),
            value=float(pred.threshold),
            unit=one,
            algorithm_id=algorithm,
        ),
    ]
    for i, f in enumerate(pred.findings):
        if f.named_in_explanation:
            measurements.append(
                hd.sr.Measurement(
                    name=Code(f"FINDING{i}", LOCAL, f"Probability of {f.name}"),
                    value=float(f.probability),
                    unit=one,
                    algorithm_id=algorithm,
                )
            )
    evaluations = [
        hd.sr.QualitativeEvaluation(Code("CATEGORY", LOCAL, "Triage category"), Code(*LABEL_CODES[pred.label])),
        hd.sr.QualitativeEvaluation(
            Code("REVIEW", LOCAL, "Needs human review"), Code(*(YES if pred.needs_review else NO))
        ),
    ]
    texts = [("Explanation", pred.explanation), ("Disclaimer", DISCLAIMER)]
    texts += [("Prior report quote", p.snippet) for p in pred.provenance if p.source == "prior_report"]
    groups = [_image_group(hd, source, algorithm, measurements, evaluations, texts)]
    source_image = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=source.SOPClassUID, referenced_sop_instance_uid=source.SOPInstanceUID
    )
    for i, crop in enumerate(pred.crops):
        x0, y0, x1, y1 = crop.x, crop.y, crop.x + crop.w, crop.y + crop.h
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners, source_image=source_image
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    identifier=f"evidence box {i + 1}" + (f" ({crop.region})" if crop.region else ""), uid=hd.UID()
                ),
                referenced_region=region,
                algorithm_id=algorithm,
                finding_type=Code("EVIDENCE", LOCAL, "Evidence region (AI decision support)"),
            )
        )
    return _report_dataset(
        hd,
        source,
        pred.model,
        groups,
        series_number=series_number,
        instance_number=instance_number,
        series_description="cxrtriage AI triage (preliminary)",
    )


def not_triaged_report(source, reason: str, model: ModelInfo, *, series_number: int = 901, instance_number: int = 1):
    """An SR saying that ``source`` was received but not triaged, and why (wrong modality, lateral view, unreadable
    pixels...), so that nothing sent to the DICOM node disappears silently. ``reason`` must hold no identifier (the
    typed errors' messages hold none). The category is "Not triaged" and the review flag Yes: a human reads it."""
    from pydicom.sr.coding import Code

    hd = highdicom_module("DICOM SR output")
    source = complete_source(source)
    algorithm = _algorithm(hd, model)
    evaluations = [
        hd.sr.QualitativeEvaluation(Code("CATEGORY", LOCAL, "Triage category"), Code(*NOT_TRIAGED)),
        hd.sr.QualitativeEvaluation(Code("REVIEW", LOCAL, "Needs human review"), Code(*YES)),
    ]
    texts = [("Reason not triaged", reason), ("Disclaimer", DISCLAIMER)]
    groups = [_image_group(hd, source, algorithm, [], evaluations, texts)]
    return _report_dataset(
        hd,
        source,
        model,
        groups,
        series_number=series_number,
        instance_number=instance_number,
        series_description="cxrtriage AI triage: not triaged",
    )
