"""The narrated video's story and sound without a browser: every scene can be played and filled honestly (a live
fact or a metrics number, nothing typed in), the timing plan follows the speech, the films are ones the video may
show, and a missing espeak-ng says what to install. The slow test builds a two-second narrated clip with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from cxrtriage.evaluation import narration, video_actions, video_story, writeup
from cxrtriage.evaluation.video_story import LIVE_FACTS, SCENES, Facts, Film, Scene

ROOT = Path(__file__).resolve().parents[2]
#: stand-ins for what the running application answers (the real values come from the live result)
FAKE_LIVE = {name: f"<{name}>" for name in LIVE_FACTS}


def _facts() -> Facts:
    return Facts(writeup.NumberBook(ROOT), FAKE_LIVE)


def test_every_scene_has_an_action_and_every_field_a_source():
    for scene in SCENES:
        assert scene.action in video_actions.ACTIONS, scene.name
        texts = (scene.caption, scene.narration, scene.title or "")
        for name in [n for text in texts for n in video_story.fields(text)]:
            assert name in LIVE_FACTS or name in writeup.NUMBERS, (scene.name, name)
    names = [s.name for s in SCENES]
    assert len(names) == len(set(names))
    assert names[0] == "night_shift" and names[-1] == "disclaimer"


def test_the_texts_fill_from_live_facts_and_the_metrics_files():
    book = writeup.NumberBook(ROOT)
    facts = Facts(book, FAKE_LIVE)
    texts = [video_story.render(t, facts) for s in SCENES for t in (s.caption, s.narration, s.title or "")]
    assert not any("{" in t or "}" in t for t in texts)
    assert book.used and all(entry["source"].startswith(("prototype/", "src/")) for entry in book.used.values())
    # the spoken sensitivity is the metrics file's, as a percentage
    assert any(writeup.read_number(ROOT, "nih_sens_pct") in t for t in texts)


def test_a_fact_nobody_set_is_an_error_not_a_blank():
    facts = Facts(lambda name: "x")
    with pytest.raises(KeyError, match="live fact 'urgent_score'"):
        video_story.render("score {urgent_score}", facts)
    with pytest.raises(KeyError, match="neither a live fact"):
        video_story.render("{made_up_number}", facts)


def test_speakable_spells_the_name_and_drops_quotes():
    said = video_story.speakable("cxrtriage quotes “Small effusion” (present) — done")
    assert said == "C X R triage quotes Small effusion, present, done"


def test_timing_plan_fits_each_scene_to_its_speech():
    scenes = (Scene("a", "card", "", "", ""), Scene("b", "card", "", "", "", hold_s=2.0, min_s=1.0))
    plan = video_story.timing_plan(scenes, {"a": 1.0, "b": 6.0})
    assert plan == [{"name": "a", "start_s": 0.0, "seconds": 3.0}, {"name": "b", "start_s": 3.0, "seconds": 8.3}]


def test_the_story_lasts_one_to_two_minutes_at_the_narration_speed():
    facts = _facts()
    # espeak-ng at SPEED_WPM words a minute (a little slower for the numbers); the live facts stand in at 2 words
    speech = {
        s.name: len(video_story.speakable(video_story.render(s.narration, facts)).split()) * 60 / narration.SPEED_WPM
        for s in SCENES
    }
    total = sum(p["seconds"] for p in video_story.timing_plan(SCENES, speech))
    assert 55 <= total <= 120, total


def test_the_reported_scene_waits_for_the_state_route():
    (scene,) = [s for s in SCENES if s.requires]
    assert scene.name == "mark_reported" and scene.requires == video_story.WORKLIST_STATE
    assert video_actions.FEATURE_ROUTES[scene.requires] == "/worklist/{key}/state"


def test_only_nih_and_pediatric_films_appear():
    video_story.check_films((*video_story.QUEUE, video_story.URGENT))
    assert video_story.URGENT.prior_report and all(f.minutes_ago > 0 for f in video_story.QUEUE)
    for banned in ("shenzhen/images/CHNCXR_0001_0.png", "jsrt_scr/x.png", "laterals/y.png"):
        with pytest.raises(ValueError, match="only nih/"):
            video_story.check_films([Film("K1", banned)])


def test_the_reader_signs_in_before_the_worklist_and_the_audit_trail_closes_the_story():
    names = [s.name for s in SCENES]
    assert names.index("sign_in") < names.index("queue") < names.index("audit") < names.index("measured")
    (sign_in,) = [s for s in SCENES if s.name == "sign_in"]
    assert "password field" in sign_in.caption  # the viewer is told why no key shows
    texts = " ".join(f"{s.caption} {s.narration}" for s in SCENES)
    assert not [n for n in video_story.fields(texts) if "key" in n and n != "urgent_key"]  # no key is a fact


def _trail(path: Path) -> Path:
    from cxrtriage.security.audit import AuditEvent, AuditLog

    trail = AuditLog(path)
    trail.append(AuditEvent("key.create", "ok", principal="ops", role="admin", via="cli", reason="key r"))
    trail.append(AuditEvent("login", 303, principal="dr-a", role="reader", via="session"))
    trail.append(AuditEvent("triage", 200, principal="gw", role="submitter", via="api-key", study="NS-24038"))
    trail.append(AuditEvent("triage", 200, principal="gw", role="submitter", via="api-key", study="NS-24031"))
    return path


def test_the_audit_card_counts_and_verifies_the_trail_it_reads(tmp_path):
    path = _trail(tmp_path / "audit.jsonl")
    facts = video_actions.audit_facts(path)
    assert facts["audit_n"] == "4" and facts["audit_verdict"] == "intact"
    lines = facts["audit_lines"].splitlines()
    assert [ln.split(": ", 1)[1] for ln in lines] == ["key.create, ok", "login, 303", "triage NS-24038, 200"]
    assert lines[1].startswith("#2 ") and "dr-a (reader)" in lines[1]
    path.write_text(path.read_text().replace('"NS-24031"', '"NS-24039"'))  # an edited record
    assert video_actions.audit_facts(path)["audit_verdict"].startswith("broken at record seq 4")


def test_queue_summary_and_joined_words():
    assert video_story.queue_summary(["Non-Urgent"] * 3) == "all 3 Non-Urgent"
    assert video_story.queue_summary(["Non-Urgent", "Urgent"]) == "1 of 2 Non-Urgent"
    assert video_story.joined(["a", "b", "c"]) == "a, b and c"


def test_a_missing_espeak_ng_says_what_to_install(monkeypatch):
    monkeypatch.setattr(narration.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"espeak-ng not found \(apt-get install espeak-ng\)"):
        narration.speak("hello", Path("/nonexistent/x.wav"))
    with pytest.raises(FileNotFoundError, match=r"ffmpeg not found \(apt-get install ffmpeg\)"):
        narration.encode(Path("a.webm"), Path("b.mp4"))


def _tone(path: Path, seconds: float, rate: int = 22050, level: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(int(level).to_bytes(2, "little", signed=True) * int(seconds * rate))
    return path


def test_clips_are_laid_at_their_scenes_and_cut_before_the_next(tmp_path):
    a, b = _tone(tmp_path / "a.wav", 2.0), _tone(tmp_path / "b.wav", 0.5)
    cues = [narration.Cue(0.0, 1.5, "one", a, 0.5), narration.Cue(1.5, 3.0, "two", b, 0.0)]
    out = narration.mix_track(cues, tmp_path / "track.wav", total_s=3.0)
    with wave.open(str(out), "rb") as w:
        samples = w.readframes(w.getnframes())
        rate = w.getframerate()
    level = [int.from_bytes(samples[2 * i : 2 * i + 2], "little", signed=True) for i in range(0, 3 * rate, rate // 10)]
    assert level[:5] == [0] * 5  # the first clip starts 0.5 s after its caption
    assert level[5:20] == [8000] * 15  # then plays, cut at 1.5 s where the next begins, which plays to 2.0 s
    assert level[20:] == [0] * 10
    assert narration.srt(cues).startswith("1\n00:00:00,000 --> 00:00:01,500\none\n")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_ng_speaks_a_sentence(tmp_path):
    seconds = narration.speak(video_story.speakable("cxrtriage: a night shift."), tmp_path / "s.wav")
    assert 0.8 < seconds < 5


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg")), reason="espeak-ng or ffmpeg missing")
def test_a_tiny_narrated_clip_has_an_aac_track(tmp_path):
    webm = tmp_path / "in.webm"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25:duration=3"]
        + ["-c:v", "libvpx", str(webm)],
        check=True,
    )
    wav = tmp_path / "s.wav"
    narration.speak("A short test.", wav)
    track = narration.mix_track([narration.Cue(0.0, 3.0, "test", wav, 0.3)], tmp_path / "t.wav", 3.5)
    out = narration.encode(webm, tmp_path / "out.mp4", audio=track, start_s=0.5)
    audio = narration.audio_facts(out)
    assert audio["codec"] == "aac" and audio["max_volume_db"] > -30
    assert 2.0 < _seconds(out) < 3.0  # cut to start 0.5 s into the 3 s recording


def _seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)
