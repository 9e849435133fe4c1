"""Assemble the Hugging Face Space folder: this directory's README (Space header), app.py, requirements.txt and
.gitattributes, plus a copy of ``src/cxrtriage`` (code and bundled model files), LICENSE and TERMS.md.

    python demo_app/live_space/build_space.py OUT_DIR [--force]

Nothing from the data directory is copied; the package's own sample radiographs (``cxrtriage/samples``, public
NIH and CC BY 4.0 pediatric films documented in its SAMPLES.md) come with it, so the Space offers examples. Caches
are left out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SPACE_FILES = ("README.md", "app.py", "requirements.txt", ".gitattributes")
REPO_FILES = ("LICENSE", "TERMS.md")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.fp32.onnx", ".pytest_cache")


def build_space(out: Path, force: bool = False) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty (pass --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in SPACE_FILES:
        shutil.copy2(HERE / name, out / name)
    for name in REPO_FILES:
        shutil.copy2(REPO / name, out / name)
    shutil.copytree(REPO / "src" / "cxrtriage", out / "src" / "cxrtriage", ignore=IGNORE)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to create (the Space repository's working tree)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty folder")
    args = parser.parse_args(argv)
    try:
        out = build_space(Path(args.out), force=args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"Space folder written to {out} ({size:.1f} MB); run it as the Space will: cd {out} && python app.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
