"""``python -m cxrtriage.browser [--out build/browser]``: the same build as ``cxrtriage browser-build``, from the
checkout in the working directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrtriage.browser.build import DEFAULT_OUT, BrowserBuildError, build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cxrtriage.browser", description=__doc__)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default build/browser)")
    args = p.parse_args(argv)
    root = Path.cwd()
    if not (root / "demo_app" / "browser" / "package.json").is_file():
        print("error: run it in a cxrtriage checkout (demo_app/browser/ is not here)", file=sys.stderr)
        return 2
    try:
        print(build(Path(args.out).resolve(), root))
    except BrowserBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
