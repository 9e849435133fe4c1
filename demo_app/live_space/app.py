"""Hugging Face Space entry point: the same REST API and web UI as ``cxrtriage serve``, on the bundled model.

The Space runs ``python app.py`` in the folder that ``build_space.py`` assembled (this file, the Space README,
requirements.txt and a copy of ``src/cxrtriage`` with its bundled model files); run the same command locally to see
what the Space serves. ``PORT`` (default 7860, the port a Space exposes) and every ``CXRTRIAGE_*`` setting apply.
No data directory is needed, nothing is downloaded, and no MedGemma or MedSigLIP weights are used. The Space runs
without authentication (``--insecure-no-auth``): it is a public demo; do not upload patient images to it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    # the copied package first, so the Space (and a local run of this folder) serve exactly what was assembled
    if (HERE / "src" / "cxrtriage").is_dir():
        sys.path.insert(0, str(HERE / "src"))
    import cxrtriage
    from cxrtriage.cli.main import main as cli

    print(f"cxrtriage {cxrtriage.__version__} from {Path(cxrtriage.__file__).parent}", flush=True)
    args = ["serve", "--host", os.environ.get("HOST", "0.0.0.0"), "--port", os.environ.get("PORT", "7860")]  # noqa: S104 - a Space must listen on every interface; the allowed hosts still apply
    # A public demo of the bundled sample images: it runs open, explicitly, until the UI has a login page (the web
    # service prints a warning on every start). The Space's own host name (SPACE_HOST, set by Hugging Face) is the
    # one it answers to besides the loopback names.
    args.append("--insecure-no-auth")
    if os.environ.get("SPACE_HOST"):
        args += ["--allowed-hosts", f"localhost,127.0.0.1,[::1],{os.environ['SPACE_HOST']}"]
    return cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
