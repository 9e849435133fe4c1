"""End-to-end browser test of the web UI: a real server, Debian's chromium driven by Playwright.

Uploads a real chest X-ray with a prior report and checks what a user sees (label, disclaimer, evidence,
provenance, footer), then a DICOM, then a non-chest photo (a clear error, no stack trace); the Worklist tab lists
studies in reading order and opens a stored result (marking it opened), marks it reported (it leaves the active list,
and shows under Reported) and pages through a long list. Every request the page makes must go to the local server:
the UI works offline (no CDNs, web fonts or analytics).

Skips only when /usr/bin/chromium (``apt-get install chromium``; the ``browser`` fixture of ``tests/serve/conftest.py``)
or the shared data directory is missing.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cxrtriage.evaluation.live_server import open_ui

CHEST = ("nih", "images", "00000150_002.png")
DICOM = ("dicom", "SIIM_CR_chest_PA_jpegbaseline.dcm")
PRIOR_REPORT = (
    "FINDINGS: Small right pleural effusion. No pneumothorax. Heart size is normal.\n"
    "IMPRESSION: Possible early right lower lobe pneumonia."
)
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 60_000
LABEL_RE = re.compile(
    r"^(URGENT|NON-URGENT) — (likely abnormal|no urgent finding detected|needs a radiologist's review)$"
)
#: a synthetic prior report that describes no urgent finding (not from any dataset)
NORMAL_PRIOR_REPORT = (
    "FINDINGS: The lungs are clear. No focal consolidation, pleural effusion or pneumothorax.\n"
    "IMPRESSION: No acute cardiopulmonary abnormality."
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_app(port: int, crops_dir: Path):
    """The real service when it exists; before that, a minimal FastAPI app with the UI mounted the same way."""
    if importlib.util.find_spec("cxrtriage.serve.app") is not None:
        from cxrtriage.config import Settings
        from cxrtriage.serve.app import create_app

        # its own worklist file: the Worklist tab's test checks the order of what this service filed
        return create_app(Settings(port=port, crops_dir=crops_dir, worklist_path=crops_dir / "worklist.sqlite"))

    from fastapi import FastAPI

    from cxrtriage.config import Settings
    from cxrtriage.pipeline import Triage
    from cxrtriage.serve.ui.app import mount_ui

    engine = Triage(crops_dir=crops_dir)
    latencies: list[float] = []

    class Recording:
        def predict(self, *args, **kwargs):
            pred = engine.predict(*args, **kwargs)
            latencies.append(pred.timings_ms["total"])
            return pred

    def status() -> dict:
        ordered = sorted(latencies)
        return {
            "model_size_mb": engine.backend.footprint_mb(),
            "model": engine.backend.info.model_dump(),
            "median_latency_ms": ordered[len(ordered) // 2] if ordered else None,
        }

    app = FastAPI()
    mount_ui(app, get_engine=lambda: Recording(), get_status=status, settings=Settings(crops_dir=crops_dir))
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
def ui_port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def ui_app(ui_port: int, ui_crops_dir: Path):
    return _build_app(ui_port, ui_crops_dir)


@pytest.fixture(scope="module")
def base_url(ui_app, ui_port: int, data_dir: Path):
    yield from _serve(ui_app, ui_port)


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


@pytest.fixture()
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.requests = []  # type: ignore[attr-defined]
    pg.on("request", lambda req: pg.requests.append(req.url))  # type: ignore[attr-defined]
    open_ui(pg, base_url)
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
        " const l = document.querySelector('#cxr-label .cxr-label'); return !!(e || l); }",
        timeout=TIMEOUT_MS,
    )


def _assert_offline(page) -> None:
    outside = []
    for url in page.requests:
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob"}:
            continue
        if parts.hostname not in LOCAL_HOSTS:
            outside.append(url)
    assert not outside, f"the page contacted hosts other than the local server: {outside}"


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
    # under the banner, the explanation says where the evidence lies (the banner already says the label)
    explanation = page.locator("#cxr-explanation").inner_text()
    assert re.search(r"[Ee]vidence (\(not a finding\) lies mostly )?in the|[Nn]o focal region", explanation), (
        explanation
    )
    # evidence: the annotated image and 1-3 crop thumbnails
    page.locator("#cxr-image img").first.wait_for(state="visible")
    thumbs = page.locator("#cxr-crops img")
    thumbs.first.wait_for(state="visible")
    assert 1 <= thumbs.count() <= 3
    # provenance: quoted prior-report sentences with their relation, and similar training cases
    prov = page.locator("#cxr-provenance")
    prov_text = prov.inner_text()
    assert re.search(r"“[^”]*Small right pleural effusion\.”", prov_text), prov_text  # quoted verbatim
    # the finding as the report states it, not "supports"/"contradicts" (which read as agreeing with the AI or not)
    assert "report: present" in prov_text and "report: absent" in prov_text
    assert "supports" not in prov_text and "contradicts" not in prov_text
    _assert_main_view_has_no_bare_number(page)
    # the numbers are behind the Details toggle, closed until the reader opens it, each with its meaning
    details = page.locator("#cxr-details details")
    assert details.get_attribute("open") is None
    assert not page.get_by_text("the model's estimated chance that this film is urgent").is_visible()
    page.locator("#cxr-details summary").click()
    page.wait_for_function("() => document.querySelector('#cxr-details details').open")
    shown = page.locator("#cxr-details").inner_text()
    assert re.search(r"Score [01]\.\d\d(\d\d)? — the model's estimated chance that this film is urgent", shown), shown
    assert re.search(r"Threshold [01]\.\d\d(\d\d)? — a film scoring at or above it is labelled Urgent; set for", shown)
    assert "Review band" in shown and "Held-out AUC" in shown and "Most similar training cases" in shown
    assert re.search(r"Box 1, [a-z ]+: strength [01]\.\d\d — the share of the model's evidence", shown), shown
    # footer numbers measured by this instance, refreshed after the request
    page.wait_for_function("() => /\\d ms/.test(document.querySelector('#cxr-footer').innerText)")
    foot = footer.inner_text()
    assert re.search(r"quantized ONNX size: \d+(\.\d+)? MB; inference time: \d+ ms on this machine", foot), foot
    assert disclaimer.is_visible()
    assert "Traceback" not in body.inner_text()
    page.screenshot(path=str(tmp_path / "ui_result.png"), full_page=True)
    _assert_offline(page)


def _assert_main_view_has_no_bare_number(page) -> None:
    """Banner, explanation, crop captions, warnings and prior report as the reader sees them: the only number is the
    cardiothoracic ratio, which says what it is (the rest sit in Details)."""
    sections = ("#cxr-label", "#cxr-explanation", "#cxr-warnings", "#cxr-provenance", "#cxr-crops")
    parts = [" ".join(page.locator(sel).all_inner_texts()) for sel in sections]  # a hidden part: no text
    text = " ".join(parts)
    numbers = re.findall(r"\d+\.\d+", text)
    ratio = re.findall(r"cardiothoracic ratio (\d\.\d\d) \(the heart's width over the chest's", text)
    assert numbers == ratio, text


def test_an_urgent_film_with_a_normal_prior_report_says_they_disagree(page, tmp_path: Path) -> None:
    """Image and prior report disagree (the film scores Urgent, the report describes no urgent finding): the banner
    asks for a radiologist's review, the explanation and a warning say why in plain words, the label stays Urgent."""
    from cxrtriage.data import example_paths
    from cxrtriage.decision import PRIOR_REPORT_NORMAL_WARNING

    examples = [p for p in example_paths() if "nih" in p.parts]
    if not examples:
        pytest.skip("no NIH example images in the data directory")
    _upload(page, examples[0])  # the urgent NIH test example, which the shipped model scores Urgent
    page.locator("#cxr-prior textarea").fill(NORMAL_PRIOR_REPORT)
    _triage(page)
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    label = page.locator("#cxr-label .cxr-label")
    assert label.inner_text().strip() == "URGENT — needs a radiologist's review"
    assert "cxr-urgent" in label.get_attribute("class")
    explanation = page.locator("#cxr-explanation").inner_text().strip()
    assert explanation.startswith("The prior report describes no urgent finding, but this film is triaged Urgent")
    warnings = page.locator("#cxr-warnings")
    assert warnings.is_visible() and PRIOR_REPORT_NORMAL_WARNING in warnings.inner_text()
    prov = page.locator("#cxr-provenance").inner_text()
    assert "report: absent" in prov and "report: present" not in prov
    _assert_main_view_has_no_bare_number(page)
    page.screenshot(path=str(tmp_path / "ui_disagreement.png"), full_page=True)
    _assert_offline(page)


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
    """Files under ``root`` written since ``since`` whose name or content holds one of ``needles``. ``os.walk``
    skips a folder that vanishes during the walk (another process's browser profile in /tmp); ``rglob`` raised."""
    hits = []
    paths = (Path(folder) / name for folder, _, names in os.walk(root) for name in names)
    for path in paths:
        try:
            if not path.is_file() or path.stat().st_mtime < since:
                continue
            name = path.name.encode()
            if any(n in name for n in needles) or any(n in path.read_bytes() for n in needles):
                hits.append(str(path))
        except OSError:
            continue
    return hits


