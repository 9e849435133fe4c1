"""scripts/loadtest.py (``make loadtest``): its pure parts on a tiny fake data directory, and one bounded end-to-end
run against a server it starts (slow, needs the real data directory)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "loadtest.py"


@pytest.fixture(scope="module")
def lt() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loadtest_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    """Two small grey PNGs under nih/images and one JPEG under kermany/images: no reports, no DICOMs."""
    rng = np.random.default_rng(0)
    (tmp_path / "nih" / "images").mkdir(parents=True)
    (tmp_path / "kermany" / "images" / "NORMAL").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "nih" / "images" / name)
    Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(
        tmp_path / "kermany" / "images" / "NORMAL" / "c.jpeg"
    )
    return tmp_path


def test_percentile_matches_numpy(lt: ModuleType) -> None:
    values = [0.3, 0.1, 0.7, 0.2, 1.5, 0.9, 0.4]
    for q in (0, 50, 95, 99, 100):
        assert lt.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert lt.percentile([], 50) is None
    assert lt.percentile([2.0], 99) == 2.0


def test_phase_summary_counts_only_200s_in_latency(lt: ModuleType) -> None:
    R = lt.Record
    records = [
        R(200, 0.1, "nih", True),
        R(200, 0.3, "pediatric", False),
        R(429, 0.001, "nih", False),
        R(429, 0.002, "dicom", True),
        R("ReadTimeout", 60.0, "nih", False),
    ]
    s = lt.summarize_phase(records, elapsed_s=2.0)
    assert s["requests_sent"] == 5
    assert s["throughput_ok_per_s"] == 1.0 and s["sent_per_s"] == 2.5
    assert s["status_histogram"] == {"200": 2, "429": 2, "ReadTimeout": 1}
    assert s["rate_429"] == 0.4
    assert s["latency_ok"] == {"n": 2, "p50_ms": 200.0, "p95_ms": 290.0, "p99_ms": 298.0, "max_ms": 300.0}
    assert s["latency_ok_with_report"]["n"] == 1 and s["latency_ok_without_report"]["p50_ms"] == 300.0
    assert s["by_kind"]["nih"] == {"200": 1, "429": 1, "ReadTimeout": 1}
    assert s["with_report"] == 2
    empty = lt.summarize_phase([], elapsed_s=1.0)
    assert empty["requests_sent"] == 0 and empty["latency_ok"]["p50_ms"] is None and empty["rate_429"] is None


def test_allocate_keeps_total_and_every_kind(lt: ModuleType) -> None:
    counts = lt.allocate(200, lt.KIND_WEIGHTS)
    assert sum(counts.values()) == 200 and counts["dicom"] == 20
    assert lt.allocate(10, {"nih": 0.98, "dicom": 0.02}) == {"nih": 9, "dicom": 1}
    assert sum(lt.allocate(1, lt.KIND_WEIGHTS).values()) == 1


def test_request_mix_on_a_fake_data_dir(lt: ModuleType, fake_data: Path) -> None:
    mix, info = lt.build_request_mix(fake_data, size=40, seed=3)
    assert len(mix) == 40
    assert {m.kind for m in mix} == {"nih", "pediatric"}  # no dicom folder: its share goes to the others
    assert info["kinds"] == {"nih": 20, "pediatric": 20} and info["distinct_images"] == 3
    reports = [m.prior_report for m in mix if m.prior_report]
    assert len(reports) == 20 == info["with_report"] and info["report_source"] == "synthetic"
    assert all(300 <= len(r) <= 1500 for r in reports) and all("IMPRESSION:" in r for r in reports)
    assert all(m.data[:8] == b"\x89PNG\r\n\x1a\n" for m in mix if m.kind == "nih")
    assert all(m.data[:2] == b"\xff\xd8" for m in mix if m.kind == "pediatric")
    again, _ = lt.build_request_mix(fake_data, size=40, seed=3)
    assert again == mix  # seeded
    assert "a.png" not in json.dumps(info)  # the description holds counts, never file names or text


def test_request_mix_needs_images(lt: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        lt.build_request_mix(tmp_path)


def test_missing_data_dir_exits_2_with_one_sentence(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "CXRTRIAGE_DATA_DIR" in proc.stderr
    assert not (tmp_path / "out.json").exists()


def test_an_api_key_goes_with_a_base_url_only(lt: ModuleType) -> None:
    with pytest.raises(SystemExit):
        lt.parse_args(["--api-key", "cxt_x"])  # a server the script starts gets a key of its own
    assert lt.parse_args(["--base-url", "http://127.0.0.1:8000", "--api-key", "cxt_x"]).api_key == "cxt_x"


def test_base_url_must_be_local(lt: ModuleType) -> None:
    with pytest.raises(SystemExit):
        lt.parse_args(["--base-url", "http://example.org:8000"])
    assert lt.parse_args(["--base-url", "http://127.0.0.1:8000", "--clients", "2,4"]).client_counts == [2, 4]


@pytest.mark.slow
@pytest.mark.data
def test_end_to_end_short_run(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "loadtest.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--duration",
            "3",
            "--clients",
            "2",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    (phase,) = result["phases"]
    assert phase["clients"] == 2 and phase["requests_sent"] > 0
    assert phase["status_histogram"].get("200", 0) > 0 and phase["latency_ok"]["p50_ms"] > 0
    assert phase["ready"]["polls"] > 0 and phase["rss_mb"]["peak"] > 0 and phase["crops"]["files"] > 0
    assert result["machine"]["cpu_count"] and result["server"]["exit_status"] is not None
    assert result["server"]["alive_until_end"] and result["server"]["log"]["tracebacks"] == 0
    # the server it started requires a key; every request carried the admin key the script created (200s, /status)
    assert result["config"]["authenticated"] and result["server"]["status_at_end"]["requests_served"] > 0
    assert "cxt_" not in out.read_text() + proc.stdout + proc.stderr  # the key is never printed or written
    names = {p.name for sub in ("nih/images", "dicom") for p in (data_dir / sub).iterdir()}
    text = out.read_text() + proc.stdout
    assert not any(name in text for name in list(names)[:200])  # no image file names in output or JSON
