"""End-to-end browser test of the web UI: a real server, Debian's chromium driven by Playwright.

Uploads a real chest X-ray with a prior report and checks what a user sees (label, disclaimer, evidence,
provenance, footer), then a DICOM, then a non-chest photo (a clear error, no stack trace). Every request the
page makes must go to the local server: the UI works offline (no CDNs, web fonts or analytics).

Skips only when /usr/bin/chromium (``apt-get install chromium``) or the shared data directory is missing.
"""

from __future__ import annotations

import importlib.util
import re
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
CHEST = ("nih", "images", "00000150_002.png")
DICOM = ("dicom", "SIIM_CR_chest_PA_jpegbaseline.dcm")
PRIOR_REPORT = ("FINDINGS: Small right pleural effusion. No pneumothorax. Heart size is normal.\n"
                "IMPRESSION: Possible early right lower lobe pneumonia.")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 60_000
LABEL_RE = re.compile(r"^(URGENT|NON-URGENT) — score (0|1)\.\d\d \(threshold (0|1)\.\d\d\)")

needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium missing (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_app(port: int, crops_dir: Path):
    """The real service when it exists; before that, a minimal FastAPI app with the UI mounted the same way."""
    if importlib.util.find_spec("cxrtriage.serve.app") is not None:
        from cxrtriage.serve.app import create_app
        from cxrtriage.serve.settings import ServerSettings

        return create_app(ServerSettings(port=port, crops_dir=crops_dir))

    from fastapi import FastAPI

    from cxrtriage.pipeline import Triage
    from cxrtriage.serve.webui import mount_ui

    engine = Triage(crops_dir=crops_dir)
    latencies: list[float] = []

    class Recording:
        def predict(self, *args, **kwargs):
            pred = engine.predict(*args, **kwargs)
            latencies.append(pred.timings_ms["total"])
            return pred

    def status() -> dict:
        ordered = sorted(latencies)
        return {"model_size_mb": engine.backend.footprint_mb(), "model": engine.backend.info.model_dump(),
                "median_latency_ms": ordered[len(ordered) // 2] if ordered else None}

    app = FastAPI()
    mount_ui(app, get_engine=lambda: Recording(), get_status=status, settings=SimpleNamespace(data_dir=None))
    return app


def _ready(url: str) -> bool:
    import httpx

    try:
        if httpx.get(f"{url}/ui/", timeout=5).status_code != 200:
            return False
        ready = httpx.get(f"{url}/ready", timeout=5)
        return ready.status_code == 200 or ready.status_code == 404  # 404: the minimal app has no /ready
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def ui_crops_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-crops")


@pytest.fixture(scope="module")
def base_url(ui_crops_dir: Path, data_dir: Path):
    port = _free_port()
    yield from _serve(_build_app(port, ui_crops_dir), port)


def _serve(app, port: int):
    """Run ``app`` on 127.0.0.1:port in a thread; yield its URL once the model is ready; stop it afterwards."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not _ready(url):  # the real service loads (and warms up) the model in the background
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the UI server did not start or the model did not become ready")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.requests = []  # type: ignore[attr-defined]
    pg.on("request", lambda req: pg.requests.append(req.url))  # type: ignore[attr-defined]
    pg.goto(f"{base_url}/ui/", wait_until="networkidle")
    pg.locator("#cxr-triage").wait_for(state="visible")
    yield pg
    context.close()


def _upload(page, path: Path) -> None:
    page.locator("#cxr-file input[type=file]").set_input_files(str(path))
    # the upload has finished when Gradio links the file as stored on the server
    page.locator(f'#cxr-file a[download="{path.name}"][href*="/file="]').first.wait_for(state="visible")


def _triage(page) -> None:
    page.locator("#cxr-triage").click()
    page.wait_for_function(
        "() => { const e = document.querySelector('#cxr-error .cxr-error');"
        " const l = document.querySelector('#cxr-label .cxr-label'); return !!(e || l); }", timeout=TIMEOUT_MS)


def _assert_offline(page) -> None:
    outside = []
    for url in page.requests:
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob"}:
            continue
        if parts.hostname not in LOCAL_HOSTS:
            outside.append(url)
    assert not outside, f"the page contacted hosts other than the local server: {outside}"


@needs_chromium
def test_triage_chest_xray_with_prior_report(page, data_dir: Path, tmp_path: Path) -> None:
    body = page.locator("body")
    disclaimer = page.locator("#cxr-disclaimer")
    from cxrtriage.schema import DISCLAIMER

    assert DISCLAIMER in disclaimer.inner_text() and disclaimer.is_visible()
    assert "cxrtriage — chest X-ray triage" in page.title()
    footer = page.locator("#cxr-footer")
    assert "quantized ONNX size:" in footer.inner_text()

    _upload(page, data_dir.joinpath(*CHEST))
    page.locator("#cxr-prior textarea").fill(PRIOR_REPORT)
    _triage(page)

    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    label = page.locator("#cxr-label .cxr-label")
    assert label.is_visible()
    assert LABEL_RE.match(label.inner_text().strip()), label.inner_text()
    assert page.locator("#cxr-explanation").inner_text().strip().startswith(("Urgent", "Non-Urgent"))
    # evidence: the annotated image and 1-3 crop thumbnails
    page.locator("#cxr-image img").first.wait_for(state="visible")
    thumbs = page.locator("#cxr-crops img")
    thumbs.first.wait_for(state="visible")
    assert 1 <= thumbs.count() <= 3
    # provenance: quoted prior-report sentences with their relation, and similar training cases
    prov = page.locator("#cxr-provenance")
    prov_text = prov.inner_text()
    assert re.search(r"“[^”]*Small right pleural effusion\.”", prov_text), prov_text  # quoted verbatim
    assert "supports" in prov_text and "contradicts" in prov_text
    assert "Most similar training cases" in prov_text and re.search(r"\b0\.\d\d\b", prov_text)
    # footer numbers measured by this instance, refreshed after the request
    page.wait_for_function("() => /\\d ms/.test(document.querySelector('#cxr-footer').innerText)")
    foot = footer.inner_text()
    assert re.search(r"quantized ONNX size: \d+(\.\d+)? MB; inference time: \d+ ms on this machine", foot), foot
    assert disclaimer.is_visible()
    assert "Traceback" not in body.inner_text()
    page.screenshot(path=str(tmp_path / "ui_result.png"), full_page=True)
    _assert_offline(page)


@needs_chromium
def test_dicom_upload(page, data_dir: Path) -> None:
    dicom = data_dir.joinpath(*DICOM)
    if not dicom.is_file():
        pytest.skip(f"{dicom} missing")
    _upload(page, dicom)
    _triage(page)
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    assert LABEL_RE.match(page.locator("#cxr-label .cxr-label").inner_text().strip())
    page.locator("#cxr-image img").first.wait_for(state="visible")
    _assert_offline(page)


FAKE_NAME, FAKE_ID = "DOE^JANE", "FAKEID0042"


def _files_containing(root: Path, needles: list[bytes], since: float) -> list[str]:
    """Files under ``root`` written since ``since`` whose name or content holds one of ``needles``."""
    hits = []
    for path in root.rglob("*"):
        try:
            if not path.is_file() or path.stat().st_mtime < since:
                continue
            name = path.name.encode()
            if any(n in name for n in needles) or any(n in path.read_bytes() for n in needles):
                hits.append(str(path))
        except OSError:
            continue
    return hits


@needs_chromium
def test_dicom_with_identifiers_leaves_no_copy_and_is_never_served(page, base_url: str, data_dir: Path,
                                                                   ui_crops_dir: Path, tmp_path: Path) -> None:
    """Issue 9.2: Gradio kept uploads as ``<hash>/<original name>`` (full header) and served them back."""
    import tempfile

    import httpx
    import pydicom

    source = data_dir.joinpath(*DICOM)
    if not source.is_file():
        pytest.skip(f"{source} missing")
    ds = pydicom.dcmread(source)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = FAKE_NAME, FAKE_ID, "19700101"
    upload_dir = tmp_path / "upload"
    upload_dir.mkdir()
    named = upload_dir / f"{FAKE_NAME}_{FAKE_ID}.dcm"  # the file name a PACS export often has
    ds.save_as(named)
    started = time.time() - 1

    _upload(page, named)
    _triage(page)
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    assert LABEL_RE.match(page.locator("#cxr-label .cxr-label").inner_text().strip())
    page.locator("#cxr-image img").first.wait_for(state="visible")

    needles = [FAKE_NAME.encode(), FAKE_ID.encode(), b"DOE_JANE"]
    leaks = _files_containing(Path(tempfile.gettempdir()), needles, started) + _files_containing(ui_crops_dir, needles, started)
    leaks = [p for p in leaks if not p.startswith(str(upload_dir))]
    assert not leaks, f"the upload was stored on the server: {leaks}"
    # the link the page holds for the uploaded file is not served, and neither is any file outside the crops dir
    href = page.locator("#cxr-file a[href*='/file=']").first.get_attribute("href")
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get(href).status_code == 404
        for path in (str(named), "/etc/passwd", str(ui_crops_dir / ".." / "x.png")):
            reply = client.get(f"/ui/gradio_api/file={path}")
            assert reply.status_code == 404 and reply.json()["error_type"] == "NotFound"
        # the rendered result the page shows is served (it lives in the crops directory's ui/ folder)
        shown = page.locator("#cxr-image img").first.get_attribute("src")
        assert "/file=" in shown and str(ui_crops_dir) in shown
        assert client.get(shown).status_code == 200
    result_text = " ".join(page.locator(sel).inner_text() for sel in ("#cxr-label", "#cxr-explanation", "#cxr-footer"))
    assert FAKE_ID not in result_text and "DOE" not in result_text and "19700101" not in page.content()
    _assert_offline(page)


@needs_chromium
def test_first_example_fills_the_form_and_triages(page) -> None:
    from cxrtriage.data import DEMO_PRIOR_REPORT, example_paths

    examples = example_paths()
    if not examples:
        pytest.skip("no example images in the data directory")
    first = Path(examples[0])
    page.get_by_text(f"· {first.name}").first.click()
    page.locator(f'#cxr-file a[download="{first.name}"]').first.wait_for(state="visible")
    assert page.locator("#cxr-prior textarea").input_value() == DEMO_PRIOR_REPORT
    _triage(page)
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    assert LABEL_RE.match(page.locator("#cxr-label .cxr-label").inner_text().strip())
    assert "supports" in page.locator("#cxr-provenance").inner_text()
    _assert_offline(page)


@needs_chromium
def test_non_chest_image_shows_error_not_traceback(page, data_dir: Path, tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data as skdata

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    _upload(page, photo)
    _triage(page)
    error = page.locator("#cxr-error .cxr-error")
    assert error.is_visible()
    text = error.inner_text()
    assert "not triaged" in text and len(text.splitlines()) >= 2, text
    assert page.locator("#cxr-label .cxr-label").count() == 0  # no stale or partial result next to the error
    assert "Traceback" not in page.locator("body").inner_text()
    assert page.locator("#cxr-disclaimer").is_visible()
    page.screenshot(path=str(tmp_path / "ui_error.png"), full_page=True)
    _assert_offline(page)


@needs_chromium
def test_triage_without_file_asks_for_one(page) -> None:
    _triage(page)
    assert "Please upload a chest X-ray" in page.locator("#cxr-error").inner_text()
    _assert_offline(page)


# ----------------------------------------------------------------------------- page parts (no browser needed)


def _prediction(**overrides):
    from cxrtriage.schema import ModelInfo, Prediction

    values = dict(label="Urgent", score=0.2, explanation="Urgent: in the review band.", threshold=0.22,
                  review_band=(0.18, 0.3), needs_review=True,
                  model=ModelInfo(name="m", version="1", sha256="0" * 64, backend="bundled"))
    values.update(overrides)
    return Prediction(**values)


def test_label_line_colours_and_review_flag() -> None:
    from cxrtriage.serve.webui_render import label_html

    def text(markup: str) -> str:
        return re.sub(r"<[^>]+>", "", markup)

    review = label_html(_prediction())
    assert "cxr-amber" in review and "needs review" in review
    assert LABEL_RE.match(text(review)) and "URGENT — score 0.20 (threshold 0.22)" in text(review)
    urgent = label_html(_prediction(score=0.83, needs_review=False))
    assert "cxr-urgent" in urgent and "needs review" not in urgent
    calm = label_html(_prediction(label="Non-Urgent", score=0.05, needs_review=False))
    assert "cxr-nonurgent" in calm and text(calm).startswith("NON-URGENT — score 0.05")


def test_footer_numbers_and_hai_def_notice() -> None:
    from cxrtriage.serve.webui_render import HAI_DEF_NOTICE, footer_html

    before = footer_html({"model_size_mb": 0.97, "median_latency_ms": None, "backend": "bundled"})
    assert "quantized ONNX size: <span id=\"cxr-size\">0.97</span> MB" in before
    assert ">–</span> ms on this machine" in before and HAI_DEF_NOTICE not in before
    after = footer_html({"model_size_mb": 0.97, "median_latency_ms": None, "model": {"backend": "bundled"}}, 83.4)
    assert ">83</span> ms on this machine (median)" in after
    for backend in ("medsiglip", "medsiglip-onnx", "medgemma", "medgemma-gguf"):
        foot = footer_html({"model_size_mb": 1, "median_latency_ms": 5, "backend": backend})
        assert HAI_DEF_NOTICE in foot
        # only a single quantised ONNX file is called that; torch / GGUF backends report their files on disk
        assert ("quantized ONNX size:" in foot) == (backend == "medsiglip-onnx")
        assert ("model files on disk:" in foot) == (backend != "medsiglip-onnx")


def test_user_text_is_escaped() -> None:
    from cxrtriage.schema import Provenance
    from cxrtriage.serve.webui_render import error_html, provenance_html

    assert "<script>" not in error_html("<script>alert(1)</script>")
    prov = provenance_html(_prediction(provenance=[Provenance(source="prior_report", snippet="<b>x</b>", relation="supports")]))
    assert "<b>x</b>" not in prov and "&lt;b&gt;x&lt;/b&gt;" in prov


def test_display_image_is_8_bit_and_boxes_scale(tmp_path: Path) -> None:
    import numpy as np

    from cxrtriage.schema import Crop
    from cxrtriage.serve.webui_render import draw_boxes, to_display_image

    pixels = np.linspace(0, 1, 2048 * 1024, dtype=np.float32).reshape(2048, 1024)
    img, scale = to_display_image(pixels)
    assert img.mode == "RGB" and max(img.size) == 1024 and scale == 0.5
    pred = _prediction(crops=[Crop(x=100, y=200, w=300, h=400, thumb_path=str(tmp_path / "t.png"), region="right lower zone")])
    boxed = np.asarray(draw_boxes(img, pred, scale))
    assert boxed.shape == (1024, 512, 3) and (boxed != np.asarray(img)).any()


# ------------------------------------------------------------------ a HAI-DEF backend, set up as a user would


@pytest.fixture(scope="module")
def hai_def_url(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """The real service on the MedSigLIP ONNX bundle, built with the documented commands on a tiny random-weight
    MedSigLIP: `hai-def tiny` -> `hai-def train-probe` (real images) -> `hai-def export-onnx`."""
    pytest.importorskip("transformers")
    pytest.importorskip("sklearn")
    from cxrtriage.cli.main import main
    from cxrtriage.serve.app import create_app
    from cxrtriage.serve.settings import ServerSettings

    work = tmp_path_factory.mktemp("hai-def-ui")
    assert main(["hai-def", "tiny", "--out", str(work / "tiny"), "--which", "medsiglip"]) == 0
    assert main(["hai-def", "train-probe", "--model", str(work / "tiny" / "medsiglip"), "--out", str(work / "probe"),
                 "--data-dir", str(data_dir), "--limit", "6", "--n-boot", "50"]) == 0
    assert main(["hai-def", "export-onnx", "--model", str(work / "tiny" / "medsiglip"), "--probe", str(work / "probe"),
                 "--out", str(work / "bundle")]) == 0
    port = _free_port()
    app = create_app(ServerSettings(port=port, crops_dir=work / "crops", backend="medsiglip", model_dir=work / "bundle"))
    yield from _serve(app, port)


@needs_chromium
def test_hai_def_backend_run_shows_the_terms_notice(browser, hai_def_url: str, data_dir: Path, tmp_path: Path) -> None:
    """A real triage through the MedSigLIP ONNX backend: a label, no CAM crops claimed, the backend named and the
    HAI-DEF terms notice in the footer, the disclaimer still visible."""
    from cxrtriage.schema import DISCLAIMER
    from cxrtriage.serve.webui_render import HAI_DEF_NOTICE

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []  # type: ignore[attr-defined]
    page.on("request", lambda req: page.requests.append(req.url))  # type: ignore[attr-defined]
    try:
        page.goto(f"{hai_def_url}/ui/", wait_until="networkidle")
        _upload(page, data_dir.joinpath(*CHEST))
        _triage(page)
        assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
        assert LABEL_RE.match(page.locator("#cxr-label .cxr-label").inner_text().strip())
        page.wait_for_function("() => /\\d ms/.test(document.querySelector('#cxr-footer').innerText)")
        foot = page.locator("#cxr-footer").inner_text()
        assert HAI_DEF_NOTICE in foot and "backend medsiglip-onnx" in foot, foot
        assert DISCLAIMER in page.locator("#cxr-disclaimer").inner_text()
        assert page.locator("#cxr-crops img").count() == 0  # MedSigLIP has no activation map: no evidence crops
        assert "no localisation" in page.locator("#cxr-explanation").inner_text()  # and the explanation says so
        page.screenshot(path=str(tmp_path / "ui_hai_def.png"), full_page=True)
        _assert_offline(page)
    finally:
        context.close()
