"""``cxrtriage predict PATH...``: one JSON object per input, failures included, never a traceback; and, per input,
a file of each requested output format (:mod:`cxrtriage.interop.formats`) in its folder.

Each input is read and decoded once; the run keeps its DICOM header and the analysed pixels, from which every format
is built. A format's file is ``DIR/<input stem><suffix>`` (``-2``, ``-3``... when two inputs share a stem: nothing
is overwritten), written atomically, and named in the row as ``<format>_path``; a format that must reference a DICOM
source is skipped for a PNG or JPEG input, the row saying why as ``<format>_skipped``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cxrtriage.config import Settings
from cxrtriage.errors import CXRTriageError
from cxrtriage.files import replace_atomically
from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.formats import NoDicomSource, OutputFormat, get_format, output_formats

#: the older options, kept as users call them: ``--fhir DIR`` and ``--sr DIR`` (the SR and, beside it, the
#: Secondary Capture) are ``--format`` with these formats into DIR
SHORTHANDS: dict[str, tuple[str, ...]] = {"fhir": ("fhir",), "sr": ("sr", "sc")}

#: (format, folder) pairs, in the registry's order
Outputs = list[tuple[OutputFormat, Path]]


def requested_outputs(named: dict[str, str | None], formats: list[str] | None, out_dir: str | None) -> Outputs:
    """The outputs asked for: ``named`` maps each shorthand option (``fhir``, ``sr``) to its folder (or None);
    ``formats`` go to ``out_dir``. Checked before any work: ValueError (one sentence) for an unknown format (listing
    the registered ones), a format asked for twice, or ``--format`` without ``--out-dir``; MissingDependency (naming
    the pip command) when a format's library is not installed."""
    asked = [(name, folder, f"--{option}") for option, folder in named.items() if folder for name in SHORTHANDS[option]]
    if formats:
        if not out_dir:
            raise ValueError("--format needs --out-dir DIR (the folder its files are written to)")
        asked += [(name, out_dir, f"--format {name}") for name in formats]
    seen: set[str] = set()
    outputs: Outputs = []
    for name, folder, option in asked:
        if name in seen:
            raise ValueError(f"the output format {name!r} is asked for twice")
        seen.add(name)
        fmt = get_format(name)
        fmt.require(option)
        outputs.append((fmt, Path(folder)))
    order = {f.name: i for i, f in enumerate(output_formats())}
    return sorted(outputs, key=lambda pair: order[pair[0].name])


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, or ``stem-2``, ``stem-3``... when two inputs share a name (nothing is overwritten)."""
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def write_output(fmt: OutputFormat, context: OutputContext, folder: Path, stem: str) -> str:
    """One format of one result -> ``folder/stem+suffix`` (a free name, written atomically); returns the path."""
    data = fmt.encode(fmt.render(context))
    target = _free_name(folder, stem, fmt.suffix)
    replace_atomically(target, lambda fh: fh.write(data))
    return str(target)


def _write_outputs(row: dict, outputs: Outputs, context: OutputContext, stem: str) -> None:
    """Each requested format of one result into its folder, recorded in ``row``."""
    for fmt, folder in outputs:
        try:
            row[f"{fmt.name}_path"] = write_output(fmt, context, folder, stem)
        except NoDicomSource as exc:
            row[f"{fmt.name}_skipped"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - only a best-effort format's failure is a row note, not a crash
            if not fmt.best_effort:
                raise
            row[f"{fmt.name}_skipped"] = f"{fmt.title} could not be written ({type(exc).__name__})"


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
                _write_outputs(row, outputs, OutputContext.of(triaged), Path(path).stem)
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
