"""The web service as a client sees it: endpoints, status codes for bad uploads, limits, retention, no stray files.

Offline. The real-model client is shared by the module; limit and failure cases use small fake engines so they
are fast and deterministic. Tests needing the shared CXR data skip without it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.types import Message  # noqa: E402

from cxrtriage.config import Settings  # noqa: E402
from cxrtriage.errors import ModelError  # noqa: E402
from cxrtriage.explain.crop_store import is_crop_name, list_crops, prune_crops  # noqa: E402
from cxrtriage.imaging.load import load_image  # noqa: E402
from cxrtriage.schema import DISCLAIMER, Crop, ModelInfo, Prediction, prediction_json_schema  # noqa: E402
from cxrtriage.serve.app import create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "demo_app" / "schema" / "prediction.schema.json"
REPORT = "Small right pleural effusion. No pneumothorax."


# ----------------------------------------------------------------------------- helpers


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _grey_png() -> bytes:
    rng = np.random.default_rng(0)
    return _png(rng.integers(0, 255, (128, 128), dtype=np.uint8))


def _wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    pytest.fail(f"service not ready after {timeout} s: {client.get('/ready').json()}")


def _post(client: TestClient, data: bytes, name: str = "upload.png", **form: str):
    return client.post("/predict", files={"file": (name, data, "application/octet-stream")}, data=form or None)


class FakeBackend:
    info = ModelInfo(name="fake-model", version="9.9", sha256="0" * 64, backend="fake")

    def analyze(self, pixels: np.ndarray) -> None:  # pragma: no cover - warm-up is off for fakes
        return None

    def footprint_mb(self) -> float:
        return 1.25


class FakeEngine:
    """Returns a fixed Prediction; optionally blocks until released, writes a crop, or raises."""

    def __init__(self, crops_dir: Path | None = None, *, block: bool = False, exc: BaseException | None = None) -> None:
        self.backend = FakeBackend()
        self.info = self.backend.info
        self.crops_dir = crops_dir
        self.block = block
        self.exc = exc
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def footprint_mb(self) -> float:
        return self.backend.footprint_mb()

    def predict(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction:
        with self._lock:
            self.calls += 1
        self.entered.set()
        if self.block:
            assert self.release.wait(30), "test never released the fake engine"
        if self.exc is not None:
            raise self.exc
        crops = []
        if self.crops_dir is not None:
            path = self.crops_dir / f"{os.urandom(8).hex()}.png"
            path.write_bytes(_grey_png())
            crops = [Crop(x=1, y=2, w=3, h=4, thumb_path=str(path))]
        return Prediction(
            label="Urgent",
            score=0.5,
            explanation="fake",
            crops=crops,
            threshold=0.3,
            review_band=(0.25, 0.35),
            needs_review=False,
            model=self.backend.info,
        )

    def load(self, image: Any, *, kind: str | None = None) -> Any:
        from cxrtriage.imaging.load import load_image

        return load_image(image, kind=kind)

    def run(self, image: Any, prior_report: str | None = None, *, save_crops: bool = True) -> Any:
        """What ``POST /predict`` calls: the fixed Prediction with the decoded image the route passed."""
        from cxrtriage.pipeline import Triaged

        prediction = self.predict(image, prior_report, save_crops=save_crops)
        return Triaged(prediction=prediction, image=image, pixels=image.pixels, polarity_flipped=False)


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"crops_dir": tmp_path / "crops", "ui": False, "warmup": False}
    base.update(kw)
    return Settings(**base)


@pytest.fixture(scope="module")
def real_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    crops = tmp_path_factory.mktemp("service-crops")
    settings = Settings(crops_dir=crops, ui=False, warmup=True)
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        yield client


@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty folder so any temp file the service leaves behind is visible."""
    d = tmp_path / "tempdir"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


# ----------------------------------------------------------------------------- settings, schema, CLI


