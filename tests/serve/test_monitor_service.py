"""The service records every result and refusal for drift monitoring (API and UI alike), a failed record never
withholds a result, and ``/metrics`` carries the drift figures as gauges that flag a change."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fake_engine import Engine, png_bytes  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.errors import NotAChestXrayError  # noqa: E402
from cxrtriage.imaging.load import load_image  # noqa: E402
from cxrtriage.monitoring.record import RECORD_KEYS, refusal_record  # noqa: E402
from cxrtriage.monitoring.store import MonitorStore  # noqa: E402
from cxrtriage.serve.app import MeasuredEngine, create_app  # noqa: E402


class Refusing(Engine):
    def run(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Any:
        raise NotAChestXrayError("this is not a frontal chest radiograph")


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        crops_dir=tmp_path / "crops",
        worklist_path=tmp_path / "state" / "worklist.sqlite",
        ui=False,
        warmup=False,
        **kw,
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _client(settings: Settings, engine: Engine) -> TestClient:
    return TestClient(create_app(settings, engine=engine))


def _ready(c: TestClient) -> None:
    for _ in range(200):
        if c.get("/ready").status_code == 200:
            return
        time.sleep(0.02)


def test_api_results_and_refusals_are_recorded(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "crops").mkdir()
    with _client(settings, Engine(tmp_path / "crops")) as c:
        _ready(c)
        assert c.post("/predict", files={"file": ("x.png", png_bytes(), "image/png")}).status_code == 200
    with _client(settings, Refusing(tmp_path / "crops")) as c:
        _ready(c)
        assert c.post("/predict", files={"file": ("x.png", png_bytes(), "image/png")}).status_code == 422
    got = _records(settings.monitor_file)
    assert [(r["source"], r["outcome"]) for r in got] == [("api", "triaged"), ("api", "refused")]
    assert all(tuple(r) == RECORD_KEYS for r in got)
    assert got[0]["label"] == "Urgent" and got[0]["score"] == 0.9 and got[0]["model_sha256"] == "0" * 64
    assert got[0]["image"]["width"] == 128 and 0.3 < got[0]["image"]["mean"] < 0.7
    assert settings.monitor_file.parent == settings.state_dir
    assert "x.png" not in settings.monitor_file.read_text()


def test_a_failed_monitor_write_never_withholds_the_result(tmp_path: Path) -> None:
    (tmp_path / "crops").mkdir()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = _settings(tmp_path, monitor_path=blocker / "monitor.jsonl")
    with _client(settings, Engine(tmp_path / "crops")) as c:
        _ready(c)
        answer = c.post("/predict", files={"file": ("x.png", png_bytes(), "image/png")})
        assert answer.status_code == 200 and answer.json()["label"] == "Urgent"


def test_ui_results_and_refusals_are_recorded(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "crops").mkdir()
    app = create_app(settings, engine=Engine(tmp_path / "crops"))
    runtime = app.state.runtime
    runtime.state.set_ready(Engine(tmp_path / "crops"))
    loaded = load_image(png_bytes())
    assert MeasuredEngine(Engine(tmp_path / "crops"), runtime).predict(loaded).label == "Urgent"
    with pytest.raises(NotAChestXrayError):
        MeasuredEngine(Refusing(tmp_path / "crops"), runtime).predict(loaded)
    got = _records(settings.monitor_file)
    assert [(r["source"], r["outcome"]) for r in got] == [("ui", "triaged"), ("ui", "refused")]


def test_metrics_expose_the_drift_figures_and_flag_a_change(tmp_path: Path) -> None:
    settings = _settings(tmp_path, monitor_reference_n=40)
    store = MonitorStore.from_settings(settings)
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    base = {
        "source": "api",
        "outcome": "triaged",
        "needs_review": False,
        "similarity": 0.8,
        "site": None,
        "image": {"mean": 0.5, "std": 0.2, "width": 512, "height": 512},
        "model_sha256": "0" * 64,
    }
    for i in range(100):  # the first 40: one in five Urgent; then every one Urgent
        urgent = i >= 40 or i % 5 == 0
        when = (start + dt.timedelta(minutes=10 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        store.append(
            {
                **base,
                "time": when,
                "label": "Urgent" if urgent else "Non-Urgent",
                "score": 0.8 + (i % 7) / 100 if urgent else 0.1 + (i % 7) / 100,
            }
        )
    store.append(refusal_record("api", None, "0" * 64))
    with _client(settings, Engine(tmp_path)) as c:
        text = c.get("/metrics").text
    assert 'cxrtriage_monitor_alert{figure="urgent_rate"} 1.0' in text
    assert 'cxrtriage_monitor_value{figure="urgent_rate",period="recent"} 1.0' in text
    assert 'cxrtriage_monitor_value{figure="urgent_rate",period="reference"} 0.2' in text
    assert 'cxrtriage_monitor_alert{figure="score_psi"} 1.0' in text
    assert 'cxrtriage_monitor_results{period="reference"} 40.0' in text
    assert "cxrtriage_monitor_alerts " in text
