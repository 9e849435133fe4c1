"""``cxrtriage predict PATH...``: one JSON object per input, failures included, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cxrtriage.config import Settings
from cxrtriage.errors import CXRTriageError
from cxrtriage.files import replace_atomically


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, or ``stem-2``, ``stem-3``... when two inputs share a name (nothing is overwritten)."""
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def write_fhir(result, path: str, folder: Path) -> str:
    """The FHIR DiagnosticReport of one result (the study UID read from a DICOM input's header) -> its file."""
    from cxrtriage.imaging.dicom import study_instance_uid
    from cxrtriage.interop.fhir import diagnostic_report

    report = diagnostic_report(result, study_uid=study_instance_uid(Path(path)))
    target = _free_name(folder, Path(path).stem, ".fhir.json")
    replace_atomically(target, lambda fh: fh.write(json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8")))
    return str(target)


def _write_dicom(dataset, folder: Path, stem: str, suffix: str) -> str:
    """A DICOM dataset -> ``folder/stem+suffix`` (a free name, written atomically, as a file with its meta)."""
    target = _free_name(folder, stem, suffix)
    replace_atomically(target, lambda fh: dataset.save_as(fh, enforce_file_format=True))
    return str(target)


def write_sr(result, path: str, folder: Path) -> dict[str, str] | None:
    """The DICOM SR (TID 1500) and the Secondary Capture with the boxes burned in (for viewers that cannot show SR
    regions) of one DICOM input -> ``{"sr_path", "sc_path"}``; None for a PNG/JPEG input (both must reference a
    source DICOM instance)."""
    import pydicom

    from cxrtriage.imaging.dicom import dicom_header
    from cxrtriage.interop.secondary_capture import secondary_capture
    from cxrtriage.interop.sr import structured_report

    if dicom_header(Path(path), ["SOPInstanceUID"]) is None:
        return None
    source = pydicom.dcmread(path, force=True)  # pixels included: the SC draws on them
    stem = Path(path).stem
    return {"sr_path": _write_dicom(structured_report(result, source), folder, stem, ".sr.dcm"),
            "sc_path": _write_dicom(secondary_capture(result, source), folder, stem, ".sc.dcm")}


def predict_paths(paths: list[str], *, prior_report_file: str | None = None, out: str | None = None,
                  settings: Settings | None = None, fhir_dir: str | None = None, sr_dir: str | None = None) -> int:
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

    for folder in (fhir_dir, sr_dir):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    failed = 0
    sink: IO[str] = open(out, "w", encoding="utf-8") if out else sys.stdout
    try:
        for path in tqdm(paths, desc="triage", unit="image", disable=len(paths) < 2 or None, file=sys.stderr):
            try:
                result = engine.predict(path, prior)
                row = {"path": path, **result.model_dump(mode="json")}
                if fhir_dir:
                    row["fhir_path"] = write_fhir(result, path, Path(fhir_dir))
                if sr_dir:
                    written = write_sr(result, path, Path(sr_dir))
                    if written:
                        row.update(written)
                    else:
                        row["sr_skipped"] = ("not a DICOM input: the SR and the Secondary Capture must reference a "
                                             "source DICOM instance")
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
