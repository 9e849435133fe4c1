"""Same answers: for real shared images (NIH PNGs, pediatric JPEGs, the DICOMs, a broken file) the batch row holds
what ``cxrtriage predict`` prints for the same input, apart from timings and crop file names; and the rest of the
project never loads Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from archive_helpers import run_with_timeout

from cxrtriage.archive.rows import predict_line
from cxrtriage.archive.run import BatchOptions
from cxrtriage.cli.batch import predict_paths
from cxrtriage.config import Settings


def _comparable(row: dict) -> dict:
    row = {k: v for k, v in row.items() if k != "timings_ms"}
    row["crops"] = [{k: v for k, v in c.items() if k != "thumb_path"} for c in row.get("crops", [])]
    return row


def test_batch_rows_equal_predict(ray_cluster, data_dir: Path, tmp_path: Path) -> None:
    nih = sorted((data_dir / "nih" / "images").glob("*.png"))[:2]
    kermany = sorted((data_dir / "kermany" / "images").rglob("*.jpeg"))[:2]
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    paths = [str(p) for p in [*nih, *kermany, *sorted((data_dir / "dicom").glob("*.dcm")), broken]]
    assert len(paths) == 8

    predicted = tmp_path / "predict.jsonl"
    assert predict_paths(paths, out=str(predicted), settings=Settings(crops_dir=tmp_path / "crops-predict")) == 1
    want = {row["path"]: _comparable(row) for row in map(json.loads, predicted.read_text().splitlines())}

    out = tmp_path / "batch.parquet"
    settings = Settings(crops_dir=tmp_path / "crops-batch")
    run_with_timeout(BatchOptions(paths, str(out), settings, workers=2, batch_size=3, save_crops=True, progress=False))
    rows = pd.read_parquet(out).to_dict("records")
    got = {row["path"]: _comparable(predict_line(row)) for row in rows}
    assert got == want
    assert any(row["crops"] for row in want.values())  # the crops themselves are compared, not only their absence
    assert want[str(broken)]["error_type"] == "InvalidImageError"


def test_the_service_and_the_inference_path_never_load_ray() -> None:
    code = (
        "import sys, cxrtriage, cxrtriage.pipeline, cxrtriage.cli.main, cxrtriage.interop.outputs;"
        "cxrtriage.cli.main.build_parser();"
        "import importlib.util;"
        "importlib.util.find_spec('fastapi') and __import__('cxrtriage.serve.app');"
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_ray_the_command_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from cxrtriage.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit) as exc:
        main(["batch", "some/folder", "--out", "results.parquet"])
    assert "pip install 'cxrtriage[batch]'" in str(exc.value)
