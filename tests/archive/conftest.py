"""One local Ray cluster of 2 CPUs for the whole test session (as CI's machine), started only when a test asks for
it; and small archives built from the bundled sample radiographs (PNG, JPEG, DICOM), so most tests need no data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from archive_helpers import sample_files


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="cxrtriage[batch] (Ray) is not installed")
    pytest.importorskip("ray.data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A folder as a PACS export may look: nested folders, mixed formats, a DICOM without a suffix, a broken file,
    and a hidden file and a text file that are not inputs."""
    root = tmp_path / "archive"
    files = sample_files()
    for i, src in enumerate(files):
        folder = root / f"study{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / src.name)
    dicom = next(p for p in files if p.suffix == ".dcm")
    shutil.copy(dicom, root / "study1" / "1.2.840.113619")  # named by UID: kept, read as DICOM
    (root / "study0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "study0" / ".hidden.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an input")
    return root
