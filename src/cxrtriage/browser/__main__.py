"""``python -m cxrtriage.browser --out build/browser``: the same build as ``cxrtriage browser-build``."""

from __future__ import annotations

import sys

from cxrtriage.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["browser-build", *sys.argv[1:]]))
