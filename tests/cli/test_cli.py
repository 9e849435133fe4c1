"""The command line as a user runs it: one JSON object per input, errors included, meaningful exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cxrtriage.cli.main import main


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_predict_writes_one_row_per_input_and_fails_on_bad_ones(data_dir, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    dicoms = sorted(str(p) for p in (data_dir / "dicom").glob("*.dcm"))
    out = tmp_path / "preds.jsonl"
    code = main(["predict", *dicoms, str(bad), "--out", str(out)])
    assert code == 1
    rows = _rows(out)
    assert [r["path"] for r in rows] == [*dicoms, str(bad)]
    assert all("label" in r and "error" not in r for r in rows[:3])
    assert rows[3]["error"] and rows[3]["error_type"] == "InvalidImageError"
    assert "failed" in capsys.readouterr().err


def test_predict_all_good_exits_zero_and_reads_prior_report(data_dir, tmp_path):
    report = tmp_path / "prior.txt"
    report.write_text("Small left pleural effusion. No pneumothorax.")
    out = tmp_path / "p.jsonl"
    img = data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    assert main(["predict", str(img), "--prior-report-file", str(report), "--out", str(out)]) == 0
    (row,) = _rows(out)
    quotes = [p["snippet"] for p in row["provenance"] if p["source"] == "prior_report"]
    assert "Small left pleural effusion." in quotes


def test_missing_prior_report_file_is_a_usage_error(data_dir, tmp_path, capsys):
    img = data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    assert main(["predict", str(img), "--prior-report-file", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read prior report" in capsys.readouterr().err


def test_non_chest_dicom_gets_clear_error(tmp_path):
    import pydicom.data

    out = tmp_path / "p.jsonl"
    assert main(["predict", pydicom.data.get_testdata_file("CT_small.dcm"), "--out", str(out)]) == 1
    (row,) = _rows(out)
    assert row["error_type"] == "NotAChestXrayError" and "CT" in row["error"]


def test_dicom_identifiers_never_reach_output(tmp_path):
    """pydicom's CT_small carries a patient name and ID: neither may appear in what we print."""
    import pydicom
    import pydicom.data

    src = pydicom.data.get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(src)
    secrets = [str(ds.PatientName), str(ds.PatientID)]
    proc = subprocess.run([sys.executable, "-m", "cxrtriage.cli.main", "predict", src], capture_output=True, text=True)
    assert proc.returncode == 1
    for s in secrets:
        assert s and s not in proc.stdout and s not in proc.stderr


def test_runtime_path_does_not_import_torch(data_dir):
    code = (
        "import sys, cxrtriage\n"
        f"r = cxrtriage.predict({str(data_dir / 'dicom' / 'SIIM_CR_chest_PA_jpegbaseline.dcm')!r}, "
        "'No pneumothorax.')\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "print(r.label, bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unknown_command_is_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_demo_triages_examples(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "For clinical decision support only — not a diagnostic tool." in out
    assert "score" in out and "provenance [prior_report]" in out
    rows = _rows(tmp_path / "runs" / "demo" / "predictions.jsonl")
    assert len(rows) >= 3 and all("label" in r for r in rows)


def test_an_unknown_backend_is_a_configuration_error(monkeypatch, tmp_path, capsys):
    """CXRTRIAGE_BACKEND=nope: one sentence naming the variable and the backends there are, exit 2, no traceback."""
    monkeypatch.setenv("CXRTRIAGE_BACKEND", "nope")
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["predict", str(image)]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'nope'" in err and "CXRTRIAGE_BACKEND" in err and "bundled" in err
    assert "Traceback" not in err