def test_dicom_with_identifiers_leaves_no_copy_and_is_never_served(
    page, base_url: str, data_dir: Path, ui_crops_dir: Path, tmp_path: Path
) -> None:
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
    leaks = _files_containing(Path(tempfile.gettempdir()), needles, started) + _files_containing(
        ui_crops_dir, needles, started
    )
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
    assert "report: present" in page.locator("#cxr-provenance").inner_text()
    _assert_offline(page)


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


def test_triage_without_file_asks_for_one(page) -> None:
    _triage(page)
    assert "Please upload a chest X-ray" in page.locator("#cxr-error").inner_text()
    _assert_offline(page)


# ----------------------------------------------------------------------------- the Worklist tab


#: (key, label, score, needs review, minutes waiting, priority, wait as shown); reading order: Urgent or needs review
#: (oldest first), then overdue routine, then the rest. The waits sit mid-minute, so a slow test still shows the same
#: minute. WL-URGENT is filed as a DICOM study (accession, date, view, modality), the rest as PNGs.
WORKLIST_STUDIES = [
    ("WL-URGENT", "Urgent", 0.91, False, 12.3, "urgent", "12 min"),
    ("WL-REVIEW", "Non-Urgent", 0.27, True, 4.3, "urgent", "4 min"),
    ("WL-OVERDUE", "Non-Urgent", 0.03, False, 95.3, "overdue", "1 h 35 min"),
    ("WL-ROUTINE", "Non-Urgent", 0.04, False, 30.3, "routine", "30 min"),
]


