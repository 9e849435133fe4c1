"""The story ``video/demo.mp4`` tells: one list of scenes, each saying what the browser does, the caption shown and
the sentence spoken. Kept apart from the recorder (:mod:`cxrtriage.evaluation.video`) and free of browser, server
and audio imports, so that the story can be read, changed and tested on its own
(``tests/evaluation/test_video_story.py``).

A simulated night shift: a queue of routine films arrives over the last :data:`SPAN_MIN` minutes (posted to
``POST /predict`` with the modality gateway's ``submitter`` key before the recording starts, their arrival times set
back), the radiologist signs in on the sign-in page with a personal ``reader`` key (typed into a password field: no
frame shows it), an urgent film arrives on screen and goes to the top of the Worklist tab, the reader opens it
(label, plain explanation, the prior report quoted, the evidence boxes on the image), marks it reported (only where
the service has ``POST /worklist/{key}/state``), the recording's own audit trail is counted and verified, and the
measured numbers and the disclaimer close it.

Honesty rules the texts follow: a ``{name}`` in a caption or a narration is filled at recording time, either from
the live result the screen shows (:data:`LIVE_FACTS` names those) or from a metrics file through
:class:`~cxrtriage.evaluation.writeup.NumberBook` (every other name, e.g. ``nih_sens_pct``); no number is typed into
a text. The films are NIH ChestX-ray14 (public domain) and Kermany et al. pediatric (CC BY 4.0) test-split images
only (:data:`ALLOWED_SOURCES`); the prior report is a synthetic one written for the demo, and the card says so.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cxrtriage.evaluation.writeup import NUMBERS, PRIOR_REPORT


@dataclass(frozen=True)
class Film:
    """One study of the scenario: its accession, its image (relative to the data directory), how many minutes ago
    it arrived (simulated: the worklist's arrival time is set back by that much) and the prior report sent with it."""

    accession: str
    path: str
    minutes_ago: float = 0.0
    prior_report: str | None = None


#: the only image sources whose licences allow them in the committed video (never Shenzhen, JSRT or laterals)
ALLOWED_SOURCES = ("nih/", "kermany/")
#: the queue already waiting when the recording starts: test-split films labelled non-urgent that the shipped model
#: (generation 3; three of generation 2's choices now fall in its review band) triages Non-Urgent; the caption says
#: what the running model answered for them (``queue_summary``), whatever the model
QUEUE: tuple[Film, ...] = (
    Film("NS-24031", "nih/images/00001323_001.png", 41),
    Film("NS-24032", "kermany/images/NORMAL/IM-0365-0001.jpeg", 36),
    Film("NS-24033", "nih/images/00003363_002.png", 30),
    Film("NS-24034", "nih/images/00001504_002.png", 22),
    Film("NS-24035", "kermany/images/NORMAL/IM-0452-0001.jpeg", 15),
    Film("NS-24036", "nih/images/00002239_004.png", 9),
    Film("NS-24037", "nih/images/00003275_005.png", 4),
)
#: the film that arrives on screen (NIH test split, labelled Pneumonia in NIH's labels), with the synthetic report
URGENT = Film("NS-24038", "nih/images/00010334_010.png", 0, PRIOR_REPORT)
SPAN_MIN = max(f.minutes_ago for f in QUEUE)

#: the facts the recorder fills from what the running application answered (everything else comes from NUMBERS)
LIVE_FACTS = (
    "span_min",
    "queue_n",
    "queue_summary",
    "urgent_key",
    "urgent_label",
    "urgent_score",
    "urgent_threshold",
    "urgent_zones",
    "urgent_explanation",
    "urgent_boxes",
    "prior_quotes",
    "copy_note",
    "disclaimer",
    "reader_name",
    "reader_role",
    "session_idle_min",
    "audit_n",
    "audit_lines",
    "audit_verdict",
)
#: a service feature a scene needs; the recorder skips the scene, with a logged notice, where it is missing
WORKLIST_STATE = "worklist_state"


@dataclass(frozen=True)
class Scene:
    """One step of the story. ``action`` names what the browser does (a key of the recorder's ``ACTIONS``; ``do``
    says it in words for ``video/demo.json``); ``caption`` is drawn on the frames and ``narration`` spoken, both
    templates with ``{fact}`` fields. The scene lasts as long as its speech plus ``hold_s``, at least ``min_s``.
    ``title`` (a template too) makes it a full-screen card, its caption the card's text, one line per ``\\n``."""

    name: str
    action: str
    do: str
    caption: str
    narration: str
    title: str | None = None
    requires: str | None = None
    hold_s: float = 1.2
    min_s: float = 3.0


SCENES: tuple[Scene, ...] = (
    Scene(
        "night_shift",
        "card",
        "a title card",
        "A simulated night shift, recorded from the running application: offline, on two CPU cores.\n"
        "Films: NIH ChestX-ray14 (public domain) and pediatric chest X-rays of Kermany et al. (CC BY 4.0), "
        "test split.\nThe prior report in this story is a synthetic one, written for the demo.",
        "A night shift: one radiologist on call, and cxrtriage, offline, triaging each film as it arrives.",
        title="cxrtriage: a night shift",
    ),
    Scene(
        "sign_in",
        "sign_in",
        "types the reader's name and personal access key into the sign-in page (the key into a password field)",
        "Signing in as {reader_name} ({reader_role} role): the personal access key goes into a password field; "
        "the session ends after {session_idle_min} idle minutes",
        "The radiologist signs in with a personal key, which never shows on screen.",
    ),
    Scene(
        "queue",
        "queue",
        "presses Sign in; the UI opens on its Worklist tab, showing the queue posted before the recording",
        "{queue_n} films arrived over the last {span_min} minutes (arrival times simulated): {queue_summary}",
        "{queue_n} films arrived in the last {span_min} minutes, each triaged as it came in: {queue_summary}.",
    ),
    Scene(
        "urgent_arrives",
        "urgent_arrives",
        "posts the urgent film to POST /predict with its accession and prior report, then presses Refresh",
        "A new film, {urgent_key}: triaged {urgent_label}, it goes to the top, above films that waited longer",
        "A new film arrives, triaged {urgent_label}: it goes straight to the top, above films that waited longer.",
    ),
    Scene(
        "open_study",
        "open_study",
        "clicks the urgent study's row; its stored result opens beside the list",
        "{urgent_explanation}",
        "The radiologist opens it. {urgent_explanation}",
    ),
    Scene(
        "prior_report",
        "prior_report",
        "scrolls the study to the prior report and the most similar training cases",
        "The prior report, quoted word for word: {prior_quotes}",
        "The prior report is quoted word for word: {prior_quotes}.",
    ),
    Scene(
        "evidence",
        "evidence",
        "loads the same film and report in the Triage tab: the image with its boxes, and the crops",
        "The same film in the Triage tab: {urgent_boxes} evidence boxes on the image, and a crop of each",
        "On the image, {urgent_boxes} boxes mark where the evidence lies, each with a close-up crop.",
        hold_s=2.0,
    ),
    Scene(
        "mark_reported",
        "mark_reported",
        "back on the Worklist tab, marks the urgent study reported (POST /worklist/{key}/state)",
        "The radiologist reads the film, reports it, and marks {urgent_key} reported{copy_note}",
        "The radiologist reads the film, writes the report, and marks the study reported.",
        requires=WORKLIST_STATE,
    ),
    Scene(
        "audit",
        "audit",
        "a card with the recording's own audit trail, counted and verified (cxrtriage.security.audit)",
        "{audit_n} records in this recording's audit trail: who did what, with which study\n"
        "{audit_lines}\n"
        "cxrtriage audit verify: chain {audit_verdict}",
        "Every step left a record, {audit_n} in all, each chained to the one before by its hash. "
        "Audit verify finds the chain {audit_verdict}.",
        title="The audit trail",
    ),
    Scene(
        "measured",
        "card",
        "a card with the measured numbers",
        "Held-out NIH test patients: {nih_sens_pct} of urgent films labelled Urgent, at {nih_spec_pct} specificity\n"
        "Pediatric test patients: {ped_sens_pct} of urgent films labelled Urgent, at {ped_spec_pct} specificity\n"
        "(prototype/eval/metrics.json, written by make evaluate)",
        "On held-out adult test patients, {nih_sens_pct} of urgent films were labelled Urgent, "
        "at {nih_spec_pct} specificity. In children, {ped_sens_pct}, at {ped_spec_pct}.",
        title="Measured, not promised",
    ),
    Scene(
        "disclaimer",
        "card",
        "the closing card with the disclaimer",
        "cxrtriage orders the queue; the radiologist reads every film and makes every diagnosis.\n"
        "Rebuild this video: make video",
        "{disclaimer}. cxrtriage orders the queue. The radiologist makes every diagnosis.",
        title="{disclaimer}",
        hold_s=2.0,
    ),
)


def fields(template: str) -> list[str]:
    """The ``{fact}`` names a caption or narration asks for."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


class Facts(dict):
    """The values a scene's texts are filled with: live facts set by the recorder, and any other name looked up
    in the metrics files by ``numbers`` (a :class:`~cxrtriage.evaluation.writeup.NumberBook`, which records each)."""

    def __init__(self, numbers: Callable[[str], str], live: Mapping[str, object] | None = None) -> None:
        super().__init__(live or {})
        self.numbers = numbers

    def __missing__(self, name: str) -> str:
        if name in LIVE_FACTS:
            raise KeyError(f"the scene needs the live fact {name!r}, which its action did not set")
        if name not in NUMBERS:
            raise KeyError(f"a scene asks for {name!r}: neither a live fact nor a number of writeup.NUMBERS")
        return self.numbers(name)


def render(template: str, facts: Mapping[str, object]) -> str:
    """A caption or narration with its facts filled in."""
    return template.format_map(facts)


#: what espeak-ng would misread, and what it should say instead
SAY_INSTEAD = {"cxrtriage": "C X R triage", "“": "", "”": "", '"': "", " (": ", ", ")": "", "—": ",", "–": ","}


def speakable(text: str) -> str:
    """The narration as espeak-ng should read it: one line, the project's name spelt out, quotation marks dropped,
    brackets and dashes read as pauses."""
    for written, said in SAY_INSTEAD.items():
        text = text.replace(written, said)
    return " ".join(text.replace(" ,", ",").split())


def scene_seconds(scene: Scene, speech_s: float, lead_s: float = 0.3) -> float:
    """How long a scene stays on screen: its speech (after a short lead) plus its hold, at least its minimum."""
    return round(max(scene.min_s, lead_s + speech_s + scene.hold_s), 2)


def timing_plan(scenes: Iterable[Scene], speech_s: Mapping[str, float]) -> list[dict]:
    """Start and length of each scene played back to back from speech lengths in seconds (by scene name): what
    the recorder aims at (each action's own time comes on top) and what the test checks without a browser."""
    plan, t = [], 0.0
    for scene in scenes:
        seconds = scene_seconds(scene, speech_s[scene.name])
        plan.append({"name": scene.name, "start_s": round(t, 2), "seconds": seconds})
        t += seconds
    return plan


def queue_summary(labels: list[str]) -> str:
    """How the queue was triaged, in words, from the labels the service answered."""
    routine = sum(1 for label in labels if label == "Non-Urgent")
    if routine == len(labels):
        return f"all {len(labels)} Non-Urgent"
    return f"{routine} of {len(labels)} Non-Urgent"


def joined(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def check_films(films: Iterable[Film]) -> None:
    """Refuse a film whose licence does not allow it in the committed video."""
    for film in films:
        if not film.path.startswith(ALLOWED_SOURCES):
            raise ValueError(f"{film.path}: only {', '.join(ALLOWED_SOURCES)} images may appear in the video")
