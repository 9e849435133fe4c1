"""``cxrtriage video``: ``video/demo.mp4``, recorded from the running application, never mocked.

A real ``cxrtriage serve`` is started; headless chromium (Playwright) records one continuous session at 1280x720:
title and results cards, the UI on an adult PNG with a prior report, a DICOM, a pediatric film and a refused
photograph (crops, provenance, footer), the ``/status`` and ``/metrics`` endpoints, the output of
``smoke_test.sh`` run against the same server, and the hospital flow of ``make pacs-demo`` (a real Orthanc PACS
with the node's SR and Secondary Capture, and the Worklist tab; needs the Debian packages orthanc and dcmtk).
Captions are drawn into the page, so they are burned into the frames; every number in them is read from the metrics
files (:class:`~cxrtriage.evaluation.writeup.NumberBook`). ffmpeg then encodes H.264 (yuv420p, CRF 30, no audio) so
that the file stays small and plays everywhere.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from cxrtriage.evaluation.live_server import CHROMIUM, CHROMIUM_ARGS, open_ui, running_service, upload_and_triage
from cxrtriage.evaluation.writeup import PRIOR_REPORT, NumberBook
from cxrtriage.schema import DISCLAIMER

VIDEO_FILE = Path("video") / "demo.mp4"
RECORD_FILE = Path("video") / "demo.json"
SIZE = {"width": 1280, "height": 720}
MAX_SECONDS, MAX_MB = 180, 10

CAPTION_JS = """(t) => {
  let d = document.getElementById('cxr-video-caption');
  if (!d) {
    d = document.createElement('div'); d.id = 'cxr-video-caption';
    Object.assign(d.style, {position: 'fixed', left: '0', right: '0', bottom: '0', padding: '12px 30px',
      background: 'rgba(17, 24, 39, 0.9)', color: '#fff', font: '600 21px "DejaVu Sans", sans-serif',
      lineHeight: '1.35', zIndex: '2147483647', textAlign: 'center'});
    document.body.appendChild(d);
  }
  d.textContent = t;
}"""

CARD = """<html><body style="margin:0;width:1280px;height:720px;display:flex;flex-direction:column;\
justify-content:center;
align-items:center;background:#17202a;color:#fdfefe;font-family:'DejaVu Sans',sans-serif;text-align:center">
<div style="font-size:46px;font-weight:700;margin-bottom:18px">{title}</div>
<div style="font-size:25px;line-height:1.55;max-width:1100px">{body}</div>
<div style="position:absolute;bottom:34px;font-size:20px;color:#f5b7b1;font-weight:600">{disclaimer}</div>\
</body></html>"""


def _card(page, title: str, lines: list[str], seconds: float) -> None:
    body = "<br>".join(html.escape(line) for line in lines)
    page.set_content(CARD.format(title=html.escape(title), body=body, disclaimer=html.escape(DISCLAIMER)))
    page.wait_for_timeout(int(seconds * 1000))


def _caption(page, text: str, seconds: float = 0.0) -> None:
    page.evaluate(CAPTION_JS, text)
    if seconds:
        page.wait_for_timeout(int(seconds * 1000))


def _text_page(page, title: str, text: str) -> None:
    page.set_content(
        f"<html><body style='margin:0;background:#0b0f14;color:#d5f5e3;font:15px \"DejaVu Sans Mono\",monospace'>"
        f"<div style='padding:18px 26px;color:#fff;font:700 22px \"DejaVu Sans\",sans-serif'>{html.escape(title)}</div>"
        f"<pre style='margin:0 26px;white-space:pre-wrap'>{html.escape(text)}</pre></body></html>"
    )


def _photograph(path: Path) -> Path:
    """A real photograph (scikit-image's astronaut, public domain), saved as the file a user might upload by mistake."""
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def _smoke(root: Path, base: str, data_dir: Path) -> str:
    env = {**os.environ, "CXRTRIAGE_DATA_DIR": str(data_dir), "PYTHON": os.environ.get("PYTHON", "python3")}
    run = subprocess.run(
        ["bash", str(root / "demo_app" / "tests" / "smoke_test.sh"), base],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    if run.returncode != 0:
        raise RuntimeError(f"smoke_test.sh failed against the recording server:\n{out}")
    return "\n".join(line for line in out.splitlines() if line.strip())


def _pacs_scenes(page, stack, n: NumberBook) -> None:
    """The hospital flow of a running :func:`cxrtriage.pacs.stack.pacs_stack` (a real Orthanc PACS, storescu as the
    modality): the DICOM node's SR and Secondary Capture in the study, and the UI's Worklist tab of the same run."""
    from cxrtriage.pacs.stack_checks import study_with_results

    _card(
        page,
        "Into the hospital's workflow",
        [
            "cxrtriage dicom-node: a DICOM node that answers every chest radiograph it receives",
            "with a DICOM SR and a burned-in Secondary Capture, sent back to the PACS (C-STORE).",
            f"make pacs-check: {n('pacs_sent')} instances sent by dcmtk's storescu to a real Orthanc PACS;",
            f'{n("pacs_triaged")} triaged, {n("pacs_not_triaged")} answered "Not triaged" with the reason, '
            "every SR in its study,",
            f"median {n('pacs_answer_s')} s from arrival to stored results (prototype/eval/pacs_demo.json)",
        ],
        8,
    )
    study, sc = study_with_results(stack.orthanc_base)
    page.goto(f"{stack.orthanc_base}/app/explorer.html#study?uuid={study}", wait_until="networkidle")
    _caption(page, "Orthanc (a real PACS): the radiograph storescu sent, then cxrtriage's SR and Secondary Capture", 6)
    page.goto(f"{stack.orthanc_base}/instances/{sc}/preview", wait_until="networkidle")
    _caption(page, "The Secondary Capture, for viewers that cannot show SR regions: boxes and result burned in", 5)
    open_ui(page, stack.ui_base)
    page.get_by_role("tab", name="Worklist").click()
    page.locator("#cxr-worklist tr[data-key]").first.wait_for(state="visible")
    _caption(page, "The Worklist tab: every study the node triaged, Urgent and needs-review first, then by wait", 6)
    page.locator("#cxr-worklist tr[data-key]").first.click()
    page.locator("#cxr-wl-study .cxr-label").first.wait_for(state="visible")
    _caption(page, "Clicking a study opens its stored result; studies that wait too long rise to the top", 5)


def playwright_ffmpeg(work: Path) -> Path:
    """A browsers folder in which Playwright finds Debian's ffmpeg where it expects its own build (it records with
    ffmpeg's VP8 encoder; nothing is downloaded). Returns the folder for ``PLAYWRIGHT_BROWSERS_PATH``."""
    import playwright

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError(
            "ffmpeg not found (apt-get install ffmpeg): Playwright records and ffmpeg encodes the video"
        )
    spec = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revision = next(b["revision"] for b in json.loads(spec.read_text())["browsers"] if b["name"] == "ffmpeg")
    target = work / "browsers" / f"ffmpeg-{revision}" / "ffmpeg-linux"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(ffmpeg)
    return work / "browsers"


def record_session(root: Path, data_dir: Path, out_dir: Path, n: NumberBook) -> Path:
    """Record the whole session as one webm in ``out_dir``; returns its path."""
    from cxrtriage.optional import require

    sync_api = require("playwright.sync_api", extra="dev", purpose="recording the video")
    previous = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(playwright_ffmpeg(out_dir))
    try:
        return _record(sync_api, root, data_dir, out_dir, n)
    finally:
        if previous is None:
            os.environ.pop("PLAYWRIGHT_BROWSERS_PATH", None)
        else:
            os.environ["PLAYWRIGHT_BROWSERS_PATH"] = previous


def _record(sync_api, root: Path, data_dir: Path, out_dir: Path, n: NumberBook) -> Path:
    nih = data_dir / "nih" / "images" / "00000150_002.png"
    dicom = data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    pediatric = sorted((data_dir / "kermany" / "images").rglob("*.jpeg"))[0]
    photo = _photograph(out_dir / "holiday_photo.png")
    from cxrtriage.pacs.stack import Ports, pacs_stack

    # both started before recording, so that no frame waits for a server
    with running_service(root, data_dir) as base, pacs_stack(data_dir, Ports.free()) as stack:
        smoke = _smoke(root, base, data_dir)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=SIZE, record_video_dir=str(out_dir), record_video_size=SIZE)
            page = context.new_page()
            page.set_default_timeout(60_000)
            _card(
                page,
                "cxrtriage: offline chest X-ray triage",
                [
                    "Recorded from the running application: bundled int8 model, 2 CPU cores, no network.",
                    "Urgent / Non-Urgent with a calibrated score, evidence crops, provenance and a review flag.",
                ],
                5,
            )
            _card(
                page,
                "Measured on held-out test patients",
                [
                    f"NIH adults: AUC {n('nih_auc')} [{n('nih_auc_lo')}, {n('nih_auc_hi')}], "
                    f"sensitivity {n('nih_sens')} at specificity {n('nih_spec')}",
                    f"Pediatric: AUC {n('ped_auc')}, sensitivity {n('ped_sens')} at specificity {n('ped_spec')}",
                    f"A site never trained on (JSRT normals): {n('jsrt_non_urgent')} of {n('jsrt_n')} Non-Urgent",
                    f"End to end {n('p50_ms')} ms per image (p50), model files {n('files_mb')} MB",
                    "(prototype/eval/metrics.json, anatomy_eval.json, bench_results.json)",
                ],
                8,
            )
            open_ui(page, base)
            _caption(page, "1. An adult chest radiograph (NIH, PNG) with a prior report pasted in", 3)
            upload_and_triage(page, nih, PRIOR_REPORT)
            _caption(
                page,
                f"Urgent, calibrated score and threshold ({n('threshold')}); "
                "boxes and crops only inside the lungs, named by zone",
                6,
            )
            page.mouse.wheel(0, 600)
            _caption(
                page, "Provenance: the prior-report sentence quoted verbatim, and the most similar training cases", 5
            )
            page.mouse.wheel(0, 900)
            _caption(
                page,
                "Footer: model size and latency on this machine; "
                f"lung-opacity output shown with its held-out AUC {n('opacity_auc')}",
                5,
            )
            open_ui(page, base)  # a fresh form for each case, as a new user gets it
            _caption(page, "2. A DICOM file (CR, JPEG-compressed): decoded with pydicom, no identifier is logged", 2)
            upload_and_triage(page, dicom)
            _caption(page, "Same result format for DICOM; the explanation says where the evidence is", 5)
            open_ui(page, base)
            _caption(page, "3. A pediatric film (JPEG)", 1)
            upload_and_triage(page, pediatric)
            _caption(page, f"Children are a source of their own: pediatric test AUC {n('ped_auc')}", 5)
            open_ui(page, base)
            _caption(page, "4. A photograph uploaded by mistake", 1)
            upload_and_triage(page, photo)
            _caption(
                page, "Refused with a specific message, never triaged; atypical chest films go to a human instead", 5
            )
            status = json.dumps(page.request.get(f"{base}/status").json(), indent=2)
            _text_page(page, f"GET {base}/status", status)
            _caption(page, "/status: model identity and sha256, size, latency, counters, the disclaimer", 5)
            prom = [ln for ln in page.request.get(f"{base}/metrics").text().splitlines() if "cxrtriage" in ln]
            _text_page(page, f"GET {base}/metrics (the cxrtriage series)", "\n".join(prom[:34]))
            _caption(page, "/metrics: Prometheus counters and latency histograms for the hospital's monitoring", 5)
            _text_page(page, "demo_app/tests/smoke_test.sh against this server", smoke)
            _caption(page, "The smoke test that CI runs on every change: all checks pass", 6)
            _pacs_scenes(page, stack, n)
            _card(
                page,
                "Limits, stated",
                [
                    "No real MedGemma or MedSigLIP weights were run here: those code paths",
                    "(explainer, fine-tuning, ONNX / GGUF export) were tested on random-weight stand-ins.",
                    f"Seed spread of the adult AUC: {n('seed_nih_auc_min')}-{n('seed_nih_auc_max')}; "
                    "a new site needs its own validation.",
                    "Rebuild this video: make video",
                ],
                7,
            )
            video = page.video.path()
            context.close()
            browser.close()
    return Path(video)


def encode(webm: Path, out: Path, ffmpeg: str = "ffmpeg") -> Path:
    if shutil.which(ffmpeg) is None:
        raise FileNotFoundError("ffmpeg not found (apt-get install ffmpeg): it encodes the video")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            ffmpeg,
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(webm),
            "-vf",
            "fps=25,scale=1280:720:flags=lanczos",
            "-c:v",
            "libx264",
            "-preset",
            "slow",
            "-crf",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-an",
            str(out),
        ],
        check=True,
        timeout=900,
    )
    return out


def probe(path: Path) -> dict:
    """Duration, size and resolution of a video file (ffprobe)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,codec_name:format=duration,size",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    stream, fmt = info["streams"][0], info["format"]
    return {
        "seconds": float(fmt["duration"]),
        "mb": int(fmt["size"]) / 1e6,
        "width": stream["width"],
        "height": stream["height"],
        "codec": stream["codec_name"],
    }


def build_video(root: Path, data_dir: Path, log: Callable[[str], None] = print) -> dict:
    work = Path(tempfile.mkdtemp(prefix="cxrtriage-video-"))
    try:
        book = NumberBook(root)
        webm = record_session(root, data_dir, work, book)
        out = encode(webm, root / VIDEO_FILE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    facts = probe(out)
    if facts["seconds"] > MAX_SECONDS or facts["mb"] > MAX_MB:
        raise RuntimeError(
            f"{out}: {facts['seconds']:.0f} s, {facts['mb']:.1f} MB (at most {MAX_SECONDS} s, {MAX_MB} MB)"
        )
    record = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "make video",
        **facts,
        "numbers": book.used,
    }
    (root / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"{out}: {facts['seconds']:.0f} s, {facts['mb']:.1f} MB, {facts['width']}x{facts['height']} {facts['codec']}")
    return record
