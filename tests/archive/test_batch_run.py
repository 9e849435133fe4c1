"""``cxrtriage batch`` on the session's 2-CPU Ray cluster: every input one row (failures included), folders, a
manifest given as a file:// URI, the summary, the JSONL and output formats, and no deadlock with 2 actors on 2 CPUs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from archive_helpers import run_with_timeout, sample_files

from cxrtriage.archive.run import RESERVED_CPUS, BatchOptions, actor_cpus, run_batch
from cxrtriage.archive.sources import file_block_rows
from cxrtriage.config import Settings
from cxrtriage.interop.outputs import requested_outputs


def test_actors_and_read_tasks_fit_the_cluster() -> None:
    for cpus, workers in ((2, 1), (2, 2), (16, 16), (4, 3)):
        assert workers * actor_cpus(cpus, workers) + RESERVED_CPUS <= cpus + 1e-9


def test_a_few_files_are_cut_so_that_every_worker_gets_some() -> None:
    assert [file_block_rows(n, 64, 2) for n in (1, 3, 20, 128, 1000)] == [1, 2, 10, 64, 64]
    assert file_block_rows(5, 64, 16) == 1 and file_block_rows(0, 64, 2) == 1


def test_one_file_runs_on_one_worker_without_ray_warnings(ray_cluster, tmp_path: Path, recwarn) -> None:
    """A folder of one film: one actor, not an idle second one and Ray's warning about it."""
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(sample_files()[0], folder)
    options = BatchOptions(sources=[str(folder)], out=str(tmp_path / "r.parquet"), settings=Settings(), progress=False)
    result = run_with_timeout(options)
    assert result["run"]["workers"] == 1 and result["rows"] == 1
    assert not [w for w in recwarn if "concurrent actors" in str(w.message)]


def test_folder_and_manifest_uri_into_parquet(ray_cluster, archive: Path, tmp_path: Path) -> None:
    manifest = archive / "manifest.jsonl"
    rows = [
        {"path": "study0/00001323_001.png", "accession": "00123", "prior_report": "Large right pneumothorax."},
        {"path": str(archive / "study1" / "00001383_000.png"), "accession": "A7"},
        {"path": "study1/missing.png"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (archive / "list.csv").write_text("path,accession\nstudy1/person1019_bacteria_2950.jpeg,00042\n")
    pd.DataFrame({"path": ["study1/00001383_000.png"], "accession": ["P1"]}).to_parquet(archive / "list.parquet")
    out, jsonl, formats = tmp_path / "results.parquet", tmp_path / "rows.jsonl", tmp_path / "formats"
    options = BatchOptions(
        sources=[str(archive), manifest.as_uri(), str(archive / "list.csv"), str(archive / "list.parquet")],
        out=str(out),
        settings=Settings(),
        workers=2,
        batch_size=2,
        jsonl=str(jsonl),
        outputs=requested_outputs({}, ["json"], str(formats)),
        progress=False,
    )
    result = run_with_timeout(options)

    df = pd.read_parquet(out)
    folder_inputs = 4 + 2  # the four samples, the DICOM named by UID, the broken PNG (not the hidden or .txt file)
    assert len(df) == folder_inputs + len(rows) + 2 == result["rows"]
    assert sorted(df.path[df.path.str.startswith(str(archive))].unique())[:1]  # folder rows keep the folder as given
    assert set(df.path) >= {r["path"] for r in rows}  # manifest rows keep the path as written
    by_path = df.set_index("path")
    assert by_path.loc[str(archive / "study1" / "1.2.840.113619"), "source_format"] == "dicom"
    broken = by_path.loc[str(archive / "study0" / "broken.png")]
    assert broken.error_type == "InvalidImageError" and broken.label is None and bool(broken.needs_review)
    missing = by_path.loc["study1/missing.png"]
    assert missing.error == "file not found" and missing.sha256 is None
    first = by_path.loc["study0/00001323_001.png"]
    assert first.accession == "00123" and first.label in ("Urgent", "Non-Urgent")
    assert set(df.accession.dropna()) == {"00123", "A7", "00042", "P1"}  # accession numbers stay text
    p1 = df[df.accession.eq("P1")].iloc[0]
    assert p1.path == "study1/00001383_000.png" and p1.label is not None  # read from the manifest's folder
    assert any(p["source"] == "prior_report" for p in json.loads(first.prediction)["provenance"])
    assert json.loads(first.outputs)["json_path"].startswith(str(formats))

    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["rows"] == len(df) and summary["run"]["failed"] == 2 and summary["run"]["workers"] == 2
    assert sum(summary["by_label"].values()) + sum(summary["by_error_type"].values()) == len(df)
    assert sum(summary["score_histogram"]["counts"]) == df.score.notna().sum()
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == len(df) and sum("error" in line for line in lines) == 2

    with pytest.raises(FileExistsError, match="--resume"):  # never mixed into an earlier run's results silently
        run_batch(options)


def test_a_bad_source_is_refused_before_ray_starts(tmp_path: Path, capsys) -> None:
    from cxrtriage.cli.main import main

    (tmp_path / "list.csv").write_text("file,accession\na.png,1\n")
    assert main(["batch", str(tmp_path / "list.csv"), "--out", str(tmp_path / "r.parquet")]) == 2
    assert "a manifest needs a 'path' column (it has: file, accession)" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.parquet")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