def _worklist_rows(page) -> list[dict]:
    return page.locator("#cxr-worklist tr[data-key]").evaluate_all(
        "rows => rows.map(r => ({key: r.dataset.key, cls: r.className, priority: r.dataset.priority,"
        " cells: [...r.cells].map(c => c.innerText.trim())}))"
    )


def _open_worklist_tab(page) -> None:
    page.get_by_role("tab", name="Worklist").click()
    page.locator("#cxr-worklist tr[data-key], #cxr-worklist #cxr-wl-empty").first.wait_for(state="visible")


def test_worklist_tab_lists_studies_in_reading_order_and_opens_one(page, ui_app, tmp_path: Path) -> None:
    """Studies filed on the service's worklist show in reading order with accession, study date, view, modality,
    wait, label, review flag and state; clicking one opens its stored result (label line, explanation, evidence,
    disclaimer) and marks it opened; the tab refreshes itself."""
    import datetime as dt

    from cxrtriage.schema import DISCLAIMER, Crop
    from cxrtriage.worklist import StudyInfo

    worklist = ui_app.state.runtime.worklist
    now = dt.datetime.now(dt.timezone.utc)
    dicom = StudyInfo(accession="WL-URGENT", study_date="2026-12-01", study_time="23:41", view="AP", modality="DX")
    for key, label, score, review, minutes, _, _ in WORKLIST_STUDIES:
        crops = (
            [Crop(x=40, y=60, w=120, h=90, thumb_path="/static/crops/x.png", region="right lower zone", strength=0.7)]
            if label == "Urgent"
            else []
        )
        pred = _prediction(
            label=label,
            score=score,
            needs_review=review,
            crops=crops,
            explanation=f"{label}: crafted study {key} for the worklist test.",
        )
        study = dicom if key == "WL-URGENT" else StudyInfo(modality="PNG")
        worklist.add(pred, key, now - dt.timedelta(minutes=minutes), study)

    _open_worklist_tab(page)
    rows = [r for r in _worklist_rows(page) if r["key"].startswith("WL-")]
    assert [r["key"] for r in rows] == [s[0] for s in WORKLIST_STUDIES]  # other tests' UI triages may sit between
    for row, (key, label, _, review, _, priority, wait) in zip(rows, WORKLIST_STUDIES):
        _position, shown_key, when, view, modality, shown_wait, shown_label, shown_review, state = row["cells"]
        assert (shown_key, shown_label, shown_wait, state) == (key, label, wait, "new"), row
        assert (shown_review == "needs review") == review and row["priority"] == priority, row
        expected = ("2026-12-01 23:41", "AP", "DX") if key == "WL-URGENT" else ("—", "—", "PNG")
        assert (when, view, modality) == expected, row
    kinds = {r["key"]: r["cls"] for r in rows}
    assert "cxr-wl-overdue" in kinds["WL-OVERDUE"] and "cxr-wl-urgent" in kinds["WL-URGENT"]
    assert "cxr-wl-review" in kinds["WL-REVIEW"] and "cxr-wl-routine" in kinds["WL-ROUTINE"]
    positions = [int(r["cells"][0]) for r in _worklist_rows(page)]
    assert positions == list(range(1, len(positions) + 1))

    page.locator('#cxr-worklist tr[data-key="WL-URGENT"]').click()
    study = page.locator("#cxr-wl-study")
    page.locator("#cxr-wl-study .cxr-label").wait_for(state="visible")
    assert LABEL_RE.match(page.locator("#cxr-wl-study .cxr-label").inner_text().strip())
    assert page.locator("#cxr-wl-study .cxr-label").inner_text().strip() == "URGENT — likely abnormal"
    text = study.inner_text()
    assert "crafted study WL-URGENT" in text and "WL-URGENT" in text
    assert "right lower zone" in text and DISCLAIMER in text and "Most similar training cases" in text
    page.locator('#cxr-worklist tr.cxr-wl-selected[data-key="WL-URGENT"][data-state="opened"]').wait_for()
    assert "study date 2026-12-01 23:41 · view AP · DX · state opened" in text  # opening it marked it opened
    assert worklist.item("WL-URGENT")["state"] == "opened"
    page.locator('#cxr-worklist tr[data-key="WL-REVIEW"]').click()
    page.wait_for_function(
        "() => document.querySelector('#cxr-wl-study').innerText.includes('crafted study WL-REVIEW')"
    )
    assert "needs a radiologist's review" in page.locator("#cxr-wl-study .cxr-label").inner_text()

    # it refreshes by itself: a study filed now appears without pressing Refresh
    worklist.add(_prediction(label="Urgent", score=0.8, needs_review=False), "WL-LATE")
    page.locator('#cxr-worklist tr[data-key="WL-LATE"]').wait_for(state="visible", timeout=20_000)
    page.screenshot(path=str(tmp_path / "ui_worklist.png"), full_page=True)
    assert "Traceback" not in page.locator("body").inner_text()
    # no session state: Gradio would hold a heartbeat connection, which the service's body timeout cuts after 10 s,
    # closing the session and dropping the result of a triage still running then
    assert not [u for u in page.requests if "/heartbeat/" in u]
    _assert_offline(page)


