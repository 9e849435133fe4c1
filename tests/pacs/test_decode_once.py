"""Decode once: the adapter that receives an input parses and decodes it once, and the decoded image carries the
DICOM header (never its identifiers into any output) to the results that must file with its study; a DICOM node's
dataset is decoded as it arrived, without being written back to bytes or parsed again; cxrtriage's own results are
recognised by one Manufacturer constant."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest

from cxrtriage.imaging.load import load_image

pytestmark = pytest.mark.data

NAMES = (
    "SIIM_CR_chest_PA_jpegbaseline.dcm",
    "SIIM_CR_chest_PA_jpegbaseline_MONOCHROME1-modified.dcm",
    "CR-MONO1-10-chest.dcm",
)


def test_a_parsed_dataset_decodes_as_its_file_does(data_dir):
    for name in NAMES:
        path = data_dir / "dicom" / name
        from_file, from_dataset = load_image(path), load_image(pydicom.dcmread(path, force=True))
        assert np.array_equal(from_file.pixels, from_dataset.pixels) and from_file.meta == from_dataset.meta, name


def test_the_header_travels_with_the_image_and_never_into_its_repr_or_metadata(data_dir):
    path = data_dir / "dicom" / NAMES[0]
    header = pydicom.dcmread(path, stop_before_pixels=True)
    loaded = load_image(path.read_bytes())
    assert loaded.source.study_uid == header.StudyInstanceUID
    assert loaded.source.dataset.SOPInstanceUID == header.SOPInstanceUID and "PixelData" not in loaded.source.dataset
    shown = repr(loaded) + repr(loaded.source) + str(loaded.meta.to_dict())
    for keyword in ("StudyInstanceUID", "SOPInstanceUID", "PatientID", "PatientName"):
        value = str(header.get(keyword, "") or "")
        assert not value or value not in shown, keyword
    assert load_image(next(data_dir.joinpath("nih").rglob("*.png"))).source is None


def test_the_node_path_parses_and_decodes_each_instance_once(engine, data_dir, monkeypatch):
    """Given the dataset a DICOM node parsed: one decode, no dcmread, no dcmwrite, no deep copy of the dataset; the
    SR and Secondary Capture still come back."""
    import cxrtriage.imaging.load
    from cxrtriage.pacs.instance import process_instance

    source = pydicom.dcmread(data_dir / "dicom" / NAMES[1])
    decodes = []
    real_decode = cxrtriage.imaging.load.decode_dataset
    monkeypatch.setattr(cxrtriage.imaging.load, "decode_dataset", lambda *a: decodes.append(1) or real_decode(*a))
    refuse = lambda *a, **k: pytest.fail("parsed, written or deep-copied again")  # noqa: E731
    monkeypatch.setattr(pydicom, "dcmread", refuse)
    monkeypatch.setattr(pydicom, "dcmwrite", refuse)
    real_deepcopy = copy.deepcopy
    monkeypatch.setattr(
        copy,
        "deepcopy",
        lambda x, *a: refuse() if isinstance(x, pydicom.Dataset) and "PixelData" in x else real_deepcopy(x, *a),
    )
    outcome = process_instance(engine, source)
    assert outcome.status == "triaged" and len(decodes) == 1
    assert [str(ds.Modality) for ds in outcome.outputs] == ["SR", "OT"]
    assert outcome.context.polarity_flipped  # the mis-tagged twin: its picture is flipped by the typed flag


def test_own_results_are_recognised_by_the_one_manufacturer_constant(engine, data_dir):
    from cxrtriage.interop.dicom_output import MANUFACTURER
    from cxrtriage.pacs.instance import process_instance

    outcome = process_instance(engine, pydicom.dcmread(data_dir / "dicom" / NAMES[0]))
    for result in outcome.outputs:
        assert result.Manufacturer == MANUFACTURER
        buffer = io.BytesIO()
        result.save_as(buffer, enforce_file_format=True)
        assert process_instance(engine, buffer.getvalue()).status == "skipped"  # as the PACS sends it back


def test_rest_fhir_takes_the_study_from_the_decoded_upload(engine, data_dir, monkeypatch):
    """format=fhir does not read the DICOM header a second time."""
    from cxrtriage.interop.context import OutputContext
    from cxrtriage.interop.formats import get_format

    data = (data_dir / "dicom" / NAMES[0]).read_bytes()
    triaged = engine.run(load_image(data, kind="dicom"), save_crops=False)
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: pytest.fail("header parsed again"))
    report = get_format("fhir").render(OutputContext.of(triaged))
    assert report["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{triaged.image.source.study_uid}"
