"""Tests for prototype/data_scripts: download_datasets.sh (no network) and prepare_mimic_subset.py
(on a tiny synthetic MIMIC-CXR-JPG-like tree; no real MIMIC data is involved)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "prototype" / "data_scripts"
DOWNLOAD_SH = SCRIPTS / "download_datasets.sh"
PREPARE_PY = SCRIPTS / "prepare_mimic_subset.py"

NIH_COLUMNS = [
    "file",
    "image_index",
    "patient_id",
    "follow_up",
    "age",
    "sex",
    "view",
    "folder_label",
    "nih_labels",
    "google2019",
    "urgency",
    "width",
    "height",
    "sha256",
]
CHEXPERT_COLS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")


def _load_prepare():
    spec = importlib.util.spec_from_file_location("prepare_mimic_subset", PREPARE_PY)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


prepare = _load_prepare()


def _run_sh(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CXRTRIAGE_DATA_DIR"}
    if data_dir is not None:
        env["CXRTRIAGE_DATA_DIR"] = str(data_dir)
    return subprocess.run(["bash", str(DOWNLOAD_SH), *args], capture_output=True, text=True, env=env, timeout=60)


# --------------------------------------------------------------------------- download_datasets.sh


@needs_bash
def test_download_script_is_executable_and_strict():
    assert os.access(DOWNLOAD_SH, os.X_OK)
    text = DOWNLOAD_SH.read_text()
    assert "set -euo pipefail" in text
    syntax = subprocess.run(["bash", "-n", str(DOWNLOAD_SH)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@needs_bash
def test_download_help():
    res = _run_sh("--help")
    assert res.returncode == 0
    for word in ("--check", "--download", "kermany", "iu_reports", "manual"):
        assert word in res.stdout


@needs_bash
def test_download_check_reports_missing_folders(tmp_path):
    res = _run_sh("--check", data_dir=tmp_path)
    assert res.returncode == 0, res.stderr
    assert str(tmp_path) in res.stdout
    for item in ("nih/images", "nih/labels.csv", "nih/boxes.csv", "kermany/labels.csv", "iu_reports/iu_reports.csv"):
        assert f"[missing] {item}" in res.stdout
    assert "[ok]" not in res.stdout
    assert list(tmp_path.iterdir()) == []  # --check never creates or downloads anything


@needs_bash
def test_download_check_counts_present_files(tmp_path):
    images = tmp_path / "nih" / "images"
    images.mkdir(parents=True)
    for i in range(3):
        (images / f"0000000{i}_000.png").write_bytes(b"x")
    (tmp_path / "nih" / "labels.csv").write_text(",".join(NIH_COLUMNS) + "\n" + "a\n" * 3)
    (tmp_path / "kermany" / "images" / "NORMAL").mkdir(parents=True)
    res = _run_sh("--check", "--data-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any("[ok]" in line and "nih/images" in line and "3 files" in line for line in lines)
    assert any("[ok]" in line and "nih/labels.csv" in line and "3 rows" in line for line in lines)
    assert any("[ok]" in line and "kermany/images/NORMAL" in line and "0 files" in line for line in lines)
    assert "[missing] kermany/images/PNEUMONIA" in res.stdout


@needs_bash
def test_download_check_missing_data_dir(tmp_path):
    res = _run_sh("--check", data_dir=tmp_path / "does-not-exist")
    assert res.returncode == 0
    assert "does not exist" in res.stdout


@needs_bash
def test_download_default_prints_info_without_downloading(tmp_path):
    res = _run_sh(data_dir=tmp_path)
    assert res.returncode == 0
    out = res.stdout
    assert "physionet.org/files/mimic-cxr-jpg/2.1.0/" in out
    assert "--ask-password" in out
    assert "CC BY 4.0" in out and "CC BY-NC-ND 4.0" in out
    assert "Research Use Agreement" in out
    assert "file,label,subtype,patient_key,urgency,sha256" in out
    assert list(tmp_path.iterdir()) == []


@needs_bash
@pytest.mark.parametrize(
    "args",
    [("--bogus",), ("--download",), ("--download", "nonexistent"), ("--info", "nope"), ("--data-dir",)],
)
def test_download_usage_errors_exit_2(args, tmp_path):
    res = _run_sh(*args, data_dir=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip()


@needs_bash
@pytest.mark.parametrize("name", ["nih", "mimic", "chexpert"])
def test_download_manual_only_datasets_refuse(name, tmp_path):
    res = _run_sh("--download", name, data_dir=tmp_path)
    assert res.returncode == 2
    assert "manual-only" in res.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- prepare_mimic_subset.py

# (subject, study, split, {finding: value}); one frontal (+ sometimes lateral) image per study.
STUDIES = [
    ("10000001", "50000001", "train", {"Pneumonia": "1.0"}),  # urgent, positive
    ("10000001", "50000002", "train", {"No Finding": "1.0"}),  # same patient, 2nd study
    ("10000002", "50000003", "train", {"Edema": "-1.0"}),  # uncertain -> urgent
    ("10000003", "50000004", "train", {"Cardiomegaly": "1.0"}),  # chronic -> non_urgent
    ("10000004", "50000005", "train", {"Pleural Effusion": "-1.0", "Atelectasis": "1.0"}),
    ("10000005", "50000006", "train", {}),  # nothing mentioned
    ("11000006", "50000007", "validate", {"Pneumothorax": "1.0"}),
    ("11000007", "50000008", "validate", {"No Finding": "1.0"}),
    ("12000008", "50000009", "test", {"Lung Lesion": "1.0"}),
    ("12000009", "50000010", "test", {"Support Devices": "1.0", "Consolidation": "0.0"}),
    ("12000009", "50000011", "test", {"Consolidation": "-1.0"}),  # test patient, 2nd study
    ("13000010", "50000012", "train", {"Pneumonia": "1.0"}),  # no CheXpert row (see below)
]
NO_LABEL_STUDY = "50000012"


def _write_gz_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with gzip.open(path, "wt", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def make_mimic_tree(root: Path, with_files: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta, chex, split = [], [], []
    for i, (subject, study, sp, labels) in enumerate(STUDIES):
        images = [(f"f{i:03d}aaaa-frontal", "PA" if i % 2 else "AP"), (f"l{i:03d}bbbb-lateral", "LATERAL")]
        if i == 0:
            images.append((f"f{i:03d}cccc-second-ap", "AP"))  # two frontal images in one study
        for dicom, view in images:
            meta.append(
                [
                    dicom,
                    subject,
                    study,
                    "CHEST (PA AND LAT)",
                    view,
                    "3056",
                    "2544",
                    f"2180{(i % 9) + 1:02d}15",
                    f"{100000 + i}.000",
                    "",
                    "",
                    "",
                ]
            )
            split.append([dicom, study, subject, sp])
            if with_files:
                img = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
                img.parent.mkdir(parents=True, exist_ok=True)
                img.write_bytes(f"fake jpeg {dicom}".encode())
        if study != NO_LABEL_STUDY:
            chex.append([subject, study] + [labels.get(c, "") for c in CHEXPERT_COLS])
    _write_gz_csv(
        root / "mimic-cxr-2.0.0-metadata.csv.gz",
        [
            "dicom_id",
            "subject_id",
            "study_id",
            "PerformedProcedureStepDescription",
            "ViewPosition",
            "Rows",
            "Columns",
            "StudyDate",
            "StudyTime",
            "ProcedureCodeSequence_CodeMeaning",
            "ViewCodeSequence_CodeMeaning",
            "PatientOrientationCodeSequence_CodeMeaning",
        ],
        meta,
    )
    _write_gz_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id"] + CHEXPERT_COLS, chex)
    _write_gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split)
    return root


def read_labels(out: Path) -> list[dict[str, str]]:
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_prepare_writes_nih_layout_and_applies_urgency_rule(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic-cxr-jpg")
    out = tmp_path / "subset"
    rc = prepare.main(
        ["--mimic-root", str(root), "--out", str(out), "--n", "100", "--max-per-patient", "0", "--seed", "1"]
    )
    assert rc == 0
    with open(out / "labels.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[: len(NIH_COLUMNS)] == NIH_COLUMNS
    assert {"study_id", "split"} <= set(header)

    rows = read_labels(out)
    by_study = {r["study_id"]: r for r in rows}
    # every labelled study contributes exactly one frontal image; the unlabelled one is skipped
    assert set(by_study) == {s[1] for s in STUDIES if s[1] != NO_LABEL_STUDY}
    assert len(rows) == len(by_study)
    assert all(r["view"] in {"PA", "AP"} for r in rows)

    expected = {
        "50000001": "urgent",
        "50000002": "non_urgent",
        "50000003": "urgent",
        "50000004": "non_urgent",
        "50000005": "urgent",
        "50000006": "non_urgent",
        "50000007": "urgent",
        "50000008": "non_urgent",
        "50000009": "urgent",
        "50000010": "non_urgent",
        "50000011": "urgent",
    }
    assert {s: r["urgency"] for s, r in by_study.items()} == expected
    assert by_study["50000003"]["chexpert_uncertain"] == "Edema"
    assert "uncertain" in by_study["50000003"]["urgency_reason"]
    assert by_study["50000001"]["chexpert_positive"] == "Pneumonia"

    r = by_study["50000004"]
    assert r["file"] == f"files/p10/p10000003/s50000004/{r['image_index'][:-4]}.jpg"
    assert (root / r["file"]).is_file()  # paths are relative to --mimic-root
    assert r["patient_id"] == "10000003"
    assert (r["width"], r["height"]) == ("2544", "3056")
    assert len(r["sha256"]) == 64
    assert r["age"] == r["sex"] == r["nih_labels"] == ""
    # follow_up orders a patient's studies
    assert by_study["50000001"]["follow_up"] == "0" and by_study["50000002"]["follow_up"] == "1"
    # no image is copied without --copy-images
    assert not (out / "images").exists()
    readme = (out / "README.md").read_text()
    assert "PhysioNet" in readme and "urgent" in readme and "safety" in readme
    assert (out / "subset.json").is_file()


def test_prepare_is_patient_disjoint_and_respects_official_split(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic")
    out = tmp_path / "out"
    assert prepare.main(["--mimic-root", str(root), "--out", str(out), "--n", "100", "--max-per-patient", "0"]) == 0
    rows = read_labels(out)
    split_of_patient: dict[str, set[str]] = {}
    for r in rows:
        split_of_patient.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_patient.values())
    official = {subject: sp for subject, _, sp, _ in STUDIES}
    assert all(r["split"] == official[r["patient_id"]] for r in rows)
    # patients 10000001 and 12000009 each have two studies in their (shared) split
    assert sum(r["patient_id"] == "10000001" for r in rows) == 2
    assert sum(r["patient_id"] == "12000009" for r in rows) == 2


def test_prepare_enforces_patient_split_when_tables_disagree(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic")
    # move one study of test patient 12000009 to 'train' in the split table
    path = root / "mimic-cxr-2.0.0-split.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        if row[1] == "50000011":
            row[3] = "train"
    _write_gz_csv(path, rows[0], rows[1:])
    out = tmp_path / "out"
    assert prepare.main(["--mimic-root", str(root), "--out", str(out), "--n", "100", "--max-per-patient", "0"]) == 0
    labels = read_labels(out)
    assert {r["split"] for r in labels if r["patient_id"] == "12000009"} == {"test"}


def test_prepare_subset_size_seed_and_max_per_patient(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic")
    a = tmp_path / "a"
    b = tmp_path / "b"
    assert prepare.main(["--mimic-root", str(root), "--out", str(a), "--n", "5", "--seed", "7"]) == 0
    assert prepare.main(["--mimic-root", str(root), "--out", str(b), "--n", "5", "--seed", "7"]) == 0
    rows_a, rows_b = read_labels(a), read_labels(b)
    assert len(rows_a) == 5
    assert rows_a == rows_b  # deterministic for a given seed
    patients = [r["patient_id"] for r in rows_a]
    assert len(patients) == len(set(patients))  # default: one image per patient
    # requesting more than available returns what exists (one per patient: 9 labelled patients)
    c = tmp_path / "c"
    assert prepare.main(["--mimic-root", str(root), "--out", str(c), "--n", "1000"]) == 0
    assert len(read_labels(c)) == 9


def test_prepare_views_and_uncertain_policies(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic")
    pa = tmp_path / "pa"
    assert prepare.main(["--mimic-root", str(root), "--out", str(pa), "--views", "PA", "--max-per-patient", "0"]) == 0
    assert {r["view"] for r in read_labels(pa)} == {"PA"}

    excl = tmp_path / "excl"
    assert (
        prepare.main(
            ["--mimic-root", str(root), "--out", str(excl), "--uncertain", "exclude", "--max-per-patient", "0"]
        )
        == 0
    )
    studies = {r["study_id"] for r in read_labels(excl)}
    assert "50000003" not in studies and "50000011" not in studies
    assert "50000001" in studies

    nonurg = tmp_path / "nonurg"
    assert (
        prepare.main(
            ["--mimic-root", str(root), "--out", str(nonurg), "--uncertain", "non_urgent", "--max-per-patient", "0"]
        )
        == 0
    )
    assert {r["study_id"]: r["urgency"] for r in read_labels(nonurg)}["50000003"] == "non_urgent"


def test_prepare_copy_images(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic")
    out = tmp_path / "out"
    assert prepare.main(["--mimic-root", str(root), "--out", str(out), "--n", "3", "--copy-images"]) == 0
    rows = read_labels(out)
    assert len(rows) == 3
    for r in rows:
        assert r["file"].startswith("images/")
        assert (out / r["file"]).is_file()


def test_prepare_labels_only_without_images(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic", with_files=False)
    out = tmp_path / "out"
    assert prepare.main(["--mimic-root", str(root), "--out", str(out)]) == 2  # files/ required by default
    assert prepare.main(["--mimic-root", str(root), "--out", str(out), "--labels-only"]) == 0
    rows = read_labels(out)
    assert rows and all(r["sha256"] == "" for r in rows)


@pytest.mark.parametrize(
    "missing",
    ["mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.0.0-split.csv.gz"],
)
def test_prepare_missing_table_exits_2(tmp_path, capsys, missing):
    root = make_mimic_tree(tmp_path / "mimic")
    (root / missing).unlink()
    rc = prepare.main(["--mimic-root", str(root), "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert missing in err and "physionet.org" in err
    assert not (tmp_path / "out" / "labels.csv").exists()


def test_prepare_other_input_errors_exit_2(tmp_path, capsys):
    root = make_mimic_tree(tmp_path / "mimic")
    assert prepare.main(["--mimic-root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert prepare.main(["--mimic-root", str(root), "--out", str(tmp_path / "o"), "--n", "0"]) == 2
    assert prepare.main(["--mimic-root", str(root), "--out", str(tmp_path / "o"), "--splits", "dev"]) == 2
    assert prepare.main(["--mimic-root", str(root), "--out", str(tmp_path / "o"), "--urgent-findings", "Mass"]) == 2
    assert prepare.main(["--mimic-root", str(root), "--out", str(REPO / "mimic_subset_should_not_exist")]) == 2
    assert not (REPO / "mimic_subset_should_not_exist").exists()
    assert prepare.main(["--out", str(tmp_path / "o")]) == 2  # argparse usage error
    # a table without the expected columns
    _write_gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["foo", "bar"], [["1", "2"]])
    assert prepare.main(["--mimic-root", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lacks the column" in err


def test_prepare_cli_subprocess(tmp_path):
    root = make_mimic_tree(tmp_path / "mimic")
    res = subprocess.run(
        [sys.executable, str(PREPARE_PY), "--mimic-root", str(root), "--out", str(tmp_path / "o"), "--n", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "Wrote 4 images" in res.stdout
    res = subprocess.run(
        [sys.executable, str(PREPARE_PY), "--mimic-root", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "error" in res.stderr