def _filter(page, name: str) -> None:
    page.locator("#cxr-wl-filter label", has_text=name).click()


def _summary(page) -> str:
    return page.locator("#cxr-wl-summary").inner_text().strip()


def test_a_study_marked_reported_leaves_the_active_list_and_can_be_returned(page, ui_app) -> None:
    """Open a study (opened), press Mark reported: it leaves the active list (the total drops by one) and shows
    under Reported; Return to list puts it back on the active list as new."""
    import datetime as dt

    worklist = ui_app.state.runtime.worklist
    worklist.add(
        _prediction(label="Urgent", score=0.95, needs_review=False),
        "MR-URGENT",
        dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=2),
    )
    _open_worklist_tab(page)
    row = page.locator('#cxr-worklist tr[data-key="MR-URGENT"]')
    row.click()
    page.locator('#cxr-worklist tr[data-key="MR-URGENT"][data-state="opened"]').wait_for()
    before = int(re.search(r"of ([\d,]+)", _summary(page)).group(1).replace(",", ""))
    mark, back = page.locator("#cxr-wl-reported"), page.locator("#cxr-wl-return")
    assert mark.is_visible() and back.is_visible() and mark.inner_text() == "Mark reported"

    mark.click()
    row.wait_for(state="detached")
    assert worklist.item("MR-URGENT")["state"] == "reported"
    assert not mark.is_visible() and "Click a row" in page.locator("#cxr-wl-study").inner_text()
    assert f"of {before - 1:,}" in _summary(page), _summary(page)

    _filter(page, "Reported")
    reported = page.locator('#cxr-worklist tr[data-key="MR-URGENT"][data-state="reported"]')
    reported.wait_for()
    assert "cxr-wl-reported" in reported.get_attribute("class")
    reported.click()  # opening a reported study does not change its state
    page.wait_for_function("() => document.querySelector('#cxr-wl-study').innerText.includes('MR-URGENT')")
    assert worklist.item("MR-URGENT")["state"] == "reported"
    back.click()
    reported.wait_for(state="detached")
    _filter(page, "Active")
    page.locator('#cxr-worklist tr[data-key="MR-URGENT"][data-state="new"]').wait_for()
    assert worklist.item("MR-URGENT")["state"] == "new"
    _assert_offline(page)


