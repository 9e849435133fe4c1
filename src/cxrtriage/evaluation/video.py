"""``cxrtriage video``: ``video/demo.mp4``, a narrated night-shift story recorded from the running application.

The story is :data:`cxrtriage.evaluation.video_story.SCENES`; this module plays it. A real ``cxrtriage serve`` is
started; the queue of :data:`~cxrtriage.evaluation.video_story.QUEUE` is posted to ``POST /predict`` and its arrival
times set back on the worklist (simulated, and the caption says so); headless chromium (Playwright) then records
one continuous session at 1280x720, scene by scene: the action (:data:`ACTIONS`) runs, the scene's caption and
narration are filled from the live result and the metrics files, espeak-ng speaks the narration, and the caption
stays on screen for as long as the speech (so the timing follows the words, not a guess). A scene that needs a
service feature that is missing (marking a study reported needs ``POST /worklist/{key}/state``) is skipped with a
logged notice, so ``make video`` works before and after that feature. ffmpeg encodes H.264 with the narration as an
AAC track (:mod:`cxrtriage.evaluation.narration`); ``video/demo.srt`` holds the captions, ``video/demo.json`` the
scenes, their times, the audio and every number used.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import mimetypes
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrtriage.evaluation import narration
from cxrtriage.evaluation.live_server import CHROMIUM, CHROMIUM_ARGS, open_ui, running_service, upload_and_triage
from cxrtriage.evaluation.video_story import (
    QUEUE,
    SCENES,
    SPAN_MIN,
    URGENT,
    WORKLIST_STATE,
    Facts,
    Film,
    Scene,
    check_films,
    joined,
    queue_summary,
    render,
    scene_seconds,
    speakable,
)
from cxrtriage.evaluation.writeup import NumberBook
from cxrtriage.schema import DISCLAIMER

VIDEO_FILE = Path("video") / "demo.mp4"
RECORD_FILE = Path("video") / "demo.json"
SUBTITLE_FILE = Path("video") / "demo.srt"
SIZE = {"width": 1280, "height": 720}
MAX_SECONDS, MAX_MB = 180, 10
#: the route each optional feature of a scene needs (looked up in the service's OpenAPI document)
FEATURE_ROUTES = {WORKLIST_STATE: "/worklist/{key}/state"}
#: seconds of speech lead-in after a caption appears
LEAD_S = 0.3

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
justify-content:center;align-items:center;background:#17202a;color:#fdfefe;font-family:'DejaVu Sans',sans-serif;\
text-align:center">
<div style="font-size:46px;font-weight:700;margin-bottom:22px">{title}</div>
<div style="font-size:25px;line-height:1.6;max-width:1120px">{body}</div>
<div style="position:absolute;bottom:34px;font-size:20px;color:#f5b7b1;font-weight:600">{disclaimer}</div>\
</body></html>"""


@dataclass
class Stage:
    """What the scenes' actions share: the browser page, the service, the facts the texts are filled with."""

    page: Any
    api: Any
    base: str
    data_dir: Path
    facts: Facts
    log: Callable[[str], None]
    notes: dict[str, str] = field(default_factory=dict)


def _card(page, title: str, text: str) -> None:
    body = "<br>".join(html.escape(line) for line in text.splitlines())
    page.set_content(CARD.format(title=html.escape(title), body=body, disclaimer=html.escape(DISCLAIMER)))


def _caption(page, text: str) -> None:
    page.evaluate(CAPTION_JS, text)


def post_film(api, data_dir: Path, film: Film) -> dict:
    """``POST /predict`` one film of the scenario with its accession (and prior report); returns the result."""
    path = data_dir / film.path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: a film of the video's scenario (video_story.QUEUE / URGENT)")
    form: dict[str, Any] = {
        "file": {"name": path.name, "mimeType": mimetypes.guess_type(path.name)[0], "buffer": path.read_bytes()},
        "accession": film.accession,
    }
    if film.prior_report:
        form["prior_report"] = film.prior_report
    answer = api.post("/predict", multipart=form)
    if not answer.ok:
        raise RuntimeError(f"POST /predict of {film.path} answered {answer.status}: {answer.text()[:300]}")
    return answer.json()


