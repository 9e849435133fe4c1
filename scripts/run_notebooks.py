#!/usr/bin/env python
"""Execute the prototype notebooks (``make notebooks``): papermill with PROFILE injected, saved back with outputs.

    python scripts/run_notebooks.py [--profile smoke|full] [--out DIR] [--no-save] [NOTEBOOK ...]

Each executed notebook is written back over its source in prototype/notebooks/ (outputs included, run metadata and
local paths removed): the committed notebooks are exactly what this command produces, so a reader browsing the
repository sees the results. --no-save leaves the sources alone. The executed copy and its HTML go to --out.

Exit 1 on the first failing cell (papermill names it), 2 on a usage error. Each wall time is recorded in
prototype/eval/notebook_timings.json, which prototype.md and the write-up quote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "prototype" / "notebooks").glob("0*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every prototype/notebooks/0*.ipynb")
    p.add_argument("--profile", default="smoke", choices=("smoke", "full"))
    p.add_argument("--out", type=Path, default=ROOT / "prototype" / "notebooks" / "executed")
    p.add_argument(
        "--timings",
        default=str(ROOT / "prototype" / "eval" / "notebook_timings.json"),
        help="JSON the wall times are merged into ('' to skip)",
    )
    p.add_argument("--no-save", action="store_true", help="do not write the executed notebooks back over the sources")
    args = p.parse_args(argv)
    from cxrtriage import config
    from cxrtriage.evaluation.notebook_run import execute_notebook, record_timing, save_for_commit

    data_dir = config.Settings().find_data_dir()
    # the longer path first: a data directory inside the checkout keeps its own name
    local_paths = {str(ROOT): "<checkout>", **({str(data_dir.resolve()): "$CXRTRIAGE_DATA_DIR"} if data_dir else {})}
    if data_dir and str(data_dir) != str(data_dir.resolve()):
        local_paths[str(data_dir)] = "$CXRTRIAGE_DATA_DIR"

    paths = args.notebooks or NOTEBOOKS
    missing = [str(n) for n in paths if not n.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    for nb in paths:
        print(f"executing {nb.name} ({args.profile} profile) ...", flush=True)
        try:
            result = execute_notebook(nb, args.out, args.profile)
        except Exception as exc:  # papermill's PapermillExecutionError names the cell and the traceback
            print(f"error: {nb.name} failed: {exc}", file=sys.stderr)
            return 1
        if args.timings:
            record_timing(result, Path(args.timings))
        if not args.no_save:
            save_for_commit(result.executed, nb, local_paths)
        shown = result.html.relative_to(ROOT) if result.html.is_relative_to(ROOT) else result.html
        saved = "" if args.no_save else f", saved with outputs in {nb.resolve().relative_to(ROOT)}"
        print(f"  ok in {result.seconds:.0f} s -> {shown}{saved}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
