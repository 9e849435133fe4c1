"""video/demo.mp4: within the challenge's limits, readable, not blank, narrated, and its captions' numbers still
current."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.evaluation import video, writeup

ROOT = Path(__file__).resolve().parents[2]
MP4 = ROOT / video.VIDEO_FILE
pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (ffmpeg) not installed")


def test_at_most_three_minutes_ten_megabytes_and_720p_h264():
    facts = video.probe(MP4)
    assert facts["seconds"] <= video.MAX_SECONDS and facts["mb"] <= video.MAX_MB
    assert facts["width"] >= 1280 and facts["height"] >= 720 and facts["codec"] == "h264"
    recorded = json.loads((ROOT / video.RECORD_FILE).read_text())
    assert abs(recorded["seconds"] - facts["seconds"]) < 0.5  # the record describes the committed file


def test_frames_across_the_video_are_neither_blank_nor_all_alike(tmp_path):
    from PIL import Image

    seconds = video.probe(MP4)["seconds"]
    frames = []
    for i, t in enumerate(np.linspace(2, seconds - 2, 8)):
        out = tmp_path / f"f{i}.png"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-ss", f"{t:.2f}", "-i", str(MP4), "-frames:v", "1", str(out)], check=True
        )
        frames.append(np.asarray(Image.open(out).convert("L"), dtype=np.float32))
    assert all(f.std() > 15 for f in frames), [round(float(f.std()), 1) for f in frames]
    distinct = {round(float(f.mean()), 0) for f in frames}
    assert len(distinct) >= 4  # the story moves through cards, the worklist, the study and the Triage tab


def test_every_number_in_the_captions_is_current():
    recorded = json.loads((ROOT / video.RECORD_FILE).read_text())
    assert len(recorded["numbers"]) >= 4
    for name, entry in recorded["numbers"].items():
        assert writeup.read_number(ROOT, name) == entry["text"], (
            f"{name} changed in {entry['source']}: run `make video`"
        )


def test_it_is_narrated_scene_by_scene_with_a_subtitle_sidecar():
    from cxrtriage.evaluation import narration, video_story

    audio = narration.audio_facts(MP4)
    assert audio["codec"] == "aac" and audio["max_volume_db"] > -20  # speech, not silence
    recorded = json.loads((ROOT / video.RECORD_FILE).read_text())
    assert recorded["audio"]["codec"] == "aac"
    played = [s for s in recorded["scenes"] if "skipped" not in s]
    assert [s["name"] for s in recorded["scenes"]] == [s.name for s in video_story.SCENES]
    assert all(s["seconds"] >= s["speech_s"] for s in played)  # each scene lasts as long as its words
    assert all("{" not in s["caption"] + s["narration"] for s in played)
    skipped = [s for s in recorded["scenes"] if "skipped" in s]
    assert all(s["name"] == "mark_reported" for s in skipped)  # only the scene that waits for the state route
    subtitles = (ROOT / video.SUBTITLE_FILE).read_text()
    assert subtitles.count(" --> ") == len(played) and played[1]["caption"] in subtitles


def test_the_reader_signs_in_no_key_shows_and_the_audit_card_was_read_from_the_run():
    recorded = json.loads((ROOT / video.RECORD_FILE).read_text())
    scenes = {s["name"]: s for s in recorded["scenes"]}
    assert "password field" in scenes["sign_in"]["caption"]
    audit = scenes["audit"]
    count = audit["caption"].split(" records", 1)[0]
    assert count.isdigit() and int(count) >= len(recorded["queue"]) + 2  # at least the keys and every film
    assert f"{count} in all" in audit["narration"] and "verify: chain intact" in audit["caption"]
    for text in ((ROOT / video.RECORD_FILE).read_text(), (ROOT / video.SUBTITLE_FILE).read_text()):
        assert "cxt_" not in text  # no API key (they all start so) in a caption, a narration or the record