def backdate(worklist_path: Path, films: tuple[Film, ...]) -> None:
    """Set each film's arrival on the worklist back by its ``minutes_ago`` (the simulated time span): its stored
    result is filed again under the same key with the earlier time, through the worklist's own ``add``."""
    from cxrtriage.schema import Prediction
    from cxrtriage.worklist import Worklist

    store, now = Worklist(worklist_path), _dt.datetime.now(_dt.timezone.utc)
    for film in films:
        stored = store.result(film.accession)
        if stored is None:
            raise RuntimeError(f"{film.accession} is not on the worklist after POST /predict")
        received = now - _dt.timedelta(minutes=film.minutes_ago)
        store.add(Prediction.model_validate(stored), key=film.accession, received=received)


def service_features(api) -> set[str]:
    """The optional features of :data:`FEATURE_ROUTES` the running service offers."""
    paths = api.get("/openapi.json").json().get("paths", {})
    return {name for name, route in FEATURE_ROUTES.items() if route in paths}


def _worklist_items(api) -> list[dict]:
    return api.get("/worklist").json()["items"]


# ----------------------------------------------------------------------------- the scenes' actions


def _show_worklist(page) -> None:
    page.get_by_role("tab", name="Worklist").click()
    page.locator("#cxr-worklist tr[data-key]").first.wait_for(state="visible")


def act_queue(stage: Stage) -> None:
    open_ui(stage.page, stage.base)
    _show_worklist(stage.page)


def act_urgent_arrives(stage: Stage) -> None:
    result = post_film(stage.api, stage.data_dir, URGENT)
    if result["label"] != "Urgent":
        raise RuntimeError(f"{URGENT.path} came back {result['label']}: choose another URGENT film in video_story")
    page = stage.page
    page.locator("#cxr-wl-refresh").click()
    page.locator(f'#cxr-worklist tr[data-key="{URGENT.accession}"]').wait_for(state="visible")
    page.wait_for_function(
        "(k) => document.querySelector('#cxr-worklist tr[data-key]')?.dataset.key === k", arg=URGENT.accession
    )
    if _worklist_items(stage.api)[0]["key"] != URGENT.accession:
        raise RuntimeError("the urgent film is not first on GET /worklist: the story's claim would be false")
    zones = list(dict.fromkeys(c["region"] or "evidence region" for c in result["crops"]))
    quotes = [p for p in result["provenance"] if p["source"] == "prior_report"]
    if not zones or not quotes:
        raise RuntimeError(f"{URGENT.path}: no evidence boxes or no quoted prior report; the story needs both")
    marks = {"supports": "present", "contradicts": "absent", "uncertain": "uncertain"}
    stage.facts.update(
        urgent_key=URGENT.accession,
        urgent_label=result["label"],
        urgent_score=f"{result['score']:.2f}",
        urgent_threshold=f"{result['threshold']:.2f}",
        urgent_zones=joined(zones),
        urgent_boxes=str(len(result["crops"])),
        prior_quotes=joined(
            [f"“{q['snippet'].rstrip('.')}” ({marks.get(q['relation'], q['relation'])})" for q in quotes]
        ),
    )


def act_open_study(stage: Stage) -> None:
    page = stage.page
    page.locator(f'#cxr-worklist tr[data-key="{URGENT.accession}"]').click()
    page.locator("#cxr-wl-study .cxr-label").first.wait_for(state="visible")


def _scroll_to(page, selector: str, text: str | None = None, fallback_px: int = 450) -> None:
    """Bring an element to the middle of the screen; scroll by ``fallback_px`` when a reworded page lacks it."""
    target = page.locator(selector)
    if text:
        target = target.get_by_text(re.compile(text, re.I))
    if target.count():
        target.first.evaluate("(e) => e.scrollIntoView({block: 'center'})")
    else:
        page.mouse.wheel(0, fallback_px)
    page.wait_for_timeout(300)


def act_prior_report(stage: Stage) -> None:
    _scroll_to(stage.page, "#cxr-wl-study", "^prior report$")


