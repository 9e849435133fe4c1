"""The browser's part of each scene of ``video/demo.mp4`` (:data:`ACTIONS`, keyed by
:attr:`~cxrtriage.evaluation.video_story.Scene.action`), the captions and cards drawn into the page, and the calls to
the service that set the scenario up (the queue posted to ``POST /predict`` with the modality gateway's submitter
key, its arrival times set back), and the facts of the recording's own audit trail (:func:`audit_facts`).

Apart from :mod:`cxrtriage.evaluation.video` (which plays the scenes, records and encodes) so that a scene can be
changed or added here, one function per step, once the other UI work lands. Each action checks what the story will
say about it (the urgent film is Urgent and first on ``GET /worklist``; the Triage tab agrees with the worklist) and
raises instead of letting a caption claim something the screen does not show.
"""

from __future__ import annotations

import datetime as _dt
import html
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.live_server import Person, fill_sign_in, submit_sign_in, upload_and_triage, wait_for_ui
from cxrtriage.evaluation.video_story import QUEUE, URGENT, WORKLIST_STATE, Facts, Film, joined
from cxrtriage.schema import DISCLAIMER

#: the route each optional feature of a scene needs (looked up in the service's OpenAPI document)
FEATURE_ROUTES = {WORKLIST_STATE: "/worklist/{key}/state"}

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

#: a full-screen card drawn over the page (the UI stays loaded beneath it, so no scene waits for a page load)
CARD_JS = """(html) => {
  let d = document.getElementById('cxr-video-card');
  if (!d) {
    d = document.createElement('div'); d.id = 'cxr-video-card';
    Object.assign(d.style, {position: 'fixed', inset: '0', display: 'flex', flexDirection: 'column',
      justifyContent: 'center', alignItems: 'center', background: '#17202a', color: '#fdfefe',
      fontFamily: '"DejaVu Sans", sans-serif', textAlign: 'center', zIndex: '2147483647', pointerEvents: 'none'});
    document.body.appendChild(d);
  }
  d.innerHTML = html; d.style.display = 'flex';
  const c = document.getElementById('cxr-video-caption'); if (c) c.style.display = 'none';
}"""
UNCARD_JS = """() => {
  const d = document.getElementById('cxr-video-card'); if (d) d.style.display = 'none';
  const c = document.getElementById('cxr-video-caption'); if (c) c.style.display = 'block';
}"""
CARD = """<div style="font-size:46px;font-weight:700;margin-bottom:22px">{title}</div>
<div style="font-size:25px;line-height:1.6;max-width:1120px">{body}</div>
<div style="position:absolute;bottom:34px;font-size:20px;color:#f5b7b1;font-weight:600">{disclaimer}</div>"""


@dataclass
class Stage:
    """What the scenes' actions share: the browser page, the service (``api`` sends the reader's key, ``submit``
    the modality gateway's), the reader who signs in, the scratch audit trail, the facts the texts are filled
    with."""

    page: Any
    api: Any
    submit: Any
    reader: Person
    audit_path: Path
    data_dir: Path
    facts: Facts
    log: Callable[[str], None]
    notes: dict[str, str] = field(default_factory=dict)


def card(page, title: str, text: str) -> None:
    body = "<br>".join(html.escape(line) for line in text.splitlines())
    footer = "" if DISCLAIMER.rstrip(".") in title else html.escape(DISCLAIMER)  # said once, where it is the title
    page.evaluate(CARD_JS, CARD.format(title=html.escape(title), body=body, disclaimer=footer))


def caption_bar(page, text: str) -> None:
    page.evaluate(CAPTION_JS, text)
    page.evaluate(UNCARD_JS)


def clear(page) -> None:
    """Take the card and the caption away before a scene's action: the viewer sees the UI the action works on,
    without the last scene's words over it (the Triage tab loading under the prior report's caption)."""
    page.evaluate(UNCARD_JS)
    page.evaluate("() => { const c = document.getElementById('cxr-video-caption'); if (c) c.style.display = 'none'; }")


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


def act_sign_in(stage: Stage) -> None:
    """Fill in the sign-in page (opened before the first scene, beneath the title card): the name, then the key
    into the password field. The caption is read over the filled form; the next scene presses Sign in."""
    from cxrtriage.config import Settings

    fill_sign_in(stage.page, stage.reader, type_delay_ms=70)
    # the server inherited this process's environment: the same setting it runs with
    idle = Settings().session_idle_min
    stage.facts.update(reader_name=stage.reader.name, reader_role=stage.reader.role, session_idle_min=f"{idle:g}")