def test_a_long_worklist_is_paged_with_its_totals(page, ui_app) -> None:
    """60 more routine studies: the tab shows 50 at a time ("Studies 1–50 of N · U urgent"), Next goes on from
    51, Previous comes back; no study is cut off."""
    import datetime as dt

    worklist = ui_app.state.runtime.worklist
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(60):
        worklist.add(_prediction(label="Non-Urgent", score=0.01, needs_review=False), f"PG-{i:02d}", now)
    listing = worklist.page()
    _open_worklist_tab(page)
    expected = f"Studies 1–50 of {listing['total']:,} · {listing['urgent_total']:,} urgent · page 1 of"
    assert _summary(page).startswith(expected), _summary(page)
    assert len(_worklist_rows(page)) == 50 and page.locator("#cxr-wl-prev").is_disabled()
    page.locator("#cxr-wl-next").click()
    page.wait_for_function("() => document.querySelector('#cxr-wl-summary').innerText.includes('Studies 51–')")
    assert int(_worklist_rows(page)[0]["cells"][0]) == 51
    page.locator("#cxr-wl-prev").click()
    page.wait_for_function("() => document.querySelector('#cxr-wl-summary').innerText.includes('Studies 1–50')")
    for i in range(60):
        worklist.set_state(f"PG-{i:02d}", "reported")  # out of the other tests' way


def test_a_study_triaged_in_the_ui_is_filed_on_the_worklist(page, ui_app, data_dir: Path) -> None:
    _upload(page, data_dir.joinpath(*CHEST))
    _triage(page)
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    key = page.locator("#cxr-filed code").inner_text().strip()
    label = page.locator("#cxr-label .cxr-label").get_attribute("data-label")
    stored = ui_app.state.runtime.worklist.result(key)
    assert stored is not None and stored["label"] == label
    assert all(c["thumb_path"].startswith("/static/crops/") for c in stored["crops"])  # no server paths stored
    _open_worklist_tab(page)
    row = page.locator(f'#cxr-worklist tr[data-key="{key}"]')
    row.wait_for(state="visible")
    assert label in row.inner_text()
    row.click()
    page.locator(f'#cxr-wl-study .cxr-wl-study[data-key="{key}"]').wait_for()  # headed by the key's first 8
    assert key[:8] in page.locator("#cxr-wl-study .cxr-wl-head").inner_text()
    assert LABEL_RE.match(page.locator("#cxr-wl-study .cxr-label").inner_text().strip())
    # back on the Triage tab, the result is still there
    page.get_by_role("tab", name="Triage").click()
    assert page.locator("#cxr-label .cxr-label").is_visible()
    _assert_offline(page)