def act_evidence(stage: Stage) -> None:
    page = stage.page
    open_ui(page, stage.base)
    upload_and_triage(page, stage.data_dir / URGENT.path, URGENT.prior_report)
    shown = page.locator("#cxr-label .cxr-label").first.get_attribute("data-label")
    if shown != stage.facts["urgent_label"]:
        raise RuntimeError(f"the Triage tab labelled the film {shown}, the worklist {stage.facts['urgent_label']}")
    page.locator("#cxr-image").first.evaluate("(e) => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)


def act_mark_reported(stage: Stage) -> None:
    """Open the study on the Worklist tab and press its "Mark reported" button; without such a button (the route
    exists but the UI has none), the same request is sent to ``POST /worklist/{key}/state``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page, key = stage.page, URGENT.accession
    page.evaluate("() => window.scrollTo(0, 0)")
    _show_worklist(page)
    act_open_study(stage)
    button = page.get_by_role("button", name=re.compile("mark reported", re.I)).first
    try:
        button.wait_for(state="visible", timeout=5_000)
        button.click()
        stage.notes["mark_reported"] = "the Mark reported button"
    except PlaywrightTimeoutError:
        answer = stage.api.post(f"/worklist/{key}/state", data={"state": "reported"})
        if not answer.ok:
            raise RuntimeError(f"POST /worklist/{key}/state answered {answer.status}: {answer.text()[:300]}") from None
        stage.notes["mark_reported"] = "POST /worklist/{key}/state (no Mark reported button found)"
    page.wait_for_timeout(800)
    page.locator("#cxr-wl-refresh").click()
    page.wait_for_timeout(800)
    item = next((i for i in _worklist_items(stage.api) if i["key"] == key), None)
    if item is not None and item.get("state", "reported") != "reported":
        raise RuntimeError(f"{key} is {item.get('state')!r} on GET /worklist after marking it reported")
    stage.log(f"video: {key} marked reported through {stage.notes['mark_reported']}")


ACTIONS: dict[str, Callable[[Stage], None]] = {
    "card": lambda stage: None,  # a card is drawn from the scene's title and caption
    "queue": act_queue,
    "urgent_arrives": act_urgent_arrives,
    "open_study": act_open_study,
    "prior_report": act_prior_report,
    "evidence": act_evidence,
    "mark_reported": act_mark_reported,
}


# ----------------------------------------------------------------------------- recording


def playwright_ffmpeg(work: Path) -> Path:
    """A browsers folder in which Playwright finds Debian's ffmpeg where it expects its own build (it records with
    ffmpeg's VP8 encoder; nothing is downloaded). Returns the folder for ``PLAYWRIGHT_BROWSERS_PATH``."""
    import playwright

    ffmpeg = narration.require_tool("ffmpeg", "ffmpeg", "Playwright records and ffmpeg encodes the video")
    spec = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revision = next(b["revision"] for b in json.loads(spec.read_text())["browsers"] if b["name"] == "ffmpeg")
    target = work / "browsers" / f"ffmpeg-{revision}" / "ffmpeg-linux"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(ffmpeg)
    return work / "browsers"


def play(stage: Stage, scenes: tuple[Scene, ...], work: Path, features: set[str], t0: float) -> list[dict]:
    """Play the scenes on the recorded page; returns each one's record (times on the video's clock from ``t0``)."""
    records = []
    for i, scene in enumerate(scenes):
        if scene.requires and scene.requires not in features:
            reason = f"the service has no {FEATURE_ROUTES[scene.requires]}"
            stage.log(f"video: notice: scene {scene.name!r} skipped: {reason}")
            records.append({"name": scene.name, "do": scene.do, "skipped": reason})
            continue
        ACTIONS[scene.action](stage)
        caption, spoken = render(scene.caption, stage.facts), render(scene.narration, stage.facts)
        wav = work / f"{i:02d}_{scene.name}.wav"
        speech_s = narration.speak(speakable(spoken), wav)
        seconds = scene_seconds(scene, speech_s, LEAD_S)
        if scene.title:
            _card(stage.page, scene.title, caption)
        else:
            _caption(stage.page, caption)
        start = time.monotonic() - t0
        stage.page.wait_for_timeout(int(seconds * 1000))
        records.append(
            {
                "name": scene.name,
                "do": scene.do,
                "caption": caption,
                "narration": spoken,
                "start_s": round(start, 2),
                "seconds": seconds,
                "speech_s": round(speech_s, 2),
                "wav": str(wav),
            }
        )
    return records


def record_session(root: Path, data_dir: Path, work: Path, facts: Facts, log: Callable[[str], None]) -> dict:
    """Post the queue, then record the scenes as one webm in ``work``; returns the webm, scenes, films, features."""
    from cxrtriage.optional import require

    sync_api = require("playwright.sync_api", extra="dev", purpose="recording the video")
    check_films((*QUEUE, URGENT))
    previous = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(playwright_ffmpeg(work))
    worklist_path = work / "worklist.sqlite"
    try:
        with running_service(root, data_dir, worklist=worklist_path) as base, sync_api.sync_playwright() as p:
            api = p.request.new_context(base_url=base)
            features = service_features(api)
            queue = [post_film(api, data_dir, film) for film in QUEUE]
            backdate(worklist_path, QUEUE)
            facts.update(
                span_min=f"{SPAN_MIN:.0f}",
                queue_n=str(len(queue)),
                queue_summary=queue_summary([r["label"] for r in queue]),
                disclaimer=DISCLAIMER.rstrip("."),
            )
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=SIZE, record_video_dir=str(work), record_video_size=SIZE)
            page = context.new_page()
            t0 = time.monotonic()
            page.set_default_timeout(60_000)
            stage = Stage(page, api, base, data_dir, facts, log)
            scenes = play(stage, SCENES, work, features, t0)
            end_s = time.monotonic() - t0
            webm = Path(page.video.path())
            context.close()
            browser.close()
            api.dispose()
    finally:
        if previous is None:
            os.environ.pop("PLAYWRIGHT_BROWSERS_PATH", None)
        else:
            os.environ["PLAYWRIGHT_BROWSERS_PATH"] = previous
    films = [
        {"accession": f.accession, "image": f.path, "minutes_ago": f.minutes_ago, "label": r["label"]}
        for f, r in zip(QUEUE, queue, strict=True)
    ]
    return {"webm": webm, "scenes": scenes, "end_s": end_s, "films": films, "features": sorted(features)}


