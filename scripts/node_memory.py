#!/usr/bin/env python3
"""Peak memory of the DICOM node while 8 senders push a ~50 MB instance each at the same time (issue 23).

Each scenario starts ``cxrtriage dicom-node`` as its own process (bundled model, no destination, no worklist), waits
until it listens, sends one small instance so that the model is loaded, waits for its memory to settle, resets the
process's peak-RSS counter (``/proc/PID/clear_refs``), then 8 threads each open an association and C-STORE the same
synthetic instance (5,000 x 5,000 16-bit pixels, about 50 MB, synthetic identifiers, generated here) at once. When
every sender has its status and the node has answered every instance it accepted, the node's peak RSS (``VmHWM``)
is read. Scenarios: ``--max-instance-mb 32`` (every instance over the limit: answered 0xA700 before it is read) and
the default 64 MB (every instance accepted, received to disk and triaged one at a time); with ``--baseline SRC``
also the node of another source tree (e.g. the commit before this change, unpacked with ``git archive``), which has
no size limit and buffers each instance in memory.

    python scripts/node_memory.py [--out prototype/eval/node_memory.json] [--baseline /tmp/base/src]

Linux only (reads /proc). Prints one line per scenario and writes the JSON file docs/INTEGRATION.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENDERS = 8
SIDE = 5000  # 5,000 x 5,000 x 2 bytes = 50 MB of pixels


def _instance(path: Path, side: int = SIDE) -> int:
    """Write a synthetic instance (a gradient with noise: not a chest film, answered 'Not triaged')."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(23)
    y = np.linspace(0, 1, side, dtype=np.float32)[:, None]
    pixels = (1000 + 2000 * y + rng.normal(0, 50, (side, side))).clip(0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "SYNTHETIC^MEMORY", "SYN-MEM", "MEM0001"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _send(port: int, path: Path, statuses: list, index: int) -> None:
    from pynetdicom import AE, _config

    _config.STORE_SEND_CHUNKED_DATASET = True  # the senders stream the file; only the node's memory is measured
    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 600
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAGE")
    if not assoc.is_established:
        statuses[index] = "association refused"
        return
    status = assoc.send_c_store(path)
    statuses[index] = f"0x{status.Status:04X}" if "Status" in status else "no response"
    assoc.release()


def run_scenario(name: str, src: Path, options: list[str], instance: Path, work: Path) -> dict:
    port, status_file = _free_port(), work / f"{name}-status.json"
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "cxrtriage.cli.main", "dicom-node", "--port", str(port), "--no-worklist"]
    command += ["--status-file", str(status_file), *options]
    node = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 300
        while not (status_file.is_file() and json.loads(status_file.read_text()).get("listening")):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the node did not start")
            time.sleep(0.5)
        warm: list = [None]  # one small instance first, so that the model is loaded in every scenario
        _send(port, work / "warm-up.dcm", warm, 0)
        while (
            json.loads(status_file.read_text()).get("not_triaged", 0)
            + json.loads(status_file.read_text()).get("triaged", 0)
            < 1
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the warm-up instance was not answered")
            time.sleep(0.5)
        time.sleep(3)  # let the loaded model settle
        idle = _proc_mb(node.pid, "VmRSS")
        Path(f"/proc/{node.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
        statuses: list = [None] * SENDERS
        started = time.perf_counter()
        threads = [threading.Thread(target=_send, args=(port, instance, statuses, i)) for i in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent_s = time.perf_counter() - started
        while True:  # until what was accepted is triaged
            status = json.loads(status_file.read_text())
            answered = status["triaged"] + status["not_triaged"] + status["unreadable"] + status["failed"]
            refused = statuses.count("0xA700") + statuses.count("0xC210")
            if status.get("queue", 0) == 0 and answered >= SENDERS + 1 - refused:  # the warm-up instance too
                break
            if time.monotonic() > deadline + 1800:
                raise RuntimeError(f"{name}: the node did not finish its queue")
            time.sleep(0.5)
        peak = _proc_mb(node.pid, "VmHWM")
        total_s = time.perf_counter() - started
    finally:
        node.terminate()
        node.wait(120)
    result = {
        "scenario": name,
        "node_options": options,
        "statuses": statuses,
        "idle_rss_mb": round(idle, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_over_idle_mb": round(peak - idle, 1),
        "senders_answered_s": round(sent_s, 1),
        "all_done_s": round(total_s, 1),
        "counts": {k: v for k, v in status.items() if isinstance(v, int) and v},
    }
    print(
        f"{name}: statuses {sorted(set(statuses))}, RSS {idle:.0f} -> peak {peak:.0f} MB "
        f"(+{peak - idle:.0f} MB), {total_s:.0f} s",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "prototype" / "eval" / "node_memory.json")
    parser.add_argument("--baseline", type=Path, help="a source tree (its src/ folder) whose node is measured too")
    parser.add_argument("--baseline-name", default="before", help="what the baseline is called in the JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxrtriage-node-memory-") as tmp:
        work = Path(tmp)
        size = _instance(work / "instance.dcm")
        _instance(work / "warm-up.dcm", side=512)
        print(f"instance: {size / 2**20:.1f} MB, {SENDERS} senders at once", flush=True)
        scenarios = []
        if args.baseline is not None:
            scenarios.append(run_scenario(args.baseline_name, args.baseline, [], work / "instance.dcm", work))
        for name, options in (
            ("limit_32mb", ["--max-instance-mb", "32", "--spool", str(work / "spool-32")]),
            ("default_64mb", ["--spool", str(work / "spool-64")]),
        ):
            scenarios.append(run_scenario(name, REPO / "src", options, work / "instance.dcm", work))
    record = {
        "what": f"peak RSS of the dicom-node process while {SENDERS} associations each C-STORE one instance at once",
        "command": "python scripts/node_memory.py" + (" --baseline SRC" if args.baseline else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "instance": {"pixels": f"{SIDE} x {SIDE} 16-bit, synthetic", "file_mb": round(size / 2**20, 1)},
        "scenarios": scenarios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