def test_an_accession_typed_in_the_ui_names_the_study_and_a_bad_one_is_refused(page, ui_app, data_dir: Path) -> None:
    """The reader can give the study's accession: the result is filed under it (so the worklist row is the study
    they know); something that is not an accession (a name) is refused before anything is triaged."""
    _upload(page, data_dir.joinpath(*CHEST))
    page.locator("#cxr-accession textarea, #cxr-accession input").first.fill("Doe^John")
    _triage(page)
    assert "Accession not accepted" in page.locator("#cxr-error").inner_text()
    assert not page.locator("#cxr-label .cxr-label").is_visible()
    page.locator("#cxr-accession textarea, #cxr-accession input").first.fill("ACC-UI-0042")
    page.locator("#cxr-triage").click()  # the earlier error is still shown until the new result replaces it
    page.locator("#cxr-label .cxr-label").wait_for(state="visible", timeout=TIMEOUT_MS)
    assert page.locator("#cxr-error .cxr-error").count() == 0, page.locator("#cxr-error").inner_text()
    assert page.locator("#cxr-filed code").inner_text().strip() == "ACC-UI-0042"
    stored = ui_app.state.runtime.worklist.result("ACC-UI-0042")
    assert stored is not None and stored["label"] == page.locator("#cxr-label .cxr-label").get_attribute("data-label")


# ----------------------------------------------------------------------------- page parts (no browser needed)


def _prediction(**overrides):
    from cxrtriage.schema import ModelInfo, Prediction

    values = dict(
        label="Urgent",
        score=0.2,
        explanation="Urgent: in the review band.",
        threshold=0.22,
        review_band=(0.18, 0.3),
        needs_review=True,
        model=ModelInfo(name="m", version="1", sha256="0" * 64, backend="bundled"),
    )
    values.update(overrides)
    return Prediction(**values)


def test_label_line_colours_and_review_flag() -> None:
    from cxrtriage.serve.ui.render import label_html

    def text(markup: str) -> str:
        return re.sub(r"<[^>]+>", "", markup)

    review = label_html(_prediction())
    assert "cxr-urgent" in review and "needs a radiologist&#x27;s review" in review  # Urgent stays red
    assert LABEL_RE.match(html.unescape(text(review))) and "score" not in text(review)
    urgent = label_html(_prediction(score=0.83, needs_review=False))
    assert "cxr-urgent" in urgent and "radiologist" not in urgent
    calm = label_html(_prediction(label="Non-Urgent", score=0.05, needs_review=False))
    assert "cxr-nonurgent" in calm and text(calm) == "NON-URGENT — no urgent finding detected"
    flagged = label_html(_prediction(label="Non-Urgent", score=0.05, needs_review=True))
    assert "cxr-amber" in flagged


def test_footer_numbers_and_hai_def_notice() -> None:
    from cxrtriage.serve.ui.render import HAI_DEF_NOTICE, footer_html

    before = footer_html({"model_size_mb": 0.97, "median_latency_ms": None, "backend": "bundled"})
    assert 'quantized ONNX size: <span id="cxr-size">0.97</span> MB' in before
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
    from cxrtriage.serve.ui.render import error_html, provenance_html

    assert "<script>" not in error_html("<script>alert(1)</script>")
    prov = provenance_html(
        _prediction(provenance=[Provenance(source="prior_report", snippet="<b>x</b>", relation="supports")])
    )
    assert "<b>x</b>" not in prov and "&lt;b&gt;x&lt;/b&gt;" in prov


def test_display_image_is_8_bit_and_boxes_scale(tmp_path: Path) -> None:
    import numpy as np

    from cxrtriage.schema import Crop
    from cxrtriage.serve.ui.render import draw_boxes, to_display_image

    pixels = np.linspace(0, 1, 2048 * 1024, dtype=np.float32).reshape(2048, 1024)
    img, scale = to_display_image(pixels)
    assert img.mode == "RGB" and max(img.size) == 1024 and scale == 0.5
    pred = _prediction(
        crops=[Crop(x=100, y=200, w=300, h=400, thumb_path=str(tmp_path / "t.png"), region="right lower zone")]
    )
    boxed = np.asarray(draw_boxes(img, pred, scale))
    assert boxed.shape == (1024, 512, 3) and (boxed != np.asarray(img)).any()


