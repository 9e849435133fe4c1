"""``cxrtriage video``: ``video/demo.mp4``, a narrated night-shift story recorded from the running application.

The story is :data:`cxrtriage.evaluation.video_story.SCENES`; this module plays it. A real ``cxrtriage serve`` is
started with authentication (:func:`~cxrtriage.evaluation.live_server.running_service`: a reader's and a modality
gateway's key in a scratch state folder, a scratch audit trail); the queue of
:data:`~cxrtriage.evaluation.video_story.QUEUE` is posted to ``POST /predict`` with the gateway's key and its arrival
times set back on the worklist (simulated, and the caption says so); headless chromium (Playwright) then records
one continuous session at 1280x720 that starts on the sign-in page, scene by scene: the action
(:data:`~cxrtriage.evaluation.video_actions.ACTIONS`) runs, the scene's caption and
narration are filled from the live result and the metrics files, espeak-ng speaks the narration, and the caption
stays on screen for as long as the speech (so the timing follows the words, not a guess). A scene that needs a
service feature that is missing (marking a study reported needs ``POST /worklist/{key}/state``) is skipped with a
logged notice, so ``make video`` works before and after that feature. ffmpeg encodes H.264 with the narration as an
AAC track (:mod:`cxrtriage.evaluation.narration`); ``video/demo.srt`` holds the captions, ``video/demo.json`` the
scenes, their times, the audio and every number used.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cxrtriage.evaluation import narration
from cxrtriage.evaluation.live_server import CHROMIUM, CHROMIUM_ARGS, running_service
from cxrtriage.evaluation.video_actions import (
    ACTIONS,
    FEATURE_ROUTES,
    Stage,
    backdate,
    caption_bar,
    card,
    clear,
    post_film,
    service_features,
)
from cxrtriage.evaluation.video_story import (
    QUEUE,
    SCENES,
    SPAN_MIN,
    URGENT,
    Facts,
    Scene,
    check_films,
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
#: seconds of speech lead-in after a caption appears
LEAD_S = 0.3


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
        if not scene.title:
            clear(stage.page)
        ACTIONS[scene.action](stage)
        caption, spoken = render(scene.caption, stage.facts), render(scene.narration, stage.facts)
        wav = work / f"{i:02d}_{scene.name}.wav"
        speech_s = narration.speak(speakable(spoken), wav)
        seconds = scene_seconds(scene, speech_s, LEAD_S)
        if scene.title:
            card(stage.page, render(scene.title, stage.facts), caption)
        else:
            caption_bar(stage.page, caption)
        start = time.monotonic() - t0
        stage.page.wait_for_timeout(int(seconds * 1000))
        records.append(
            {
                "name": scene.name,
                "do": scene.do,
                **({"card": render(scene.title, stage.facts)} if scene.title else {}),
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
        with running_service(root, data_dir, worklist=worklist_path) as service, sync_api.sync_playwright() as p:
            # the reader's key for what a radiologist reads and changes, the gateway's for the films it sends
            api = p.request.new_context(base_url=service.base, extra_http_headers=service.reader.headers)
            submit = p.request.new_context(base_url=service.base, extra_http_headers=service.submitter.headers)
            features = service_features(api)
            queue = [post_film(submit, data_dir, film) for film in QUEUE]
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
            t0 = time.monotonic()  # the recording's clock; the webm is cut to start with the first scene
            page.set_default_timeout(60_000)
            page.goto(f"{service.base}/ui/", wait_until="load")  # the service answers with its sign-in page
            if "/login" not in page.url:
                raise RuntimeError(f"opening the UI led to {page.url}, not to the sign-in page")
            stage = Stage(page, api, submit, service.reader, service.audit_path, data_dir, facts, log)
            scenes = play(stage, SCENES, work, features, t0)
            shown = json.dumps(scenes)
            if any(person.key in shown for person in (service.reader, service.submitter)):
                raise RuntimeError("a key would appear in the video's captions or record")
            end_s = time.monotonic() - t0
            cut_s = max(0.0, next(s["start_s"] for s in scenes if "start_s" in s) - 0.1)
            for scene in scenes:
                if "start_s" in scene:
                    scene["start_s"] = round(scene["start_s"] - cut_s, 2)
            webm = Path(page.video.path())
            context.close()
            browser.close()
            api.dispose()
            submit.dispose()
    finally:
        if previous is None:
            os.environ.pop("PLAYWRIGHT_BROWSERS_PATH", None)
        else:
            os.environ["PLAYWRIGHT_BROWSERS_PATH"] = previous
    films = [
        {"accession": f.accession, "image": f.path, "minutes_ago": f.minutes_ago, "label": r["label"]}
        for f, r in zip(QUEUE, queue, strict=True)
    ]
    return {
        "webm": webm,
        "cut_s": cut_s,
        "scenes": scenes,
        "end_s": end_s - cut_s,
        "films": films,
        "features": sorted(features),
    }


def probe(path: Path) -> dict:
    """Duration, size and resolution of a video file (ffprobe)."""
    out = subprocess.run(  # noqa: S603 - ffprobe with fixed arguments and a file path, no shell
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
        out = narration.encode(session["webm"], root / VIDEO_FILE, audio=track, start_s=session["cut_s"])
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
