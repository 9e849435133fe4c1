"""README's reliability table is generated from the service's settings and the load / memory result files."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_reliability_block_is_current() -> None:
    from cxrtriage.evaluation.reliability_report import BEGIN, END, render_block

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert block == render_block(ROOT / "prototype" / "eval"), "stale: run `make reliability-md`"


def test_limits_follow_the_settings_not_the_environment(monkeypatch) -> None:
    from cxrtriage.evaluation.reliability_report import limits_rows

    monkeypatch.setenv("CXRTRIAGE_MAX_UPLOAD_MB", "1")  # a shell setting must not leak into the documented defaults
    rows = dict(limits_rows())
    assert rows["upload size"].startswith("32 MiB") and "429" in rows["overload"]


def test_load_and_memory_rows_come_from_the_files(tmp_path: Path) -> None:
    from cxrtriage.evaluation.reliability_report import render_block

    phase = {
        "clients": 8,
        "duration_s": 60,
        "requests_sent": 1234,
        "throughput_ok_per_s": 9.87,
        "status_histogram": {"200": 1200, "429": 34},
        "latency_ok": {"p50_ms": 400, "p95_ms": 700, "p99_ms": 900},
        "ready": {"polls": 120, "not_200": 0},
        "rss_mb": {"before": 300, "peak": 420, "after": 390},
        "crops": {"files": 999, "mb": 9.9},
    }
    (tmp_path / "loadtest.json").write_text(
        json.dumps({"machine": {"cpu_count": 2, "commit": "abcdef123"}, "phases": [phase]})
    )
    (tmp_path / "request_memory.json").write_text(
        json.dumps(
            {
                "max_peak_over_idle_mb": 290.3,
                "cases": [{"input": "6000 x 6000 PNG", "peak_over_idle_mb": 290.3, "outcome": "200 Urgent"}],
            }
        )
    )
    block = render_block(tmp_path)
    assert "| after (abcdef1) | 8 | 60 s | 1234 | 9.87 | 200: 1200, 429: 34 | 400 / 700 / 900 | 0 of 120 |" in block
    assert "largest 290.3 MB" in block and "| 6000 x 6000 PNG | 290.3 | 200 Urgent |" in block
    assert "before (" not in block  # no before-run file, no before rows


def test_the_load_sentence_says_how_the_run_was_made() -> None:
    """A run on a busy shared machine, or without authentication, is not the same measurement: the README says
    which, from the file (nothing when an older file does not record it)."""
    from cxrtriage.evaluation.reliability_report import run_conditions

    run = {
        "machine": {"load_average_at_start": [0.5, 1.0, 1.25], "load_average_at_end": [6.0, 4.5, 3.0]},
        "config": {"authenticated": True},
    }
    said = run_conditions(run)
    assert said.startswith("every request with an API key")
    assert "0.5 / 1 / 1.25 at the start, 6 / 4.5 / 3 at the end" in said
    assert run_conditions({"config": {"authenticated": False}}) == "no API key sent"
    assert run_conditions({"machine": {"cpu_count": 2}}) == ""
