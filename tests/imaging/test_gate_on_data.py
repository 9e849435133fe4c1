"""Every chest radiograph in the data directory passes the not-a-chest-X-ray gate (a sample by default, all with
-m slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cxrtriage.errors import NotAChestXrayError

SOURCES = {
    "nih": "nih/images/*.png",
    "kermany": "kermany/images/*/*.jpeg",
    "nih_thumbs64": "nih_thumbs64/images/*.png",
    "dicom": "dicom/*.dcm",
}


def _files(data_dir: Path, pattern: str, n: int | None) -> list[Path]:
    files = sorted(data_dir.glob(pattern))
    return files if n is None or len(files) <= n else random.Random(0).sample(files, n)


def _rejected(engine, files: list[Path]) -> list[str]:
    out = []
    for f in files:
        try:
            engine.predict(f, save_crops=False)
        except NotAChestXrayError as exc:
            out.append(f"{f.name}: {exc}")
    return out


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_sample_of_chest_images_passes_gate(engine, data_dir, source):
    files = _files(data_dir, SOURCES[source], 25)
    assert files
    assert _rejected(engine, files) == []


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_chest_image_passes_gate(engine, data_dir, source):
    files = _files(data_dir, SOURCES[source], None)
    assert _rejected(engine, files) == []
