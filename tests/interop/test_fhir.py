"""FHIR DiagnosticReport output: valid for fhir.resources, faithful to the Prediction, pointing at the DICOM study,
free of patient identifiers; from `cxrtriage predict --fhir` and `POST /predict?format=fhir`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("fhir.resources", reason="FHIR output needs the [interop] extra")
from fhir.resources.R4B.diagnosticreport import DiagnosticReport  # noqa: E402

from cxrtriage.interop.fhir import MEDIA_TYPE, diagnostic_report  # noqa: E402
from cxrtriage.schema import DISCLAIMER, Finding  # noqa: E402

DICOM = ("dicom", "SIIM_CR_chest_PA_jpegbaseline.dcm")


def _contained(report: dict) -> dict[str, dict]:
    return {r["id"]: r for r in report["contained"]}


@pytest.fixture(scope="module")
def pred(engine, nih_pixels):
    return engine.predict(nih_pixels, save_crops=False)


def test_report_is_valid_fhir_and_says_what_the_prediction_says(pred):
    report = diagnostic_report(pred)
    DiagnosticReport(**report)  # a round trip through the library's validation
    obs = _contained(report)
    assert report["status"] == "preliminary" and report["conclusion"].endswith(DISCLAIMER)
    assert obs["urgency"]["valueCodeableConcept"]["text"] == pred.label
    assert obs["score"]["valueQuantity"]["value"] == pytest.approx(pred.score, abs=1e-4)
    components = {c["code"]["text"]: c["valueQuantity"]["value"] for c in obs["score"]["component"]}
    assert components["Operating threshold"] == pytest.approx(pred.threshold, abs=1e-4)
    assert obs["review"]["valueBoolean"] is pred.needs_review
    assert {r["reference"] for r in report["result"]} == {
        f"#{k}" for k, v in obs.items() if v["resourceType"] == "Observation"
    }
    assert (
        obs["model"]["version"][0]["value"] == pred.model.version
        and pred.model.sha256 in obs["model"]["note"][0]["text"]
    )
    assert "imagingStudy" not in report  # a PNG has no study to point at


def test_only_findings_the_explanation_may_name_become_observations(pred):
    named = Finding(name="lung opacity", probability=0.81, held_out_auc=0.8, named_in_explanation=True)
    unnamed = Finding(name="effusion", probability=0.9, held_out_auc=0.6, named_in_explanation=False)
    report = diagnostic_report(pred.model_copy(update={"findings": [named, unnamed]}))
    texts = [o["code"]["text"] for o in report["contained"] if o["resourceType"] == "Observation"]
    assert "lung opacity" in texts and "effusion" not in texts


def test_cli_writes_one_report_per_input_with_the_dicom_study_and_no_identifier(data_dir, tmp_path, capsys):
    from cxrtriage.cli.main import main

    dicom = tmp_path / "in" / DICOM[1]
    dicom.parent.mkdir()
    shutil.copy(data_dir.joinpath(*DICOM), dicom)
    twin = tmp_path / "other" / DICOM[1]  # the same name twice: nothing is overwritten
    twin.parent.mkdir()
    shutil.copy(dicom, twin)
    out = tmp_path / "fhir"
    assert main(["predict", str(dicom), str(twin), "--fhir", str(out)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    paths = [Path(r["fhir_path"]) for r in rows]
    assert sorted(p.name for p in paths) == [
        "SIIM_CR_chest_PA_jpegbaseline-2.fhir.json",
        "SIIM_CR_chest_PA_jpegbaseline.fhir.json",
    ]
    ds = pydicom.dcmread(dicom, stop_before_pixels=True)
    text = paths[0].read_text()
    report = json.loads(text)
    assert report["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{ds.StudyInstanceUID}"
    for tag in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        value = str(ds.get(tag, "") or "")
        assert not value or value not in text, tag


def test_rest_returns_fhir_json_on_request_and_refuses_an_unknown_format(service_client, data_dir):
    data = data_dir.joinpath(*DICOM).read_bytes()
    r = service_client.post("/predict?format=fhir", files={"file": ("x.dcm", data, "application/octet-stream")})
    assert r.status_code == 200 and r.headers["content-type"].startswith(MEDIA_TYPE)
    report = r.json()
    DiagnosticReport(**report)
    uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID
    assert report["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{uid}"
    bad = service_client.post("/predict?format=xml", files={"file": ("x.dcm", data, "application/octet-stream")})
    assert bad.status_code == 422


def test_rest_says_what_to_install_when_fhir_is_missing(service_client, data_dir, monkeypatch):
    from cxrtriage import optional

    def missing(module: str, *, extra: str, purpose: str):
        raise optional.MissingDependency(f"{purpose} needs {module}: pip install 'cxrtriage[{extra}]'")

    monkeypatch.setattr(optional, "require", missing)
    data = data_dir.joinpath(*DICOM).read_bytes()
    r = service_client.post("/predict?format=fhir", files={"file": ("x.dcm", data, "application/octet-stream")})
    assert r.status_code == 501 and "interop" in r.text
