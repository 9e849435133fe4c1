"""``cxrtriage predict PATH...``: one JSON object per input, failures included, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cxrtriage.errors import CXRTriageError


def predict_paths(paths: list[str], *, prior_report_file: str | None = None, out: str | None = None,
                  model_dir: str | None = None) -> int:
    """Return the process exit code: 0 all inputs triaged, 1 some failed, 2 configuration error."""
    from cxrtriage.pipeline import get_triage

    prior = None
    if prior_report_file:
        try:
            prior = Path(prior_report_file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            print(f"error: cannot read prior report file {prior_report_file}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        engine = get_triage(None, model_dir)
    except CXRTriageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    failed = 0
    sink: IO[str] = open(out, "w", encoding="utf-8") if out else sys.stdout
    try:
        for path in tqdm(paths, desc="triage", unit="image", disable=len(paths) < 2 or None, file=sys.stderr):
            try:
                result = engine.predict(path, prior)
                row = {"path": path, **result.model_dump(mode="json")}
            except CXRTriageError as exc:
                failed += 1
                row = {"path": path, "error": str(exc), "error_type": type(exc).__name__}
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
    finally:
        if out:
            sink.close()
    if failed:
        print(f"{failed} of {len(paths)} input(s) failed; see the 'error' field of those rows", file=sys.stderr)
    return 1 if failed else 0