def test_waits_read_like_a_reader_says_them() -> None:
    from cxrtriage.serve.ui.worklist import format_wait

    cases = {
        0: "< 1 min",
        59.9: "< 1 min",
        60: "1 min",
        3 * 60 + 5: "3 min",
        3599: "59 min",
        3600: "1 h",
        2 * 3600 + 5 * 60 + 30: "2 h 5 min",
        86400: "1 d",
        86400 + 3 * 3600 + 120: "1 d 3 h",
        -5: "< 1 min",
    }
    assert {s: format_wait(s) for s in cases} == cases


def _items(*rows):
    return [
        {
            "key": k,
            "label": lbl,
            "score": sc,
            "needs_review": rv,
            "received": "2026-01-01T00:00:00+00:00",
            "waiting_s": w,
            "priority": pr,
            "state": "new",
        }
        for k, lbl, sc, rv, w, pr in rows
    ]


def test_worklist_table_keeps_the_order_and_marks_each_priority() -> None:
    from cxrtriage.serve.ui.worklist import worklist_html

    items = _items(
        ("OLD", "Non-Urgent", 0.03, False, 5400, "overdue"),
        ("U1", "Urgent", 0.9, False, 600, "urgent"),
        ("R1", "Non-Urgent", 0.27, True, 120, "urgent"),
        ("N1", "Non-Urgent", 0.04, False, 30, "routine"),
    )
    markup = worklist_html(items, selected="U1", max_wait_s=3600, first=51)
    assert re.findall(r'data-key="([^"]+)"', markup) == ["OLD", "U1", "R1", "N1"]
    assert re.findall(r'class="cxr-wl-row cxr-wl-(\w+)', markup) == ["overdue", "urgent", "review", "routine"]
    assert re.findall(r'data-priority="(\w+)"', markup) == ["overdue", "urgent", "urgent", "routine"]
    assert "1 h 30 min" in markup and "10 min" in markup and "&lt; 1 min" in markup and 'title="score 0.27"' in markup
    assert markup.count("cxr-wl-selected") == 1 and 'aria-selected="true"' in markup
    assert markup.count("cxr-wl-late") == 1 and "overdue: waiting over 1 h" in markup  # only OLD's wait is red
    assert re.findall(r'<td class="cxr-wl-num">(\d+)</td>', markup) == ["51", "52", "53", "54"]  # place in the list


def test_worklist_empty_and_unavailable_say_so_without_a_traceback(tmp_path: Path) -> None:
    import sqlite3

    from cxrtriage.serve.ui.worklist import study_view, worklist_view
    from cxrtriage.worklist import Worklist

    empty = worklist_view(lambda: Worklist(tmp_path / "wl.sqlite"))
    assert "No studies to read" in empty and "POST /predict" in empty and "DICOM node" in empty
    assert "The worklist is empty" in worklist_view(lambda: Worklist(tmp_path / "wl.sqlite"), status="all")
    assert "No reported studies yet" in worklist_view(lambda: Worklist(tmp_path / "wl.sqlite"), status="reported")

    def broken() -> Worklist:
        raise sqlite3.OperationalError("unable to open database file")

    for markup in (worklist_view(broken), study_view(broken, "ACC-1")):
        assert "The worklist is unavailable" in markup and "OperationalError" in markup
        assert "Traceback" not in markup and "unable to open" not in markup


def test_study_view_reuses_the_triage_renderers_and_escapes(tmp_path: Path) -> None:
    from cxrtriage.schema import DISCLAIMER
    from cxrtriage.serve.ui.render import label_html
    from cxrtriage.serve.ui.worklist import study_view
    from cxrtriage.worklist import Worklist

    wl = Worklist(tmp_path / "wl.sqlite")
    pred = _prediction(explanation="<script>alert(1)</script>")
    wl.add(pred, "ACC-7")
    markup = study_view(lambda: wl, "ACC-7")
    assert label_html(pred) in markup and DISCLAIMER in markup and "<script>" not in markup
    assert "Evidence regions" in markup and "Prior report" in markup
    assert "no longer on the worklist" in study_view(lambda: wl, "ACC-8")


# ------------------------------------------------------------------ a HAI-DEF backend, set up as a user would


