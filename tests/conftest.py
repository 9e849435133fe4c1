"""Shared fixtures: the real data directory (tests skip without it) and one engine on the bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrtriage import config


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = config.data_dir()
    if root is None:
        pytest.skip("shared CXR data directory not available (set CXRTRIAGE_DATA_DIR)")
    return root


@pytest.fixture(autouse=True)
def _crops_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops written by any test land in a temporary folder, never in the user's default location."""
    monkeypatch.setenv("CXRTRIAGE_CROPS_DIR", str(tmp_path_factory.getbasetemp() / "crops-default"))


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from cxrtriage.pipeline import Triage

    return Triage(crops_dir=tmp_path_factory.mktemp("crops"))


@pytest.fixture(scope="session")
def test_records(data_dir: Path):
    from cxrtriage.data import load_split_records

    return load_split_records(data_dir)["test"]
