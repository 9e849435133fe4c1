"""``cxrtriage predict PATH...``: one JSON object per input, failures included, never a traceback; and, per input,
a file of each requested output format (:mod:`cxrtriage.interop.formats`) in its folder.

Each input is read and decoded once; the run keeps its DICOM header and the analysed pixels, from which every format
is built and written by :mod:`cxrtriage.interop.outputs` (file names, skipped formats), the code ``cxrtriage batch``
writes its formats with too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cxrtriage.config import Settings
from cxrtriage.errors import CXRTriageError
from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.outputs import SHORTHANDS, Outputs, requested_outputs, write_outputs

__all__ = ["SHORTHANDS", "Outputs", "predict_paths", "requested_outputs"]


def predict_paths(
    paths: list[str],
    *,
    prior_report_file: str | None = None,
    out: str | None = None,
    settings: Settings | None = None,
    outputs: Outputs | None = None,
) -> int:
    """Return the process exit code: 0 all inputs triaged, 1 some failed, 2 configuration error. The engine is
    built from ``settings`` (the command's; None: the environment's)."""
    from cxrtriage.pipeline import Triage

    prior = None
    if prior_report_file:
        try:
            prior = Path(prior_report_file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            print(f"error: cannot read prior report file {prior_report_file}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        engine = Triage.from_config(settings if settings is not None else Settings())
    except CXRTriageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    outputs = outputs or []
    for folder in {folder for _, folder in outputs}:
        folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    sink: IO[str] = open(out, "w", encoding="utf-8") if out else sys.stdout
    try:
        for path in tqdm(paths, desc="triage", unit="image", disable=len(paths) < 2 or None, file=sys.stderr):
            try:
                triaged = engine.run(engine.load(path), prior)  # the one read and decode of this input
                row = {"path": path, **triaged.prediction.model_dump(mode="json")}
                write_outputs(row, outputs, OutputContext.of(triaged), Path(path).stem)
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
