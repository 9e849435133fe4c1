"""DICOM SR output (TID 1500, highdicom): what a PACS files beside the radiograph must say what the result says,
point at its source image, and be valid DICOM (dciodvfy, when dicom3tools is installed)."""

from __future__ import annotations

import json
import shutil

import pydicom
import pytest

hd = pytest.importorskip("highdicom", reason="DICOM SR output needs the [interop] extra")

pytestmark = pytest.mark.data

DICOM = ("dicom", "SIIM_CR_chest_PA_jpegbaseline.dcm")
OLD_CR = ("dicom", "CR-MONO1-10-chest.dcm")  # no preamble, no Patient ID, an invalid Patient's Age


@pytest.fixture(scope="module")
def written(data_dir, tmp_path_factory):
    from cxrtriage.cli.main import main

    tmp = tmp_path_factory.mktemp("sr")
    inputs = [tmp / name[1] for name in (DICOM, OLD_CR)]
    for name, target in zip((DICOM, OLD_CR), inputs):
        shutil.copy(data_dir.joinpath(*name), target)
    png = tmp / "plain.png"
    shutil.copy(next(data_dir.joinpath("nih").rglob("*.png")), png)
    out_json = tmp / "rows.jsonl"
    code = main(["predict", *map(str, inputs), str(png), "--sr", str(tmp / "sr"), "--out", str(out_json)])
    rows = [json.loads(line) for line in out_json.read_text().splitlines()]
    return code, inputs, rows


def test_every_dicom_input_gets_an_sr_on_its_study_and_a_png_says_why_not(written):
    code, inputs, rows = written
    assert code == 0  # all three inputs triaged
    by_path = {r["path"]: r for r in rows}
    for source_path in inputs:
        row = by_path[str(source_path)]
        sr = hd.sr.srread(row["sr_path"])
        source = pydicom.dcmread(source_path, stop_before_pixels=True, force=True)
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
        assert sr.StudyInstanceUID == source.StudyInstanceUID  # files with the study it describes
        assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"  # never a final read
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    plain = [r for r in rows if r["path"].endswith("plain.png")][0]
    assert "sr_path" not in plain and "DICOM" in plain["sr_skipped"]


def test_sr_says_what_the_prediction_says_boxes_included(written):
    _, inputs, rows = written
    row = [r for r in rows if r["path"] == str(inputs[0])][0]
    sr = hd.sr.srread(row["sr_path"])
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(row["crops"])
    for group, crop in zip(groups, row["crops"]):
        corners = group.roi.value
        assert corners.min(axis=0).tolist() == [crop["x"], crop["y"]]
        assert corners.max(axis=0).tolist() == [crop["x"] + crop["w"], crop["y"] + crop["h"]]
    image_level = sr.content.get_image_measurement_groups()[0]
    values = {m.name.meaning: m.value for m in image_level.get_measurements()}
    assert values["Calibrated probability of urgency"] == pytest.approx(row["score"])
    assert values["Operating threshold"] == pytest.approx(row["threshold"])
    category = {e.name.meaning: e.value.meaning for e in image_level.get_qualitative_evaluations()}
    assert category["Triage category"] == {"Urgent": "Urgent", "Non-Urgent": "Non-urgent"}[row["label"]]
    assert category["Needs human review"] == ("Yes" if row["needs_review"] else "No")
    text = "\n".join(str(item.TextValue) for item in image_level[0].ContentSequence if item.ValueType == "TEXT")
    assert row["disclaimer"] in text and row["explanation"] in text
    assert row["model"]["name"] in text and row["model"]["version"] in text  # algorithm identification
    assert row["model"]["sha256"] in text


def test_every_sr_passes_dciodvfy(written, dciodvfy_errors):
    _, _, rows = written
    for row in rows:
        if "sr_path" in row:
            errors = dciodvfy_errors(row["sr_path"])
            assert not errors, errors