def test_settings_read_prefixed_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXRTRIAGE_PORT", "8123")
    monkeypatch.setenv("CXRTRIAGE_MAX_QUEUE", "3")
    monkeypatch.setenv("CXRTRIAGE_CROPS_DIR", str(tmp_path))
    monkeypatch.setenv("CXRTRIAGE_MODEL_DIR", "")  # empty means unset
    monkeypatch.setenv("CXRTRIAGE_WARMUP", "false")
    s = Settings()
    assert (s.port, s.max_queue, s.crops_dir, s.model_dir, s.warmup) == (8123, 3, tmp_path, None, False)
    assert (s.host, s.max_concurrent, s.max_upload_mb, s.crops_max_files, s.crops_max_age_s) == (
        "127.0.0.1",
        2,
        32.0,
        500,
        3600.0,
    )
    assert s.max_upload_bytes == 32 * 1024 * 1024


def test_settings_reject_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrtriage.errors import ConfigurationError

    monkeypatch.setenv("CXRTRIAGE_MAX_CONCURRENT", "0")
    with pytest.raises(ConfigurationError, match="CXRTRIAGE_MAX_CONCURRENT='0'"):
        Settings()


def test_committed_schema_matches_the_model() -> None:
    """demo_app/schema/prediction.schema.json is generated; regenerate with cxrtriage.schema.dump_json_schema."""
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == prediction_json_schema()


