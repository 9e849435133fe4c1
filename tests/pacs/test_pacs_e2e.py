"""End to end against a real PACS: Orthanc (Debian package ``orthanc``) started with a temporary loopback
configuration, dcmtk's ``storescu``/``findscu`` (package ``dcmtk``) as the modality, cxrtriage's DICOM node (push)
or ``orthanc-pull`` (pull) and the web service, exactly as ``make pacs-demo`` runs them. The demo's ``--check``
finds, for every instance sent (the shared DICOMs and PNGs converted with synthetic identifiers), an SR in Orthanc
that references it in its own study with the expected category, an SR series over C-FIND for every study, and the
worklist in reading order. Skipped where Orthanc or dcmtk is not installed (``.ci/run`` installs both)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="the DICOM node needs the [interop] extra")

TOOLS = {
    "Orthanc": shutil.which("Orthanc") or (Path("/usr/sbin/Orthanc").is_file() or None),
    "storescu": shutil.which("storescu"),
    "findscu": shutil.which("findscu"),
}


@pytest.mark.skipif(not all(TOOLS.values()), reason="needs orthanc and dcmtk (apt-get install orthanc dcmtk)")
@pytest.mark.parametrize("mode", ["push", "pull"])
def test_every_instance_sent_gets_its_sr_in_orthanc(mode: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pacs_demo.json"
    cmd = [
        sys.executable,
        "-m",
        "cxrtriage.cli.main",
        "pacs-demo",
        "--check",
        "--free-ports",
        "--timeout",
        "240",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        *(["--pull"] if mode == "pull" else []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == mode
    checks = {c["check"]: c for c in result["checks"]}
    assert all(c["ok"] for c in checks.values())
    refused = [c for name, c in checks.items() if "(not_triaged)" in name]
    assert len(refused) == 2 and all("Not triaged" in c["detail"] for c in refused)  # the lateral and the OT image
    assert sum("(triaged)" in name for name in checks) >= 5  # 3 shared DICOMs + converted PNGs
    assert result["status"]["results_send_failed"] == 0
