"""``python -m cxrtriage.browser [--out build/browser]``: ``cxrtriage browser-build``
(:mod:`cxrtriage.cli.deliverables`) under the package's own name; one command, one way to find the checkout and
read ``--out``."""

from __future__ import annotations

import sys

from cxrtriage.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["browser-build", *sys.argv[1:]]))
