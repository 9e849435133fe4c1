"""The sample radiographs bundled in the package (``src/cxrtriage/samples``): a clone, a wheel or a container without
the data directory still demonstrates itself. What a user relies on: the samples are there, small, documented and
installed; ``cxrtriage demo`` and the web UI use them when no data directory is found; the DICOM sample decodes and
its synthetic identifiers never reach an output or a log."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from cxrtriage.cli.main import main
from cxrtriage.data import SAMPLES_DIR, bundled_samples, example_paths, examples_from

REPO = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((SAMPLES_DIR / "samples.json").read_text(encoding="utf-8"))
#: what the DICOM sample's header says about its (synthetic) patient and study: none may leave the process
IDENTIFIERS = ("SYNTHETIC^SAMPLE", "SYNTHETIC", "SAMPLE-0001", "SAMPLE-ACC-0001", "20000101")


def _dicom_sample() -> Path:
    return next(p for p in bundled_samples() if p.suffix == ".dcm")


def _uids() -> list[str]:
    import pydicom

    ds = pydicom.dcmread(_dicom_sample())
    return [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]


@pytest.fixture()
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory that does not exist (as in a clean clone: ``../shared/data`` is not consulted then)."""
    monkeypatch.setenv("CXRTRIAGE_DATA_DIR", str(tmp_path / "no-such-data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_samples_stay_under_one_megabyte_and_each_is_documented() -> None:
    files = [p for p in SAMPLES_DIR.rglob("*") if p.is_file() and p.name != "__pycache__"]
    total = sum(p.stat().st_size for p in files)
    print(f"bundled samples: {total} bytes in {len(files)} files")
    assert total < 1_000_000, f"the bundled samples are {total} bytes together (limit 1 MB)"
    readme = (SAMPLES_DIR / "SAMPLES.md").read_text(encoding="utf-8")
    samples = bundled_samples()
    assert 3 <= len(samples) <= 5
    for path in samples:
        rel = path.relative_to(SAMPLES_DIR).as_posix()
        assert f"`{rel}`" in readme, f"{rel} is not listed in SAMPLES.md"
        entry = next(e for e in MANIFEST["samples"] if e["file"] == rel)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], f"{rel} differs from samples.json"
        assert entry["licence"] and entry["citation"] and entry["original_file"] in readme
    for words in ("Wang", "CVPR 2017", "CC BY 4.0", "10.17632/rscbjbr9sj", "not representative of accuracy"):
        assert words in readme
    # nothing in the folder that the manifest does not describe (a stray dataset image would be redistributed)
    described = {e["file"] for e in MANIFEST["samples"]} | {"samples.json", "SAMPLES.md"}
    assert {p.relative_to(SAMPLES_DIR).as_posix() for p in files} == described


def test_every_sample_is_package_data() -> None:
    """The wheel (and so the container and the Space) carries every sample: pyproject's package-data covers each."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cxrtriage"]
    package = SAMPLES_DIR.parent
    for path in SAMPLES_DIR.rglob("*"):
        if path.is_file():
            rel = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatchcase(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns), rel


def test_the_dicom_sample_decodes_with_its_synthetic_header() -> None:
    import pydicom

    from cxrtriage.imaging.load import load_image

    ds = pydicom.dcmread(_dicom_sample())
    assert (str(ds.PatientName), ds.PatientID) == ("SYNTHETIC^SAMPLE", "SAMPLE-0001")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1" and ds.Modality == "CR" and ds.ViewPosition == "PA"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    loaded = load_image(_dicom_sample())
    assert loaded.pixels.shape == (512, 512) and 0.0 <= loaded.pixels.min() < loaded.pixels.max() <= 1.0
    meta = json.dumps(loaded.meta.to_dict(), default=str)
    assert loaded.meta.modality == "CR" and loaded.meta.view_position == "PA"
    assert not any(s in meta for s in (*IDENTIFIERS, *_uids()))


def test_the_dicom_sample_is_a_valid_cr_image(dciodvfy_errors) -> None:
    assert dciodvfy_errors(_dicom_sample()) == []


def test_without_a_data_directory_the_examples_are_the_bundled_samples(no_data: Path) -> None:
    found = examples_from(None)
    assert found.bundled and found.paths == bundled_samples() and "bundled" in found.source
    assert example_paths() == bundled_samples()  # CXRTRIAGE_DATA_DIR names a folder that is not there
    empty = no_data / "empty"
    empty.mkdir()
    assert example_paths(empty) == bundled_samples()  # a folder without the dataset tables
    assert "holds no example images" in examples_from(empty).source


def test_demo_cli_triages_the_samples_without_data(
    no_data: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert "Images: the samples bundled with cxrtriage" in out
    rows = [json.loads(line) for line in (no_data / "runs" / "demo" / "predictions.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == [p.name for p in bundled_samples()]
    assert all(r["label"] in ("Urgent", "Non-Urgent") and "error" not in r for r in rows)
    expected = {e["file"].split("/")[-1]: e["bundled_model"]["label"] for e in MANIFEST["samples"]}
    assert {Path(r["path"]).name: r["label"] for r in rows} == expected  # what SAMPLES.md reports
    written = (no_data / "runs" / "demo" / "predictions.jsonl").read_text()
    for secret in (*IDENTIFIERS, *_uids()):
        assert secret not in out + err + caplog.text + written, f"{secret} leaked"


def test_the_ui_offers_the_samples_without_data(no_data: Path) -> None:
    pytest.importorskip("gradio")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.ui.app import mount_ui

    settings = Settings(crops_dir=no_data / "crops", worklist_path=no_data / "worklist.sqlite")
    app = FastAPI()
    mount_ui(app, lambda: None, dict, settings)
    with TestClient(app) as client:
        config = client.get("/ui/config").text
    assert "Examples: the samples bundled with cxrtriage" in config
    for path in bundled_samples():
        assert path.name in config, f"{path.name} is not offered"


def test_predict_of_the_dicom_sample_never_shows_its_identifiers(no_data: Path) -> None:
    """The installed command as a user runs it: stdout (the JSON) and stderr (logs) carry none of the header."""
    proc = subprocess.run(
        [sys.executable, "-m", "cxrtriage.cli.main", "predict", str(_dicom_sample())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["label"] == "Non-Urgent"
    for secret in (*IDENTIFIERS, *_uids()):
        assert secret not in proc.stdout + proc.stderr, f"{secret} leaked"


def test_make_samples_rebuilds_them_byte_for_byte(data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_samples.py"), "--check", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "samples reproduce byte for byte" in proc.stdout
