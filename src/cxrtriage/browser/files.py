"""The real files the parity check runs on: a fixed, sorted selection from every shared source (NIH and pediatric
adults and children, JSRT, Shenzhen, the three DICOMs), plus laterals the page must refuse or send for review."""

from __future__ import annotations

from pathlib import Path

#: (folder under the data directory, file pattern, how many, taking every k-th of the sorted names)
SOURCES = (
    ("nih/images", "*.png", 10, 37),
    ("kermany", "**/*.jpeg", 8, 301),
    ("jsrt_scr/images", "*.png", 5, 50),
    ("shenzhen", "**/*.png", 5, 41),
    ("dicom", "*.dcm", 3, 1),
    ("laterals", "**/*.png", 2, 9),
)


def parity_files(data_dir: Path) -> list[Path]:
    """The selection (deterministic: sorted names, a fixed stride); sources that are missing are left out."""
    out: list[Path] = []
    for folder, pattern, count, stride in SOURCES:
        names = sorted((data_dir / folder).glob(pattern))
        out += names[::stride][:count]
    return out
