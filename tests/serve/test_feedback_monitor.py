"""Reader feedback reaches the drift monitor: the service's monitor report (what ``/metrics`` exposes) and the UI's
Monitoring tab judge the readers' agreement over their window, read from the worklist's feedback table; ``cxrtriage
monitor`` too. No model: the worklist is filled directly and the monitor records are written by hand."""

from __future__ import annotations

from pathlib import Path

from fake_engine import Engine
from fake_prediction import fake_prediction
from fastapi.testclient import TestClient

from cxrtriage.config import Settings
from cxrtriage.serve.app import create_app
from cxrtriage.serve.ui.monitoring import monitoring_html


def test_the_monitor_judges_the_readers_agreement_over_its_window(tmp_path: Path) -> None:
    settings = Settings(crops_dir=tmp_path / "c", ui=False, warmup=False, worklist_path=tmp_path / "s" / "wl.sqlite")
    app = create_app(settings, engine=Engine(tmp_path))
    runtime = app.state.runtime
    assert runtime.window_agreement() is None  # no worklist file yet: nothing assessed, and none is created
    assert not settings.worklist_path.exists()
    with TestClient(app) as c:
        for i in range(3):
            runtime.worklist.add(fake_prediction("Non-Urgent"), f"ACC-{i}")
            c.post(f"/worklist/ACC-{i}/feedback", json={"agrees": i == 0, "reader": "dr-a"})
        expected = {"overall": 1 / 3, "urgent": None, "non_urgent": 1 / 3, "n": 3}
        assert runtime.window_agreement() == expected
        figures = {f.key: f for f in runtime.monitor_report().figures}
        assert figures["agreement_non_urgent"].recent == 1 / 3 and figures["agreement_non_urgent"].n_recent == 3
        assert "reader agreement with Non-Urgent calls" in monitoring_html(settings, "7d")


def test_cxrtriage_monitor_reports_the_readers_agreement(tmp_path: Path, monkeypatch, capsys) -> None:
    import json

    from cxrtriage.cli.main import main
    from cxrtriage.monitoring.record import RECORD_KEYS
    from cxrtriage.worklist import Worklist
    from cxrtriage.worklist.feedback import FeedbackStore

    state = tmp_path / "state"
    monkeypatch.setenv("CXRTRIAGE_WORKLIST_PATH", str(state / "worklist.sqlite"))
    worklist = Worklist(state / "worklist.sqlite")
    store = FeedbackStore(worklist)
    for i in range(2):
        worklist.add(fake_prediction("Urgent"), f"ACC-{i}")
        store.record(f"ACC-{i}", agrees=False, reader="dr-a")
    record = dict.fromkeys(RECORD_KEYS)
    record.update(time="2026-01-01T00:00:00Z", source="api", outcome="triaged", label="Urgent", score=0.9)
    (state / "monitor.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert main(["monitor", "--state", str(state)]) == 0
    assert "reader agreement with Urgent calls" in capsys.readouterr().out