def test_cli_serve_gives_every_worker_the_cli_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cxrtriage serve --workers 2 --port ... --backend ... --model ...`: uvicorn gets the app factory and the
    header-timeout protocol bound to the settings the CLI built; its Config, pickled into each spawned worker,
    carries them, and nothing is written to the environment on the way but, while the workers run, prometheus_client's
    own PROMETHEUS_MULTIPROC_DIR: a fresh directory, removed afterwards (serve/worker_metrics.py)."""
    import os
    import pickle

    import uvicorn
    import uvicorn.supervisors

    from cxrtriage.cli.main import main
    from cxrtriage.config import BUNDLED_WEIGHTS_DIR
    from cxrtriage.serve.protocol import HeaderTimeoutH11Protocol

    started: list[Any] = []
    metrics_dirs: list[str] = []

    class FakeMultiprocess:
        def __init__(self, config: Any, **_: Any) -> None:
            started.append(config)

        def run(self) -> None:  # where the workers would be spawned: they inherit this environment
            folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
            assert os.path.isdir(folder) and os.listdir(folder) == []
            metrics_dirs.append(folder)

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", FakeMultiprocess)
    monkeypatch.setattr(uvicorn.Config, "bind_socket", lambda self: None)
    monkeypatch.delenv("CXRTRIAGE_HOST", raising=False)
    monkeypatch.setenv("CXRTRIAGE_HEADER_TIMEOUT_S", "3")
    before = dict(os.environ)
    assert (
        main(["serve", "--port", "9123", "--workers", "2", "--backend", "bundled", "--model", str(BUNDLED_WEIGHTS_DIR)])
        == 0
    )
    assert dict(os.environ) == before
    assert len(metrics_dirs) == 1 and not os.path.exists(metrics_dirs[0])
    (config,) = started
    assert config.workers == 2 and config.port == 9123 and config.host == "127.0.0.1"
    assert config.factory is True and config.access_log is False and config.timeout_graceful_shutdown == 5.0
    worker = pickle.loads(pickle.dumps(config))  # what a spawned worker process receives
    (settings,) = worker.app.args
    assert worker.app.func is create_app
    assert (settings.port, settings.backend, settings.model_dir, settings.header_timeout_s) == (
        9123,
        "bundled",
        BUNDLED_WEIGHTS_DIR,
        3.0,
    )
    assert worker.http.func is HeaderTimeoutH11Protocol and worker.http.keywords == {"header_timeout_s": 3.0}
    assert "cxrtriage UI: http://127.0.0.1:9123/ui  API docs: http://127.0.0.1:9123/docs" in capsys.readouterr().out


def test_cli_serve_single_process_runs_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import uvicorn

    from cxrtriage.cli.main import main

    ran: list[Any] = []

    def fake_run(self: Any, sockets: Any = None) -> None:
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # one worker: its registry, as before
        ran.append(self.config)
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    monkeypatch.setenv("CXRTRIAGE_MAX_QUEUE", "5")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert main(["serve", "--host", "127.0.0.2", "--port", "9124"]) == 0
    (config,) = ran
    assert (config.workers, config.host, config.port) == (1, "127.0.0.2", 9124)
    assert config.app.args[0].max_queue == 5 and config.app.args[0].host == "127.0.0.2"


def test_cli_serve_refuses_a_bad_setting_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxrtriage.cli.main import main

    monkeypatch.setenv("CXRTRIAGE_BODY_TIMEOUT_S", "soon")
    assert main(["serve"]) == 2
    assert "CXRTRIAGE_BODY_TIMEOUT_S='soon'" in capsys.readouterr().err


def test_core_imports_do_not_need_the_demo_extra() -> None:
    import subprocess

    code = (
        "import sys, cxrtriage, cxrtriage.cli.main, cxrtriage.explain.crop_store; "
        "bad = [m for m in ('fastapi', 'uvicorn', 'gradio') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- endpoints on the real model


def test_health_ready_status_metrics_docs(real_client: TestClient) -> None:
    c = real_client
    assert c.get("/health").json() == {"status": "ok"}
    ready = c.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    status = c.get("/status").json()
    for key in (
        "model_name",
        "model_version",
        "model_sha256",
        "backend",
        "model_size_mb",
        "median_latency_ms",
        "p95_latency_ms",
        "uptime_s",
        "requests_served",
        "requests_failed",
        "disclaimer",
    ):
        assert key in status, key
    assert status["backend"] == "bundled" and len(status["model_sha256"]) == 64
    assert 0 < status["model_size_mb"] < 10
    assert status["disclaimer"] == DISCLAIMER
    metrics = c.get("/metrics")
    assert metrics.status_code == 200 and "cxrtriage_inference_seconds" in metrics.text
    docs = c.get("/docs")
    assert docs.status_code == 200
    # offline: Swagger UI's and ReDoc's assets come from this server (the fastapi-offline package), never a CDN
    assert "/static/apidocs/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    redoc = c.get("/redoc")
    assert "/static/apidocs/redoc.standalone.js" in redoc.text and "cdn" not in redoc.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert c.get(f"/static/apidocs/{asset}").status_code == 200, asset
    assert "/predict" in c.get("/openapi.json").json()["paths"]
    root = c.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/docs"  # ui=False here
    assert c.get("/health").headers["x-request-id"]


@pytest.mark.parametrize("rel", ["nih/images/00000150_002.png", "dicom/SIIM_CR_chest_PA_jpegbaseline.dcm"])
def test_predict_real_chest_xray(real_client: TestClient, data_dir: Path, rel: str) -> None:
    import jsonschema

    path = data_dir / rel
    if not path.is_file():
        pytest.skip(f"{rel} not in the data directory")
    before = real_client.get("/status").json()["requests_served"]
    r = _post(real_client, path.read_bytes(), name=path.name, prior_report=REPORT)
    assert r.status_code == 200, r.text
    body = r.json()
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(body)
    assert body["disclaimer"] == DISCLAIMER
    for crop in body["crops"]:
        assert crop["thumb_path"].startswith("/static/crops/")
        thumb = real_client.get(crop["thumb_path"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    quotes = [p["snippet"] for p in body["provenance"] if p["source"] == "prior_report"]
    assert "Small right pleural effusion." in quotes
    status = real_client.get("/status").json()
    assert status["requests_served"] == before + 1 and status["median_latency_ms"] > 0
    assert "cxrtriage_inference_seconds_count" in real_client.get("/metrics").text


def _truncated_png() -> bytes:
    data = _png(np.random.default_rng(1).integers(0, 255, (512, 512), dtype=np.uint8))
    return data[: len(data) // 2]


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, format="GIF")
    return buf.getvalue()


def _astronaut_png() -> bytes:
    skdata = pytest.importorskip("skimage.data")
    return _png(skdata.astronaut())


def _ct_small() -> bytes:
    import pydicom.data

    return Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()


BAD_UPLOADS = {
    "text": (lambda: b"Patient: DOE^JOHN\nthis is not an image\n", 415, "UnsupportedFormatError"),
    "gif": (_gif, 415, "UnsupportedFormatError"),
    "big-junk": (lambda: b"\x01\x02junk" * 300_000, 415, "UnsupportedFormatError"),  # > 1 MiB: spooled to disk
    "truncated-png": (_truncated_png, 422, "InvalidImageError"),
    "empty": (lambda: b"", 422, "InvalidImageError"),
    "photograph": (_astronaut_png, 422, "NotAChestXrayError"),
    "ct-dicom": (_ct_small, 422, "NotAChestXrayError"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_clear_4xx_and_leave_no_files(
    real_client: TestClient, private_tmp: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    make, status, error_type = BAD_UPLOADS[case]
    data = make()
    crops_dir = Path(real_client.app.state.runtime.settings.crops_dir)
    crops_before = set(os.listdir(crops_dir))
    with caplog.at_level(logging.DEBUG):
        r = _post(real_client, data, name="DOE^JOHN_chest.png")
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_type"] == error_type and body["detail"] and body["request_id"]
    if status == 415:
        assert "detected:" in body["detail"]
    assert set(os.listdir(crops_dir)) == crops_before
    assert os.listdir(private_tmp) == []
    assert "DOE" not in caplog.text  # neither the upload's file name nor DICOM header values are logged
    if case == "ct-dicom":
        assert "CompressedSamples" not in r.text + caplog.text  # CT_small's patient name


def test_missing_file_field_is_422(real_client: TestClient) -> None:
    r = real_client.post("/predict", data={"prior_report": REPORT})
    assert r.status_code == 422
    assert "missing form field 'file'" in r.json()["detail"]


def test_too_long_prior_report_is_422_without_echo(real_client: TestClient) -> None:
    report = "Small effusion. " * 1300  # > 20 000 characters
    r = _post(real_client, _grey_png(), prior_report=report)
    assert r.status_code == 422
    assert "prior_report is longer than 20000 characters" in r.json()["detail"]
    assert "Small effusion" not in r.text


def test_crops_route_serves_only_engine_thumbnails(real_client: TestClient) -> None:
    crops_dir = Path(real_client.app.state.runtime.settings.crops_dir)
    (crops_dir / "notes.png").write_bytes(_grey_png())
    (crops_dir / "secret.txt").write_text("x")
    assert real_client.get("/static/crops/notes.png").status_code == 404
    assert real_client.get("/static/crops/secret.txt").status_code == 404
    assert real_client.get("/static/crops/0123456789abcdef.png").status_code == 404
    assert real_client.get("/static/crops/../../etc/passwd").status_code == 404


# ----------------------------------------------------------------------------- limits (fake engines)


def test_upload_over_limit_is_413_with_content_length(tmp_path: Path) -> None:
    engine = FakeEngine()
    with TestClient(create_app(_settings(tmp_path, max_upload_mb=0.01), engine=engine)) as c:
        _wait_ready(c)
        r = _post(c, b"\x89PNG\r\n\x1a\n" + b"\x00" * 20_000)
        assert r.request.headers.get("content-length")
        assert r.status_code == 413 and r.json()["error_type"] == "PayloadTooLarge" and r.json()["request_id"] != "-"
        small = _png(np.full((8, 8), 128, np.uint8))  # a real image: the route decodes uploads before the engine
        assert _post(c, small).status_code == 200  # under the limit
    assert engine.calls == 1


def test_upload_over_limit_is_413_when_streamed_without_content_length(tmp_path: Path, private_tmp: Path) -> None:
    engine = FakeEngine()
    boundary = "cxrtriageboundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        yield b"\x89PNG\r\n\x1a\n"
        for _ in range(40):
            yield b"\x00" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(_settings(tmp_path, max_upload_mb=0.01), engine=engine)) as c:
        _wait_ready(c)
        r = c.post("/predict", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413, r.text
        assert r.json()["error_type"] == "PayloadTooLarge"
    assert engine.calls == 0
    assert os.listdir(private_tmp) == []


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def test_full_queue_gets_429_with_retry_after(tmp_path: Path) -> None:
    engine = FakeEngine(block=True)
    png = _grey_png()
    with TestClient(create_app(_settings(tmp_path, max_concurrent=1, max_queue=0), engine=engine)) as c:
        _wait_ready(c)
        t, out = _in_thread(lambda: _post(c, png))
        assert engine.entered.wait(10)
        r = _post(c, png)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error_type"] == "QueueFull"
        # a small body is read and thrown away before the 429 (answering while the client still sends makes it see
        # a reset connection, not the 429: make loadtest), so the connection may stay open
        assert r.headers.get("connection") != "close"
        engine.release.set()
        t.join(10)
        assert out[0].status_code == 200
        status = c.get("/status").json()
        assert (status["requests_served"], status["requests_rejected"], status["in_flight"]) == (1, 1, 0)


def test_waiting_requests_are_served_in_turn(tmp_path: Path) -> None:
    engine = FakeEngine(block=True)
    png = _grey_png()
    with TestClient(create_app(_settings(tmp_path, max_concurrent=1, max_queue=1), engine=engine)) as c:
        _wait_ready(c)
        runtime = c.app.state.runtime
        t1, out1 = _in_thread(lambda: _post(c, png))
        assert engine.entered.wait(10)
        t2, out2 = _in_thread(lambda: _post(c, png))
        deadline = time.monotonic() + 10
        while runtime.limiter.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runtime.limiter.waiting == 1
        assert _post(c, png).status_code == 429
        engine.release.set()
        t1.join(10)
        t2.join(10)
        assert out1[0].status_code == 200 and out2[0].status_code == 200
    assert engine.calls == 2


def test_ready_is_503_until_the_loader_finishes(tmp_path: Path) -> None:
    go = threading.Event()
    engine = FakeEngine()

    def slow_loader() -> FakeEngine:
        assert go.wait(30)
        return engine

    with TestClient(create_app(_settings(tmp_path), engine_loader=slow_loader)) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert c.get("/health").status_code == 200
        p = _post(c, _grey_png())
        assert p.status_code == 503 and p.json()["error_type"] == "NotReady" and p.headers["retry-after"]
        assert c.get("/status").json()["ready"] is False
        go.set()
        _wait_ready(c, timeout=10)
        assert _post(c, _grey_png()).status_code == 200


def test_failed_load_keeps_ready_503_with_reason(tmp_path: Path) -> None:
    def broken_loader() -> FakeEngine:
        raise ModelError("model.onnx is missing")

    with TestClient(create_app(_settings(tmp_path), engine_loader=broken_loader)) as c:
        deadline = time.monotonic() + 10
        while c.app.state.runtime.state.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.get("/ready")
        assert r.status_code == 503 and "model.onnx is missing" in r.json()["error"]
        assert _post(c, _grey_png()).status_code == 503


def test_model_error_is_503_and_unexpected_error_is_generic_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(_settings(tmp_path), engine=FakeEngine(exc=ModelError("onnx session died")))) as c:
        _wait_ready(c)
        r = _post(c, _grey_png())
        assert r.status_code == 503 and r.json()["error_type"] == "ModelError"
    with TestClient(create_app(_settings(tmp_path), engine=FakeEngine(exc=RuntimeError("secret internals")))) as c:
        _wait_ready(c)
        with caplog.at_level(logging.ERROR, logger="cxrtriage.serve.app"):
            r = _post(c, _grey_png())
        assert r.status_code == 500 and r.json()["error_type"] == "InternalError"
        assert "secret internals" not in r.text
        assert "secret internals" in caplog.text  # the traceback is in the log
        assert c.get("/status").json()["requests_failed"] == 1


def test_crops_are_pruned_after_predictions_and_urls_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cxrtriage.serve.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_PRUNE_INTERVAL_S", 0.0)  # retention after every prediction
    settings = _settings(tmp_path, crops_max_files=2, crops_min_age_s=0)  # the count limit alone
    crops_dir = settings.crops_dir
    crops_dir.mkdir(parents=True)
    with TestClient(create_app(settings, engine=FakeEngine(crops_dir))) as c:
        _wait_ready(c)
        urls = []
        for _ in range(4):
            r = _post(c, _grey_png())
            assert r.status_code == 200
            (crop,) = r.json()["crops"]
            assert crop["thumb_path"].startswith("/static/crops/") and str(tmp_path) not in crop["thumb_path"]
            urls.append(crop["thumb_path"])
            time.sleep(0.02)  # distinct mtimes
        assert len(list_crops(crops_dir)) == 2
        assert c.get(urls[-1]).status_code == 200
        assert c.get(urls[0]).status_code == 404


def test_retention_after_predictions_runs_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make loadtest: listing thousands of crops after every request cost as much CPU as the inference."""
    import cxrtriage.serve.runtime as runtime_module

    runtime = create_app(_settings(tmp_path), engine=FakeEngine()).state.runtime
    calls: list[int] = []
    monkeypatch.setattr(runtime, "prune", lambda: calls.append(1) or 0)
    for _ in range(5):
        runtime.prune_soon()
    assert len(calls) == 1
    runtime._last_prune -= runtime_module._PRUNE_INTERVAL_S  # a second later
    runtime.prune_soon()
    assert len(calls) == 2


# ----------------------------------------------------------------------------- UI hook


def test_missing_webui_serves_api_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "cxrtriage.serve.ui.app", None)  # import fails with ImportError
    with caplog.at_level(logging.WARNING, logger="cxrtriage.serve.app"):
        app = create_app(_settings(tmp_path, ui=True), engine=FakeEngine())
    assert "UI not mounted" in caplog.text
    with TestClient(app) as c:
        assert c.get("/", follow_redirects=False).headers["location"] == "/docs"


def test_webui_hook_receives_engine_and_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def mount_ui(
        app: Any,
        get_engine: Any,
        get_status: Any,
        settings: Any,
        slot: Any = None,
        worklist: Any = None,
        audit: Any = None,
    ) -> None:
        seen.update(get_engine=get_engine, get_status=get_status, settings=settings, worklist=worklist, audit=audit)

    fake = types.ModuleType("cxrtriage.serve.ui.app")
    fake.mount_ui = mount_ui  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cxrtriage.serve.ui.app", fake)
    engine = FakeEngine()
    settings = _settings(tmp_path, ui=True)
    app = create_app(settings, engine=engine)
    with pytest.raises(ModelError):
        seen["get_engine"]()  # not loaded before start-up
    with TestClient(app) as c:
        _wait_ready(c)
        ui_engine = seen["get_engine"]()
        assert ui_engine._engine is engine  # the UI gets the loaded engine, wrapped so that it is measured
        before = seen["get_status"]()["requests_served"]
        ui_engine.predict(load_image(_grey_png()))  # the UI decodes first and hands the engine the decoded image
        status = seen["get_status"]()
        assert status["model_name"] == "fake-model"
        assert status["requests_served"] == before + 1 and status["median_latency_ms"] is not None
        assert seen["settings"] is settings
        assert seen["worklist"]() is app.state.runtime.worklist  # the UI lists and files on the service's one worklist
        assert c.get("/", follow_redirects=False).headers["location"] == "/ui"


# ----------------------------------------------------------------------------- crop retention


def _touch(path: Path, age_s: float, now: float) -> Path:
    path.write_bytes(b"png")
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_prune_removes_old_and_excess_crops_only(tmp_path: Path) -> None:
    now = time.time()
    old = _touch(tmp_path / "00000000000000aa.png", 7200, now)
    a = _touch(tmp_path / "00000000000000bb.png", 30, now)
    b = _touch(tmp_path / "00000000000000cc.png", 20, now)
    c = _touch(tmp_path / "00000000000000dd.png", 10, now)
    others = [
        _touch(tmp_path / name, 99_999, now)
        for name in (
            "notes.png",
            "00000000000000AA.png",
            ".tmp-abc.png",
            "00000000000000ee.png.bak",
            "0000000000000ff.png",
            "report.txt",
        )
    ]
    (tmp_path / "00000000000000ef.png").mkdir()  # a directory with a crop-like name
    deleted = prune_crops(tmp_path, max_files=2, max_age_s=3600, now=now)
    assert deleted == 2
    assert not old.exists() and not a.exists()
    assert b.exists() and c.exists()
    assert all(p.exists() for p in others) and (tmp_path / "00000000000000ef.png").is_dir()


def test_prune_skips_symlinks_and_missing_dir(tmp_path: Path) -> None:
    target = tmp_path / "outside.png"
    target.write_bytes(b"keep")
    crops = tmp_path / "crops"
    crops.mkdir()
    link = crops / "00000000000000aa.png"
    link.symlink_to(target)
    os.utime(target, (0, 0))
    assert prune_crops(crops, max_files=0, max_age_s=1) == 0
    assert link.is_symlink() and target.exists()
    assert prune_crops(tmp_path / "nope", max_files=0, max_age_s=1) == 0


def test_prune_keeps_everything_within_limits(tmp_path: Path) -> None:
    now = time.time()
    files = [_touch(tmp_path / f"{i:016x}.png", i, now) for i in range(5)]
    assert prune_crops(tmp_path, max_files=5, max_age_s=60, now=now) == 0
    assert all(f.exists() for f in files)
    assert prune_crops(tmp_path, max_files=0, max_age_s=60, now=now) == 5


def test_crop_name_pattern() -> None:
    assert is_crop_name("0123456789abcdef.png")
    for name in (
        "0123456789ABCDEF.png",
        "0123456789abcdef.PNG",
        "x/0123456789abcdef.png",
        "0123456789abcde.png",
        "0123456789abcdef.png.tmp",
        "../0123456789abcdef.png",
    ):
        assert not is_crop_name(name), name


def test_parallel_predictions_with_prior_reports_all_succeed(real_client: TestClient, data_dir: Path) -> None:
    """Issue 9.1: four /predict requests with the same 1,000-character report at once used to fail with HTTP 500
    (medspaCy's sentence splitter is not thread-safe); every one must succeed (2 run, the others queue)."""
    from concurrent.futures import ThreadPoolExecutor

    path = data_dir / "nih" / "images" / "00000150_002.png"
    if not path.is_file():
        pytest.skip("NIH image not in the data directory")
    report = (REPORT + " ") * (1000 // len(REPORT) + 1)
    data = path.read_bytes()
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(
            pool.map(
                lambda _: _post(real_client, data, name="chest.png", prior_report=report[:1000]).status_code, range(8)
            )
        )
    assert codes == [200] * 8


def test_openapi_documents_metrics_as_prometheus_text(real_client: TestClient) -> None:
    """Issue 9.5: the schema must say what /metrics returns (Prometheus text), not application/json."""
    content = real_client.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
    assert real_client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_every_error_has_the_service_error_shape(real_client: TestClient) -> None:
    """Issue 9.5: the multipart parser's 400 for a 1 MB form field, unknown routes and wrong methods answer
    with the same JSON shape as the service's own errors (detail, error_type, request_id), without echoing input."""
    big = real_client.post(
        "/predict", files={"file": ("a.png", _grey_png(), "image/png")}, data={"prior_report": "x" * (1024 * 1024 + 10)}
    )
    missing = real_client.get("/no-such-route")
    wrong = real_client.get("/predict")
    for r in (big, missing, wrong):
        body = r.json()
        assert 400 <= r.status_code < 500 and {"detail", "error_type", "request_id"} <= set(body), (r.status_code, body)
        assert body["request_id"] == r.headers["x-request-id"]
        assert "xxxx" not in r.text
    assert (missing.status_code, missing.json()["error_type"]) == (404, "NotFound")
    assert wrong.status_code == 405


def test_prune_keeps_young_crops_past_the_count_limit(tmp_path: Path) -> None:
    """Issue 9.5: under load, a thumbnail named in a response was deleted 10-20 s later by the count limit; crops
    younger than the minimum age stay, and only the disk bound can remove them."""
    now = time.time()
    young = [_touch(tmp_path / f"{i:016x}.png", 60 - i, now) for i in range(6)]  # 60 s ... 55 s old
    old = _touch(tmp_path / "00000000000000ff.png", 900, now)
    assert prune_crops(tmp_path, max_files=2, max_age_s=3600, now=now, min_age_s=300) == 1
    assert not old.exists() and all(p.exists() for p in young)
    for p in young:
        p.write_bytes(b"x" * 1000)
        os.utime(p, (now - 60, now - 60))
    assert prune_crops(tmp_path, max_files=2, max_age_s=3600, now=now, min_age_s=300, max_bytes=3500) == 3
    assert sum(p.exists() for p in young) == 3


def test_service_passes_the_crop_minimum_age(tmp_path: Path) -> None:
    from cxrtriage.config import Settings

    s = Settings(crops_dir=tmp_path)
    assert s.crops_min_age_s >= 60 and s.crops_max_mb > 0


def test_full_queue_sheds_a_large_predict_before_reading_its_body(tmp_path: Path) -> None:
    """Issue 9.5: under overload an upload is refused from its headers; a large body is not read at all."""
    import anyio

    from cxrtriage.serve.runtime import InferenceLimiter

    app = create_app(_settings(tmp_path, max_concurrent=1, max_queue=0), engine=FakeEngine())
    runtime = app.state.runtime
    runtime._limiter = InferenceLimiter(1, 0)
    runtime._limiter.active = 1  # one inference running, no queue place: full
    reads: list[Message] = []
    sent: list[Message] = []

    async def receive() -> Message:
        reads.append({"type": "http.request"})
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"10000000")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert start["status"] == 429 and int(headers["retry-after"]) >= 1 and headers["connection"] == "close"
    assert body["error_type"] == "QueueFull" and body["request_id"]
    assert reads == []


def test_empty_file_part_is_refused_as_the_schema_says(tmp_path: Path) -> None:
    """Issue 9.5: the schema allowed an empty file that the service refuses; now both say at least one byte."""
    app = create_app(_settings(tmp_path), engine=FakeEngine())
    schema = app.openapi()["components"]["schemas"]
    body = next(v for k, v in schema.items() if k.startswith("Body_predict"))
    assert body["properties"]["file"]["minLength"] == 1 and body["required"] == ["file"]
    with TestClient(app) as c:
        _wait_ready(c)
        for files in ({"file": ("chest.png", b"", "image/png")}, {"file": ("", b"", "application/octet-stream")}):
            r = c.post("/predict", files=files)
            assert r.status_code == 422 and set(r.json()) >= {"detail", "error_type", "request_id"}, r.text
