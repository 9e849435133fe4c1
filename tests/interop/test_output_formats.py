"""The output-format registry (cxrtriage.interop.formats): each format declares its media type, suffix, extra, DICOM
need and builder; the REST route, the CLI and the DICOM node read it. Adding a format is one module (its builder),
one registration and one test: here a dummy format is registered and every caller picks it up."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest

from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.formats import (
    BUILT_IN,
    NoDicomSource,
    OutputFormat,
    UnknownFormat,
    dicom_formats,
    format_names,
    get_format,
    register,
    unregister,
)

pytest.importorskip("highdicom", reason="the DICOM formats need the [interop] extra")
pytest.importorskip("fhir.resources", reason="the FHIR format needs the [interop] extra")

SIIM = ("dicom", "SIIM_CR_chest_PA_jpegbaseline.dcm")


def _summary(context: OutputContext) -> dict:
    """The dummy format's builder: what a later format's module would hold."""
    pred = context.prediction
    return {"label": pred.label, "score": pred.score, "study": context.source.study_uid if context.source else None}


SUMMARY = OutputFormat(
    "summary", "a one-line summary", "application/vnd.cxrtriage.summary+json", ".summary.json", _summary
)


@pytest.fixture()
def summary_format():
    register(SUMMARY)  # the one registration
    yield SUMMARY
    unregister(SUMMARY.name)


def test_the_built_in_formats_declare_what_they_need():
    assert format_names()[:4] == ("json", "fhir", "sr", "sc")
    declared = {f.name: (f.media_type, f.suffix, f.extra, f.needs_dicom_source, f.encoding) for f in BUILT_IN}
    assert declared == {
        "json": ("application/json", ".json", None, False, "json"),
        "fhir": ("application/fhir+json", ".fhir.json", "interop", False, "json"),
        "sr": ("application/dicom", ".sr.dcm", "interop", True, "dicom"),
        "sc": ("application/dicom", ".sc.dcm", "interop", True, "dicom"),
    }
    assert [f.name for f in dicom_formats()] == ["sr", "sc"]  # what the DICOM node sends back
    assert get_format("sc").best_effort and not get_format("sr").best_effort


def test_unknown_and_duplicate_names_are_refused_with_the_registered_names():
    with pytest.raises(UnknownFormat, match="json, fhir, sr, sc"):
        get_format("xml")
    with pytest.raises(ValueError, match="registered already"):
        register(get_format("json"))
    with pytest.raises(ValueError, match="built-in"):
        unregister("sr")


def test_a_missing_library_names_the_pip_command(monkeypatch):
    from cxrtriage import optional

    def missing(module: str, *, extra: str, purpose: str):
        raise optional.MissingDependency(f"{module} is needed for {purpose}: {optional.install_command(extra)}")

    monkeypatch.setattr(optional, "require", missing)
    with pytest.raises(optional.MissingDependency, match=r"format=sr.*pip install 'cxrtriage\[interop\]'"):
        get_format("sr").require("format=sr")
    get_format("json").require("format=json")  # needs nothing


def test_a_format_that_needs_a_dicom_source_says_so_for_a_png(engine, nih_pixels):
    context = OutputContext.of(engine.run(nih_pixels, save_crops=False))
    assert context.source is None
    with pytest.raises(NoDicomSource, match="not a DICOM input"):
        get_format("sr").render(context)
    assert get_format("fhir").render(context)["resourceType"] == "DiagnosticReport"


# ----------------------------------------------------------------------------- the callers pick up a new format


def test_the_cli_writes_a_registered_format_and_refuses_unknown_ones(summary_format, data_dir, tmp_path, capsys):
    from cxrtriage.cli.main import main

    source = data_dir.joinpath(*SIIM)
    png = next(data_dir.joinpath("nih").rglob("*.png"))
    out, folder = tmp_path / "rows.jsonl", tmp_path / "summaries"
    assert (
        main(["predict", str(source), str(png), "--format", "summary", "--out-dir", str(folder), "--out", str(out)])
        == 0
    )
    dicom_row, png_row = [json.loads(line) for line in out.read_text().splitlines()]
    assert dicom_row["summary_path"] == str(folder / f"{source.stem}.summary.json")
    written = json.loads(Path(dicom_row["summary_path"]).read_text())
    uid = pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
    assert written == {"label": dicom_row["label"], "score": dicom_row["score"], "study": uid}
    assert json.loads(Path(png_row["summary_path"]).read_text())["study"] is None
    capsys.readouterr()
    assert main(["predict", str(png), "--format", "xml", "--out-dir", str(folder)]) == 2
    assert "summary" in capsys.readouterr().err  # the registered names, the new one included
    assert main(["predict", str(png), "--format", "summary"]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_the_cli_keeps_its_older_options_and_their_file_names(data_dir, tmp_path):
    from cxrtriage.cli.main import main

    source = data_dir.joinpath(*SIIM)
    out = tmp_path / "rows.jsonl"
    assert (
        main(["predict", str(source), "--fhir", str(tmp_path / "f"), "--sr", str(tmp_path / "d"), "--out", str(out)])
        == 0
    )
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert [k for k in row if k.endswith("_path")] == ["fhir_path", "sr_path", "sc_path"]
    assert row["fhir_path"] == str(tmp_path / "f" / f"{source.stem}.fhir.json")
    assert row["sr_path"] == str(tmp_path / "d" / f"{source.stem}.sr.dcm")
    assert row["sc_path"] == str(tmp_path / "d" / f"{source.stem}.sc.dcm")


def test_rest_answers_in_a_registered_format_and_lists_it_when_refusing(summary_format, service_client, data_dir):
    data = data_dir.joinpath(*SIIM).read_bytes()
    r = service_client.post("/predict?format=summary", files={"file": ("x.dcm", data, "application/octet-stream")})
    assert r.status_code == 200 and r.headers["content-type"].startswith(SUMMARY.media_type)
    uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID
    assert r.json()["study"] == uid
    bad = service_client.post("/predict?format=xml", files={"file": ("x.dcm", data, "application/octet-stream")})
    assert bad.status_code == 422 and "summary" in bad.json()["detail"]


def test_rest_returns_the_dicom_formats_for_a_dicom_upload_only(service_client, data_dir, dciodvfy_errors, tmp_path):
    data = data_dir.joinpath(*SIIM).read_bytes()
    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    for name in ("sr", "sc"):
        r = service_client.post(f"/predict?format={name}", files={"file": ("x.dcm", data, "application/octet-stream")})
        assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
        result = pydicom.dcmread(io.BytesIO(r.content))
        assert result.StudyInstanceUID == source.StudyInstanceUID and result.Manufacturer == "cxrtriage"
        path = tmp_path / f"result.{name}.dcm"
        path.write_bytes(r.content)
        assert not dciodvfy_errors(path), name
    png = next(data_dir.joinpath("nih").rglob("*.png")).read_bytes()
    r = service_client.post("/predict?format=sr", files={"file": ("x.png", png, "application/octet-stream")})
    assert r.status_code == 422 and "DICOM" in r.json()["detail"]


def test_the_dicom_node_sends_every_registered_dicom_format(engine, data_dir):
    """A DICOM-encoded format registered later goes back to the PACS beside the SR and the SC."""
    from cxrtriage.pacs.handling import InstanceHandler
    from cxrtriage.pacs.instance import process_instance

    def note(context: OutputContext) -> pydicom.Dataset:
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.StudyInstanceUID = "1.2.3", context.source.study_uid
        return ds

    register(
        OutputFormat(
            "note",
            "a dummy DICOM note",
            "application/dicom",
            ".note.dcm",
            note,
            encoding="dicom",
            needs_dicom_source=True,
        )
    )
    try:
        source = pydicom.dcmread(data_dir.joinpath(*SIIM))
        outcome = process_instance(engine, source)
        assert outcome.status == "triaged"
        assert [ds.SOPClassUID for ds in outcome.outputs][-1] == "1.2.3" and len(outcome.outputs) == 3
        assert outcome.outputs[-1].StudyInstanceUID == source.StudyInstanceUID
        assert [f.name for f in InstanceHandler(engine, None, secondary_capture=False).formats] == ["sr", "note"]
    finally:
        unregister("note")
