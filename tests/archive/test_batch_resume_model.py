"""``--resume`` never mixes two models' results in one output (no Ray needed: the check runs before Ray starts)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cxrtriage.archive.resume import check_same_model, models_in
from cxrtriage.archive.storage import locate, write_part
from cxrtriage.config import Settings
from cxrtriage.pipeline import Triage


def _results_of(folder: Path, model: str) -> None:
    folder.mkdir()
    write_part(locate(str(folder)), pa.table({"path": ["a.png"], "sha256": ["0" * 64], "model_sha256": [model]}))


def test_resume_refuses_another_models_results(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    _results_of(out, "f" * 64)
    assert models_in(locate(str(out))) == {"f" * 64}
    with pytest.raises(FileExistsError, match="same model only"):
        check_same_model(locate(str(out)), Settings(), str(out))


def test_resume_accepts_the_same_models_results(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    _results_of(out, Triage.from_config(Settings()).info.sha256)
    check_same_model(locate(str(out)), Settings(), str(out))  # no error: the run may go on
