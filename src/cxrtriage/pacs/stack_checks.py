"""The checks of a running demo stack (:func:`cxrtriage.pacs.stack.pacs_stack`): through ``findscu`` (C-FIND) and
Orthanc's REST API, the SR of every instance sent is found in its own study with the expected category, every SR
reads back (highdicom, dciodvfy where installed), the node's counts add up and the worklist is in reading order.
``cxrtriage pacs-demo --check``, its end-to-end test and the video's PACS scenes use these."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrtriage.pacs.stack import Stack
from cxrtriage.pacs.stack_tools import MODALITY_AET, ORTHANC_AET, find_tool, http_get
from cxrtriage.worklist import MAX_PER_PAGE, reading_rank


@dataclass
class Report:
    checks: list[dict[str, Any]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)


def orthanc_srs(base: str) -> list[Any]:
    """Every SR instance in Orthanc, read back with pydicom."""
    import io

    import pydicom

    request = urllib.request.Request(  # noqa: S310 - an http URL on loopback: the Orthanc this demo started
        base + "/tools/find",
        data=json.dumps({"Level": "Instance", "Query": {"Modality": "SR"}}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        ids = json.loads(response.read())
    return [pydicom.dcmread(io.BytesIO(http_get(f"{base}/instances/{i}/file")), force=True) for i in ids]


def findscu_sr_series(study_uid: str, port: int) -> int:
    """How many SR series Orthanc reports for a study over C-FIND (what a viewer or RIS would ask)."""
    cmd = [
        find_tool("findscu"),
        "-S",
        "-aet",
        MODALITY_AET,
        "-aec",
        ORTHANC_AET,
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "-k",
        "Modality=SR",
        "-k",
        "SeriesInstanceUID",
        "127.0.0.1",
        str(port),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)  # noqa: S603 - dcmtk's findscu found by path, fixed arguments
    return sum(1 for line in (out.stdout + out.stderr).splitlines() if "(0020,000e)" in line and "UI [" in line)


def _category(sr: Any) -> str:
    """The triage category coded in an SR (Urgent, Non-urgent or Not triaged)."""

    def walk(items):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""
            if name == "CATEGORY" and "ConceptCodeSequence" in item:
                return item.ConceptCodeSequence[0].CodeMeaning
            found = walk(item.get("ContentSequence", []))
            if found:
                return found
        return None

    return walk(sr.get("ContentSequence", [])) or "?"


def _referenced(sr: Any) -> set[str]:
    return {
        ref.ReferencedSOPInstanceUID
        for study in sr.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }


def study_with_results(orthanc_base: str) -> tuple[str, str]:
    """An Orthanc study holding a radiograph and both cxrtriage series (SR and Secondary Capture): its ID and the
    Secondary Capture instance's ID."""

    def get(path: str):
        return json.loads(http_get(orthanc_base + path, timeout=10))

    for study in get("/studies?expand"):
        series = get(f"/studies/{study['ID']}/series")
        described = {x["MainDicomTags"].get("SeriesDescription", ""): x for x in series}
        sc = next((x for d, x in described.items() if d.startswith("cxrtriage AI evidence")), None)
        if sc is not None and any(d.startswith("cxrtriage AI triage (") for d in described):
            return study["ID"], sc["Instances"][0]
    raise RuntimeError("no study in Orthanc holds both cxrtriage series")


def validate_srs(srs: list[Any], folder: Path) -> tuple[int, list[str]]:
    """How many SRs read back as a highdicom Comprehensive SR (and pass dciodvfy with no Error line, where dicom3tools
    is installed); the first problems found, without identifiers."""
    import highdicom as hd

    folder.mkdir(parents=True, exist_ok=True)
    dciodvfy = shutil.which("dciodvfy")
    valid, problems = 0, []
    for i, sr in enumerate(srs):
        try:
            hd.sr.ComprehensiveSR.from_dataset(sr)
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            problems.append(f"SR {i}: highdicom cannot read it ({type(exc).__name__})")
            continue
        if dciodvfy:
            path = folder / f"sr-{i}.dcm"
            sr.save_as(path, enforce_file_format=True)
            out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)  # noqa: S603 - dciodvfy found by path, a file written here
            errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
            if errors:
                # the count only: dciodvfy may quote attribute values, and this line is printed
                problems.append(f"SR {i}: {len(errors)} Error line(s) from dciodvfy (run it on the SR to see them)")
                continue
        valid += 1
    return valid, problems


def check_results(stack: Stack) -> Report:
    """Every instance sent has an SR in Orthanc, in its own study, with the expected category; C-FIND finds an SR
    series in every study; the counts add up; the worklist holds every triaged instance in reading order."""
    report = Report()
    sent, ports, status = stack.sent, stack.ports, stack.status
    srs = orthanc_srs(stack.orthanc_base)
    print(f"pacs-demo: {len(srs)} SR instances in Orthanc for {len(sent)} instances sent", flush=True)
    for item in sent:
        mine = [sr for sr in srs if item.sop_instance_uid in _referenced(sr)]
        same_study = all(str(sr.StudyInstanceUID) == item.study_instance_uid for sr in mine)
        categories = sorted({_category(sr) for sr in mine})
        expected = (
            categories == ["Not triaged"]
            if item.expect == "not_triaged"
            else (bool(categories) and "Not triaged" not in categories)
        )
        report.check(
            f"{item.name}: SR in Orthanc references it, in its study ({item.expect})",
            bool(mine) and same_study and expected,
            f"{len(mine)} SR, category {', '.join(categories) or '-'}",
        )
    valid, problems = validate_srs(srs, stack.workdir / "sr-check")
    report.check(
        "every SR in Orthanc reads back with highdicom"
        + (" and passes dciodvfy" if shutil.which("dciodvfy") else " (dciodvfy not installed)"),
        valid == len(srs) and bool(srs),
        f"{valid} of {len(srs)}" + (f"; {problems[0]}" if problems else ""),
    )
    studies = sorted({i.study_instance_uid for i in sent})
    found = sum(findscu_sr_series(uid, ports.orthanc_dicom) > 0 for uid in studies)
    report.check(
        "findscu (C-FIND) finds an SR series in every study sent",
        found == len(studies),
        f"{found} of {len(studies)} studies",
    )
    triaged = sum(i.expect == "triaged" for i in sent)
    report.check(
        "node counts: every instance answered, every result stored",
        status.get("triaged") == triaged
        and status.get("not_triaged") == len(sent) - triaged
        and not status.get("results_send_failed")
        and not status.get("failed"),
        ", ".join(f"{k}={v}" for k, v in status.items() if isinstance(v, int) and v),
    )
    listed = json.loads(http_get(f"{stack.ui_base}/worklist?status=all&per_page={MAX_PER_PAGE}", api_key=stack.api_key))
    items = listed["items"]
    ranks = [reading_rank(i, 60 * float(listed["max_wait_min"])) for i in items]
    in_order = ranks == sorted(ranks)
    report.check(
        "worklist (GET /worklist): every triaged instance, in reading order",
        listed["total"] == len(items) == triaged and in_order,
        " > ".join(f"{i['label']}{' (review)' if i['needs_review'] else ''}" for i in items),
    )
    try:
        http_get(f"{stack.ui_base}/worklist")
        refused = "answered without a credential"
    except urllib.error.HTTPError as exc:
        refused = f"HTTP {exc.code}"
    report.check("the web service refuses GET /worklist without its API key", refused == "HTTP 401", refused)
    return report
