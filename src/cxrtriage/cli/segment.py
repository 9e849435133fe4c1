"""``cxrtriage segment IMAGE... --out DIR``: lung and heart masks (0/255 PNG, the original image's size) and one
JSON line per image with the cardiothoracic ratio and the lung areas. Failures are JSON lines too, never a
traceback; a failed image leaves no file behind. Mask names come from the input's file stem."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtriage.config import Settings
from cxrtriage.errors import CXRTriageError
from cxrtriage.files import replace_atomically


def _save_mask(mask: np.ndarray, path: Path) -> None:
    """0/255 8-bit PNG, written atomically (a reader never sees half a file), readable by others like any output."""
    image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    replace_atomically(path, lambda fh: image.save(fh, format="PNG"), mode=0o644)


def _unique_stem(stem: str, used: set[str]) -> str:
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def segment_paths(paths: list[str], out_dir: str, settings: Settings | None = None) -> int:
    """Exit code: 0 all segmented, 1 some failed, 2 configuration error. The segmentation of ``settings``
    (``segmenter_dir``, ``threads``; None: the environment's), its images decoded with their pixel limits."""
    from cxrtriage.anatomy.masks import segment_image
    from cxrtriage.anatomy.segmenter import Segmenter
    from cxrtriage.imaging.gate import check_header_and_statistics
    from cxrtriage.imaging.load import load_image

    try:
        settings = settings if settings is not None else Settings()
        segmenter = Segmenter(settings.segmenter_dir, threads=settings.threads)
    except CXRTriageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the output folder {out_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    failed, used = 0, set()
    for path in paths:
        stem = _unique_stem(Path(path).stem, used)
        written: list[Path] = []
        try:
            loaded = load_image(path, max_pixels=settings.max_pixels, max_working_pixels=settings.max_working_pixels)
            check_header_and_statistics(loaded.pixels, loaded.meta)
            result = segment_image(loaded, segmenter)
            files = {"lungs_mask": out / f"{stem}_lungs.png", "heart_mask": out / f"{stem}_heart.png"}
            for key, mask in (("lungs_mask", result.lungs), ("heart_mask", result.heart)):
                _save_mask(mask, files[key])
                written.append(files[key])
            row = {
                "path": path,
                **{k: str(v) for k, v in files.items()},
                **result.summary(),
                "segmenter": segmenter.name,
            }
            problems = result.anatomy.frontal_problems()
            if problems:
                row["warnings"] = problems
        except (CXRTriageError, OSError) as exc:
            failed += 1
            for f in written:
                f.unlink(missing_ok=True)
            message = str(exc) if isinstance(exc, CXRTriageError) else f"cannot write the masks: {exc.strerror or exc}"
            row = {"path": path, "error": message, "error_type": type(exc).__name__}
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if failed:
        print(f"{failed} of {len(paths)} input(s) failed; see the 'error' field of those rows", file=sys.stderr)
    return 1 if failed else 0
