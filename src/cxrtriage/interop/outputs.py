"""Writing the output formats of a triaged input to files: what ``cxrtriage predict`` and ``cxrtriage batch`` share.

Each requested format of one result goes to ``DIR/<input stem><suffix>`` (``-2``, ``-3``... when two inputs share a
stem: nothing is overwritten), written atomically, and is named in the row as ``<format>_path``; a format that must
reference a DICOM source is skipped for a PNG or JPEG input, the row saying why as ``<format>_skipped``. One module,
so that the two commands cannot drift apart in what a file is called or when a format is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

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


def free_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, or ``stem-2``, ``stem-3``... when two inputs share a name (nothing is overwritten)."""
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def write_output(fmt: OutputFormat, context: OutputContext, folder: Path, stem: str) -> str:
    """One format of one result -> ``folder/stem+suffix`` (a free name, written atomically); returns the path."""
    data = fmt.encode(fmt.render(context))
    target = free_name(folder, stem, fmt.suffix)

    def write(fh: BinaryIO) -> None:
        fh.write(data)

    replace_atomically(target, write)
    return str(target)


def write_outputs(row: dict, outputs: Outputs, context: OutputContext, stem: str) -> None:
    """Each requested format of one result into its folder, recorded in ``row`` (``<format>_path`` or
    ``<format>_skipped``)."""
    for fmt, folder in outputs:
        try:
            row[f"{fmt.name}_path"] = write_output(fmt, context, folder, stem)
        except NoDicomSource as exc:
            row[f"{fmt.name}_skipped"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - only a best-effort format's failure is a row note, not a crash
            if not fmt.best_effort:
                raise
            row[f"{fmt.name}_skipped"] = f"{fmt.title} could not be written ({type(exc).__name__})"
