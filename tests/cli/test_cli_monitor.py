"""``cxrtriage monitor``: the report of a state folder's records (reference named, alerts in words), its JSON and
HTML files, ``--fail-on-alert``, and clear exits for a missing store or a bad window. A store written by a service
whose first-use reference held 40 results is judged complete by a reader configured for 200."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cxrtriage.cli.main import main
from cxrtriage.monitoring.store import MonitorStore


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    """100 hourly results: the first 40 (the service's first-use reference) one in five Urgent, then all Urgent."""
    store = MonitorStore(tmp_path / "monitor.jsonl", reference_n=40)
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=120)
    for i in range(100):
        urgent = i >= 40 or i % 5 == 0
        store.append(
            {
                "time": (start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": "api",
                "outcome": "triaged",
                "label": "Urgent" if urgent else "Non-Urgent",
                "score": 0.85 if urgent else 0.1 + (i % 7) / 100,
                "needs_review": False,
                "similarity": 0.8,
                "image": {"mean": 0.5, "std": 0.2, "width": 512, "height": 512},
                "site": None,
                "model_sha256": "0" * 64,
            }
        )
    return tmp_path


def test_monitor_prints_the_reference_and_the_alerts(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_html = state / "r.json", state / "r.html"
    assert main(["monitor", "--state", str(state), "--json", str(out_json), "--html", str(out_html)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Reference: the first 40 results of use")
    assert "urgent rate 100% in the last 81 hours against 20% in the first 40 results of use" in text
    data = json.loads(out_json.read_text())
    assert data["reference"] == {
        "kind": "first_use",
        "description": data["reference"]["description"],
        "n": 40,
        "complete": True,
    }
    assert {f["key"] for f in data["figures"] if f["status"] == "alert"} == {"score_psi", "score_ks", "urgent_rate"}
    page = out_html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "http" not in page.replace("http://www.w3", "")
    assert main(["monitor", "--state", str(state), "--fail-on-alert"]) == 1


def test_monitor_exits_2_without_records_or_with_a_bad_window(tmp_path: Path, state: Path) -> None:
    assert main(["monitor", "--state", str(tmp_path / "nowhere")]) == 2
    assert main(["monitor", "--state", str(state), "--window", "7x"]) == 2
    assert main(["monitor", "--state", str(state), "--reference", str(tmp_path / "missing.jsonl")]) == 2
