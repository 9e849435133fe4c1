"""Shared fixtures: the real data directory (tests skip without it), one engine on the bundled model, one NIH image,
and the tiny random-weight MedSigLIP / MedGemma stand-ins (built once per session; tests must not write into them)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from cxrtriage import config


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = config.Settings().find_data_dir()
    if root is None or not root.is_dir():
        pytest.skip("shared CXR data directory not available (set CXRTRIAGE_DATA_DIR)")
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that needs the data directory (the ``data_dir`` fixture, directly or through another fixture) is
    marked ``data``, so ``pytest -m "not data"`` runs the rest of the suite without it."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


def pytest_configure(config: pytest.Config) -> None:
    """FastAPI's TestClient sends ``Host: testserver``: the tests' services answer to it besides the loopback names
    (the default of ``CXRTRIAGE_ALLOWED_HOSTS`` does not include it). Set before collection, since some test modules
    build their app at import.

    anyio (a pytest plugin, so pytest rewrites its modules' asserts on import) loads ``anyio.open_file`` lazily; when
    the session's first file response imports it on an event-loop thread, CPython 3.11's compiler can fail with "AST
    constructor recursion depth mismatch" (seen in CI on the first ``/local`` file). Importing it here, on the main
    thread before any server starts, takes that race away."""
    import os

    import anyio

    os.environ.setdefault("CXRTRIAGE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
    anyio.open_file  # noqa: B018 - the attribute access is the lazy import


@pytest.fixture(scope="session", autouse=True)
def _worklist_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Every service a test starts (in process or as a subprocess) keeps its worklist in a temporary file, never in
    the user's state folder. Session scope: module-scoped service fixtures are built before function fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRTRIAGE_WORKLIST_PATH", str(tmp_path_factory.getbasetemp() / "worklist" / "worklist.sqlite"))
        yield


@pytest.fixture(autouse=True)
def _crops_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops written by any test land in a temporary folder, never in the user's default location."""
    monkeypatch.setenv("CXRTRIAGE_CROPS_DIR", str(tmp_path_factory.getbasetemp() / "crops-default"))


@pytest.fixture(scope="session")
def dciodvfy_errors() -> Callable[[str | Path], list[str]]:
    """The "Error" lines dciodvfy (Debian package dicom3tools) prints for a DICOM file; the test is skipped where
    dciodvfy is not installed, so DICOM output is validated wherever it can be."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed")

    def errors(path: str | Path) -> list[str]:
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]

    return errors


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from cxrtriage.pipeline import Triage

    return Triage(crops_dir=tmp_path_factory.mktemp("crops"))


@pytest.fixture(scope="session")
def test_records(data_dir: Path):
    from cxrtriage.data import load_split_records

    return load_split_records(data_dir)["test"]


@pytest.fixture(scope="session")
def nih_pixels(data_dir: Path):
    """The first NIH image of the data directory as (H, W) float [0, 1] pixels."""
    from cxrtriage.imaging.load import load_image

    images = sorted((data_dir / "nih" / "images").glob("*.png"))[:1]
    if not images:
        pytest.skip("no NIH images in the data directory")
    return load_image(images[0]).pixels


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("sentencepiece")
    from cxrtriage.hai_def.tiny import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


@pytest.fixture(scope="session")
def tiny_medgemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from cxrtriage.hai_def.tiny_gemma import build_tiny_medgemma

    return build_tiny_medgemma(tmp_path_factory.mktemp("tiny-medgemma"), seed=0)


@pytest.fixture(scope="session")
def eval_metrics_script() -> ModuleType:
    """prototype/eval/eval_metrics.py loaded as a module, exactly the file users run."""
    script = Path(__file__).resolve().parents[1] / "prototype" / "eval" / "eval_metrics.py"
    spec = importlib.util.spec_from_file_location("eval_metrics_script", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def service_client(tmp_path_factory: pytest.TempPathFactory):
    """The REST service in process on the bundled model (no UI, no warm-up), once it is ready; one per module."""
    import time

    from fastapi.testclient import TestClient

    from cxrtriage.config import Settings
    from cxrtriage.serve.app import create_app

    settings = Settings(crops_dir=tmp_path_factory.mktemp("service-crops"), ui=False, warmup=False)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.05)
        yield client
