"""The video's sound and subtitles: espeak-ng speaks each scene's narration to a WAV, the clips are laid on one
track at the times their scenes began on screen, ffmpeg encodes the recording with that track as AAC, and the same
cues become an SRT sidecar.

espeak-ng rather than a neural voice: it is a Debian package (``apt-get install espeak-ng``), runs offline in well
under a second per sentence on a CPU, and its output is the same on every rebuild. The track is assembled with the
standard library's :mod:`wave` (all clips come from the same synthesiser, so they share one format), which keeps the
ffmpeg call a plain two-input encode. Heavy tools are looked up when they are needed, each with an error that says
what to install (a usage error of ``cxrtriage video``).
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

#: a calm, slower voice: American English at 150 words a minute, a little lower than espeak-ng's default pitch
VOICE, SPEED_WPM, PITCH, WORD_GAP = "en-us", 150, 42, 1


def require_tool(name: str, package: str, purpose: str) -> str:
    """The path of a command-line tool, or a FileNotFoundError that says which package to install."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found (apt-get install {package}): {purpose}")
    return path


def espeak() -> str:
    return require_tool("espeak-ng", "espeak-ng", "it speaks the video's narration")


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def speak(text: str, out: Path, voice: str = VOICE, speed: int = SPEED_WPM) -> float:
    """Speak ``text`` into the WAV ``out``; returns its length in seconds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603 - espeak-ng found by path; the text is an argument, no shell
        [espeak(), "-v", voice, "-s", str(speed), "-p", str(PITCH), "-g", str(WORD_GAP), "-w", str(out), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return wav_seconds(out)


@dataclass(frozen=True)
class Cue:
    """One scene's caption on the video's timeline, and its speech, which starts ``delay_s`` after the caption."""

    start_s: float
    end_s: float
    caption: str
    wav: Path | None = None
    delay_s: float = 0.0


def mix_track(cues: list[Cue], out: Path, total_s: float) -> Path:
    """One WAV of ``total_s`` seconds with each cue's speech starting at its ``start_s`` (silence elsewhere; a clip
    that would run past the next one's start is cut there rather than overlapped)."""
    clips = [c for c in cues if c.wav is not None]
    if not clips:
        raise ValueError("no narration clips to mix")
    with wave.open(str(clips[0].wav), "rb") as w:
        params = w.getparams()
    rate, frame = params.framerate, params.sampwidth * params.nchannels
    track = bytearray(int(total_s * rate) * frame)
    ordered = sorted(clips, key=lambda c: c.start_s + c.delay_s)
    for i, cue in enumerate(ordered):
        with wave.open(str(cue.wav), "rb") as w:
            if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (rate, params.sampwidth, params.nchannels):
                raise ValueError(f"{cue.wav}: a different audio format from the other clips")
            data = w.readframes(w.getnframes())
        start = int((cue.start_s + cue.delay_s) * rate) * frame
        following = ordered[i + 1] if i + 1 < len(ordered) else None
        limit = int((following.start_s + following.delay_s) * rate) * frame if following else len(track)
        data = data[: max(0, min(limit, len(track)) - start)]
        track[start : start + len(data)] = data
    with wave.open(str(out), "wb") as w:
        w.setnchannels(params.nchannels)
        w.setsampwidth(params.sampwidth)
        w.setframerate(rate)
        w.writeframes(bytes(track))
    return out


def _timestamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt(cues: list[Cue]) -> str:
    """The captions as SubRip subtitles (the sidecar ``video/demo.srt``)."""
    blocks = [
        f"{i}\n{_timestamp(c.start_s)} --> {_timestamp(c.end_s)}\n{c.caption.strip()}\n"
        for i, c in enumerate(sorted(cues, key=lambda c: c.start_s), start=1)
    ]
    return "\n".join(blocks)


def encode(webm: Path, out: Path, audio: Path | None = None, start_s: float = 0.0) -> Path:
    """H.264 (yuv420p; CRF 27: small, yet no ghosts of the UI on the dark cards; plays everywhere) of the recording
    from ``start_s`` on, with the narration as AAC when ``audio`` is given (its time 0 is ``start_s`` of the
    recording; it is padded or cut to the video)."""
    ffmpeg = require_tool("ffmpeg", "ffmpeg", "it encodes the video and mixes in the narration")
    out.parent.mkdir(parents=True, exist_ok=True)
    sound = ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0"] if audio else []
    sound_codec = ["-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "1", "-af", "apad", "-shortest"]
    subprocess.run(  # noqa: S603 - ffmpeg found by path, argument list, no shell
        [ffmpeg, "-y", "-loglevel", "error", "-ss", f"{start_s:.3f}", "-i", str(webm), *sound]
        + ["-vf", "fps=25,scale=1280:720:flags=lanczos", "-c:v", "libx264", "-preset", "medium", "-crf", "27"]
        + ["-pix_fmt", "yuv420p", *(sound_codec if audio else ["-an"]), "-movflags", "+faststart", str(out)],
        check=True,
        timeout=900,
    )
    return out


def audio_facts(path: Path) -> dict:
    """The audio stream of a video (codec, seconds) and its loudness (ffmpeg's volumedetect, in dB); an empty dict
    when the file has no audio."""
    ffprobe = require_tool("ffprobe", "ffmpeg", "it reads the video's streams")
    out = subprocess.run(  # noqa: S603 - ffprobe found by path, argument list, no shell
        [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=codec_name,duration,sample_rate"]
        + ["-of", "default=noprint_wrappers=1", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not info:
        return {}
    detect = subprocess.run(  # noqa: S603 - ffmpeg found by path, argument list, no shell
        [require_tool("ffmpeg", "ffmpeg", "it measures the narration's loudness"), "-i", str(path), "-map", "0:a:0"]
        + ["-af", "volumedetect", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    levels = {}
    for line in detect.splitlines():
        for key in ("mean_volume", "max_volume"):
            if f"{key}:" in line:
                levels[f"{key}_db"] = float(line.split(f"{key}:")[1].split()[0])
    return {"codec": info.get("codec_name"), "seconds": float(info.get("duration", 0)), **levels}
