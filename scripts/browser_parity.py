"""Build the browser page, run it in headless Chromium on the parity files and compare with Triage.predict:
writes prototype/eval/browser_parity.json (the README's browser figures). Usage:
``PYTHONPATH=src python scripts/browser_parity.py [--data-dir ../shared/data]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from cxrtriage.browser.build import build
from cxrtriage.browser.files import parity_files
from cxrtriage.browser.parity import compare, run_page, serve_folder, summarise

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default=os.environ.get("CXRTRIAGE_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", default=str(ROOT / "prototype" / "eval" / "browser_parity.json"))
    args = p.parse_args()
    files = parity_files(Path(args.data_dir))
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(Path(tmp) / "browser", ROOT)
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        index_bytes = (folder / cfg["similarity"]["file"]).stat().st_size
        with serve_folder(folder) as url:
            page, late, ready_s = run_page(url, files)
    rows = compare(files, page)
    out = {
        "what": "the static page (make browser) in headless Debian Chromium vs Triage.predict on the same files",
        "summary": summarise(rows),
        "page_ready_s": round(ready_s, 2),
        "requests_while_triaging": late,
        "model_bytes": cfg["classifier"]["size_bytes"] + cfg["segmenter"]["size_bytes"],
        "similarity_index_bytes": index_bytes,
        "machine": {
            "cpus": os.cpu_count(),
            "load_1min_at_end": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
        },
        "files": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