def probe(path: Path) -> dict:
    """Duration, size and resolution of a video file (ffprobe)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries"]
        + ["stream=width,height,codec_name:format=duration,size", "-of", "json", str(path)],
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
    """Record, narrate and encode ``video/demo.mp4``; write ``video/demo.srt`` and ``video/demo.json``."""
    narration.espeak()  # the tools first: a missing one fails before the server starts
    narration.require_tool("ffmpeg", "ffmpeg", "it encodes the video")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cxrtriage-video-"))
    try:
        book = NumberBook(root)
        session = record_session(root, data_dir, work, Facts(book), log)
        played = [s for s in session["scenes"] if "skipped" not in s]
        cues = [
            narration.Cue(s["start_s"], s["start_s"] + s["seconds"], s["caption"], Path(s["wav"]), LEAD_S)
            for s in played
        ]
        track = narration.mix_track(cues, work / "narration.wav", session["end_s"] + 1.0)
        out = narration.encode(session["webm"], root / VIDEO_FILE, audio=track)
        (root / SUBTITLE_FILE).write_text(narration.srt(cues), encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    facts, audio = probe(out), narration.audio_facts(out)
    if facts["seconds"] > MAX_SECONDS or facts["mb"] > MAX_MB:
        raise RuntimeError(
            f"{out}: {facts['seconds']:.0f} s, {facts['mb']:.1f} MB (at most {MAX_SECONDS} s, {MAX_MB} MB)"
        )
    if not audio:
        raise RuntimeError(f"{out} has no audio stream")
    for s in session["scenes"]:
        s.pop("wav", None)
    record = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "make video",
        "build_seconds": round(time.monotonic() - started, 1),
        **facts,
        "audio": audio,
        "voice": {"tool": "espeak-ng", "voice": narration.VOICE, "words_per_minute": narration.SPEED_WPM},
        "subtitles": str(SUBTITLE_FILE),
        "service_features": session["features"],
        "scenes": session["scenes"],
        "queue": session["films"],
        "numbers": book.used,
    }
    (root / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str, ensure_ascii=False) + "\n", "utf-8")
    skipped = [s["name"] for s in session["scenes"] if "skipped" in s]
    log(
        f"{out}: {facts['seconds']:.0f} s, {facts['mb']:.1f} MB, {facts['width']}x{facts['height']} {facts['codec']}"
        f" + {audio['codec']} narration ({audio.get('mean_volume_db')} dB mean); {len(played)} scenes"
        + (f", skipped: {', '.join(skipped)}" if skipped else "")
    )
    return record
