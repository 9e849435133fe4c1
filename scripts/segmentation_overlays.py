"""Contact sheet of lung (red: patient's right, green: left) and heart (blue) outlines on sample NIH, pediatric
and DICOM films, for the qualitative check of the segmentation on sites it was not trained on.

    .venv/bin/python scripts/segmentation_overlays.py [--out runs/segmentation_overlays.png] [--n 6]

The sheet shows data-directory images, so it is written under runs/ (ignored) and never committed.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtriage import config
from cxrtriage.anatomy.masks import segment_image
from cxrtriage.imaging.load import load_image

TILE = 256


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = np.pad(mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:], 1)
    return mask & ~inner


def tile(path: Path) -> np.ndarray:
    loaded = load_image(path)
    result = segment_image(loaded)
    grey = (
        np.asarray(Image.fromarray((np.clip(loaded.pixels, 0, 1) * 255).astype(np.uint8)).resize((TILE, TILE))) / 255.0
    )
    rgb = np.stack([grey] * 3, -1)
    for mask, colour in ((result.right_lung, (1, 0, 0)), (result.left_lung, (0, 1, 0)), (result.heart, (0, 0, 1))):
        small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((TILE, TILE))) > 127
        rgb[_outline(small)] = colour
    return rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/segmentation_overlays.png")
    ap.add_argument("--n", type=int, default=6, help="NIH images (pediatric: half as many; all DICOMs)")
    args = ap.parse_args()
    data = config.Settings().find_data_dir(required=True)
    nih = [data / "nih" / r["file"] for r in csv.DictReader((data / "nih" / "labels.csv").open())]
    ped = [data / "kermany" / r["file"] for r in csv.DictReader((data / "kermany" / "labels.csv").open())]
    random.Random(1).shuffle(nih)  # noqa: S311 - seeded for a reproducible sample, not a secret
    random.Random(1).shuffle(ped)  # noqa: S311 - seeded for a reproducible sample, not a secret
    paths = nih[: args.n] + ped[: max(1, args.n // 2)] + sorted((data / "dicom").glob("*.dcm"))
    tiles = [tile(p) for p in paths]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
    sheet = np.concatenate([np.concatenate(tiles[i : i + 4], 1) for i in range(0, len(tiles), 4)], 0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((sheet * 255).astype(np.uint8)).save(out)
    print(f"wrote {out} ({len(paths)} images)")


if __name__ == "__main__":
    main()
