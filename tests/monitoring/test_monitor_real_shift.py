"""A real shift, through the running service: held-out adult NIH test films are the first results of use (the
reference), more NIH test films after them raise no alert, and the pediatric publisher's held-out test films after
those make the monitor flag the change and name what moved, in the report, in ``/metrics`` and in the Monitoring
tab's HTML. Needs the shared data (``CXRTRIAGE_DATA_DIR``) and the bundled model; about a minute on two cores."""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.data import load_split_records  # noqa: E402
from cxrtriage.monitoring.monitor import run_monitor  # noqa: E402
from cxrtriage.monitoring.report import report_html, report_text  # noqa: E402
from cxrtriage.monitoring.store import MonitorStore  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.data

REFERENCE_N = 50  # the first 50 NIH test films are the reference; the other 55 the calm week
PEDIATRIC_N = 100


def _post_all(client: TestClient, paths: list[Path]) -> list[int]:
    return [
        client.post("/predict", files={"file": (p.name, p.read_bytes(), "application/octet-stream")}).status_code
        for p in paths
    ]


def _since(start: dt.datetime) -> dt.timedelta:
    return dt.datetime.now(dt.timezone.utc) - start + dt.timedelta(seconds=1)


def test_monitor_flags_a_change_of_source(data_dir: Path, tmp_path: Path) -> None:
    test = load_split_records(data_dir)["test"]
    draw = random.Random(25)  # a fixed, mixed order: normal and urgent films of each source, not the folders' order
    nih = draw.sample(sorted((r.path for r in test if r.dataset == "nih"), key=str), k=105)
    pediatric = draw.sample(sorted((r.path for r in test if r.dataset == "kermany"), key=str), k=PEDIATRIC_N)
    settings = Settings(
        crops_dir=tmp_path / "crops",
        worklist_path=tmp_path / "state" / "worklist.sqlite",
        ui=False,
        warmup=False,
        monitor_reference_n=REFERENCE_N,
        data_dir=data_dir,
    )
    store = MonitorStore.from_settings(settings)
    with TestClient(create_app(settings)) as client:
        for _ in range(600):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.1)
        _post_all(client, nih[:REFERENCE_N])
        time.sleep(2.1)  # records carry whole seconds and the window has 1 s of slack: keep the phases 2 s apart
        calm_start = dt.datetime.now(dt.timezone.utc)
        _post_all(client, nih[REFERENCE_N:])
        calm, _ = run_monitor(store, span=_since(calm_start))
        time.sleep(2.1)
        shift_start = dt.datetime.now(dt.timezone.utc)
        _post_all(client, pediatric)
        shifted, buckets = run_monitor(store, span=_since(shift_start))
        metrics = client.get("/metrics").text

    print("\n--- NIH after NIH ---\n" + report_text(calm))
    print("\n--- pediatric after NIH ---\n" + report_text(shifted))
    assert calm.reference.kind == "first_use" and len(calm.reference.records) == REFERENCE_N
    assert "the first 50 results of use" in calm.reference.description
    assert len(calm.recent) == len(nih) - REFERENCE_N
    assert calm.alerts == [], [f.message for f in calm.alerts]

    assert len(shifted.recent) == PEDIATRIC_N
    alerted = {f.key for f in shifted.alerts}
    assert {"score_psi", "score_ks"} & alerted, report_text(shifted)
    assert all("in the first 50 results of use" in f.message or f.key.startswith("score") for f in shifted.alerts)
    assert "cxrtriage_monitor_alerts " in metrics and 'cxrtriage_monitor_alert{figure="score_psi"}' in metrics
    html = report_html(shifted, buckets)
    assert "alert(s)" in html and "score distribution moved" in html and "<svg" in html