def act_queue(stage: Stage) -> None:
    page = stage.page
    submit_sign_in(page)
    wait_for_ui(page, idle_timeout_ms=1_500)  # not up to 10 s of idle waiting on screen: the rows are waited for
    bar = page.locator("#cxr-user-bar")
    if stage.reader.name not in bar.inner_text():
        raise RuntimeError("the UI's top bar does not name the reader who signed in")
    _show_worklist(page)


def act_urgent_arrives(stage: Stage) -> None:
    result = post_film(stage.submit, stage.data_dir, URGENT)
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
        urgent_explanation=result["explanation"],
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
    page.evaluate("() => window.scrollTo(0, 0)")
    page.get_by_role("tab", name="Triage").click()
    # under the study's accession: the worklist keeps one row for the film, not a second copy
    upload_and_triage(page, stage.data_dir / URGENT.path, URGENT.prior_report, accession=URGENT.accession)
    shown = page.locator("#cxr-label .cxr-label").first.get_attribute("data-label")
    if shown != stage.facts["urgent_label"]:
        raise RuntimeError(f"the Triage tab labelled the film {shown}, the worklist {stage.facts['urgent_label']}")
    page.locator("#cxr-image").first.evaluate("(e) => e.scrollIntoView({block: 'center'})")
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
        button.wait_for(state="visible", timeout=3_000)
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
    items = _worklist_items(stage.api)
    item = next((i for i in items if i["key"] == key), None)
    if item is not None and item.get("state", "reported") != "reported":
        raise RuntimeError(f"{key} is {item.get('state')!r} on GET /worklist after marking it reported")
    # the Triage tab of the evidence scene filed the same film again under a random key: the caption says which row
    ours = {f.accession for f in (*QUEUE, URGENT)}
    copies = [i["key"] for i in items if i["key"] not in ours]
    stage.facts["copy_note"] = f" ({joined(copies)}: the Triage tab's copy of the same film)" if copies else ""
    stage.log(f"video: {key} marked reported through {stage.notes['mark_reported']}")


def _audit_line(record: dict) -> str:
    study = f" {record['study']}" if record.get("study") else ""
    return (
        f"#{record['seq']} {record['time'][11:19]} {record['principal']} ({record['role']}): "
        f"{record['action']}{study}, {record['outcome']}"
    )


#: the records the audit card shows, the first of each: the keys' creation, the sign-in, and the urgent study's
#: triage, first reading and marking reported
_SHOWN = (
    lambda r: r["action"] == "key.create",
    lambda r: r["action"] == "login",
    lambda r: r["action"] == "triage" and r.get("study") == URGENT.accession,
    lambda r: r["action"] == "result.read" and r.get("study") == URGENT.accession,
    lambda r: r["action"] == "worklist.state" and r.get("study") == URGENT.accession,
)


def audit_facts(path: Path) -> dict[str, str]:
    """What the audit card says, read from the trail at ``path`` now: how many records, a few of them (one a
    line) and what :func:`cxrtriage.security.audit.verify_report` finds (``intact``, or where it is broken)."""
    from cxrtriage.security.audit import read_records, verify_report

    report = verify_report(path)
    records = [r for _, r, _ in read_records(path) if r is not None]
    shown = [next((r for r in records if pick(r)), None) for pick in _SHOWN]
    return {
        "audit_n": str(report.records),
        "audit_lines": "\n".join(_audit_line(r) for r in shown if r is not None),
        "audit_verdict": "intact" if report.intact else f"broken at {report.problems[0]}",
    }


def act_audit(stage: Stage) -> None:
    stage.facts.update(audit_facts(stage.audit_path))


ACTIONS: dict[str, Callable[[Stage], None]] = {
    "card": lambda stage: None,  # a card is drawn from the scene's title and caption
    "sign_in": act_sign_in,
    "queue": act_queue,
    "urgent_arrives": act_urgent_arrives,
    "open_study": act_open_study,
    "prior_report": act_prior_report,
    "evidence": act_evidence,
    "mark_reported": act_mark_reported,
    "audit": act_audit,
}