@pytest.fixture(scope="module")
def hai_def_url(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """The real service on the MedSigLIP ONNX bundle, built with the documented commands on a tiny random-weight
    MedSigLIP: `hai-def tiny` -> `hai-def train-probe` (real images) -> `hai-def export-onnx`."""
    pytest.importorskip("transformers")
    pytest.importorskip("sklearn")
    from cxrtriage.cli.main import main
    from cxrtriage.config import Settings
    from cxrtriage.serve.app import create_app

    work = tmp_path_factory.mktemp("hai-def-ui")
    assert main(["hai-def", "tiny", "--out", str(work / "tiny"), "--which", "medsiglip"]) == 0
    assert (
        main(
            [
                "hai-def",
                "train-probe",
                "--model",
                str(work / "tiny" / "medsiglip"),
                "--out",
                str(work / "probe"),
                "--data-dir",
                str(data_dir),
                "--limit",
                "6",
                "--n-boot",
                "50",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "hai-def",
                "export-onnx",
                "--model",
                str(work / "tiny" / "medsiglip"),
                "--probe",
                str(work / "probe"),
                "--out",
                str(work / "bundle"),
            ]
        )
        == 0
    )
    port = _free_port()
    app = create_app(Settings(port=port, crops_dir=work / "crops", backend="medsiglip", model_dir=work / "bundle"))
    yield from _serve(app, port)


def test_hai_def_backend_run_shows_the_terms_notice(browser, hai_def_url: str, data_dir: Path, tmp_path: Path) -> None:
    """A real triage through the MedSigLIP ONNX backend: a label, no CAM crops claimed, the backend named and the
    HAI-DEF terms notice in the footer, the disclaimer still visible."""
    from cxrtriage.schema import DISCLAIMER
    from cxrtriage.serve.ui.render import HAI_DEF_NOTICE

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []  # type: ignore[attr-defined]
    page.on("request", lambda req: page.requests.append(req.url))  # type: ignore[attr-defined]
    try:
        open_ui(page, hai_def_url)
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


def test_api_documentation_renders_with_the_network_off(browser, base_url) -> None:
    """/docs draws every operation from assets this server serves (Swagger UI 5 reads FastAPI's OpenAPI 3.1); a
    request to any other host is refused, as on a hospital network without internet access."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    outside: list[str] = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    try:
        page.goto(f"{base_url}/docs")
        page.locator(".opblock").first.wait_for(timeout=TIMEOUT_MS)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("predict" in p for p in paths) and any("worklist" in p for p in paths), paths
        assert not outside, outside
    finally:
        context.close()


_POST_IMAGE_JS = """async ([url, b64, mode]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const form = new FormData();
    form.append("file", new Blob([bytes], {type: "image/png"}), "x.png");
    const r = await fetch(url, {method: "POST", body: form, mode: mode, credentials: "include"});
    return r.type === "opaque" ? -1 : r.status;
}"""


def test_a_page_on_another_site_cannot_file_a_study_through_the_readers_browser(
    browser, base_url, ui_app, data_dir: Path
) -> None:
    """The issue's attack: a multipart POST needs no preflight, so a page on another site could send one through the
    reader's browser. The browser names that page in Origin, and the service refuses it (403): nothing is filed.
    The same request from the service's own page is filed. The other site is this server under another name
    (localhost instead of 127.0.0.1: another origin, another site): Chromium itself blocks a public site's requests
    to a loopback address, so a public origin would not test the service."""
    import base64

    image = base64.b64encode(data_dir.joinpath(*CHEST).read_bytes()).decode()
    worklist = ui_app.state.runtime.worklist
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base_url.replace("127.0.0.1", "localhost") + "/health")
    page.evaluate(_POST_IMAGE_JS, [f"{base_url}/predict?accession=CSRF-EVIL", image, "no-cors"])
    time.sleep(1.0)  # the opaque response hides the status: give a filing time to happen, then look
    assert worklist.item("CSRF-EVIL") is None

    page.goto(f"{base_url}/ui/")
    status = page.evaluate(_POST_IMAGE_JS, [f"{base_url}/predict?accession=CSRF-OWN", image, "same-origin"])
    assert status == 200 and worklist.item("CSRF-OWN") is not None
    context.close()
