"""The reader-feedback panel's handlers and HTML without a browser: who is recorded (the signed-in person, else the
typed name, required), what a refused Save says, the audit record of each Save, the history and agreement lines
(escaped, with the number of studies)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from fake_prediction import fake_prediction

from cxrtriage.security.audit import AuditLog
from cxrtriage.security.principal import ANONYMOUS, Principal, Role
from cxrtriage.serve.ui.audit import UiAudit
from cxrtriage.serve.ui.feedback import FeedbackOpener, needs_typed_name, save_assessment
from cxrtriage.serve.ui.feedback_render import agreement_html, history_html
from cxrtriage.worklist import Worklist


def _request(principal: Principal | None) -> SimpleNamespace:
    """What gradio hands a handler: its ``.request`` is Starlette's, whose scope holds the guard's principal."""
    return SimpleNamespace(request=SimpleNamespace(scope={"state": {"principal": principal}, "client": ("h", 1)}))


def _setup(tmp_path: Path) -> tuple[FeedbackOpener, UiAudit, Path]:
    worklist = Worklist(tmp_path / "wl.sqlite")
    worklist.add(fake_prediction("Urgent"), "ACC-1")
    trail = tmp_path / "audit.jsonl"
    return FeedbackOpener(lambda: worklist), UiAudit(AuditLog(trail)), trail


def test_who_is_recorded_and_what_a_refusal_says(tmp_path: Path) -> None:
    store, audit, trail = _setup(tmp_path)
    nobody, signed_in = _request(ANONYMOUS), _request(Principal("dr-smith", Role.READER, "session"))
    assert needs_typed_name(nobody) and not needs_typed_name(signed_in)

    text, history = save_assessment(store, "ACC-1", "Disagree", None, None, "x", "", audit, nobody)
    assert "name is required while the service runs without authentication" in text and history is None
    text, history = save_assessment(store, "ACC-1", None, None, None, None, "Dr Night", audit, nobody)
    assert "Choose Agree or Disagree first" in text and history is None
    text, history = save_assessment(store, "ACC-1", "Agree", "Non-Urgent", None, None, "Dr Night", audit, nobody)
    assert "agrees with the result&#x27;s label (Urgent) but gives the label Non-Urgent" in text
    text, history = save_assessment(store, "ACC-1", "Disagree", None, "other", "<b>bold</b>", "Dr Night", audit, nobody)
    assert "Saved: Dr Night disagrees: Non-Urgent" in text and "&lt;b&gt;bold&lt;/b&gt;" in history
    text, _ = save_assessment(store, "ACC-1", "Agree", None, None, None, "ignored", audit, signed_in)
    assert "recorded under the signed-in name (dr-smith)" in text  # a typed name is not someone else's
    text, _ = save_assessment(store, "ACC-1", "Agree", None, None, None, "", audit, signed_in)
    assert "Saved: dr-smith agrees: Urgent" in text
    text, _ = save_assessment(store, "GONE", "Agree", None, None, None, "", audit, signed_in)
    assert "not on the worklist" in text

    records = [(r["reader"], r["via"], r["label"]) for r in store().history("ACC-1")]
    assert records == [("Dr Night", "typed", "Non-Urgent"), ("dr-smith", "session", "Urgent")]
    outcomes = [json.loads(line)["outcome"] for line in trail.read_text().splitlines()]
    assert outcomes == ["refused", "refused", "ok", "refused", "ok", "not_found"]  # no record before a choice
    assert "bold" not in trail.read_text()


def test_history_and_agreement_lines() -> None:
    record = {
        "id": 1,
        "time": "2026-12-07T15:00:00Z",
        "reader": "<script>",
        "agrees": False,
        "label": "Non-Urgent",
        "model_label": "Urgent",
        "version": 2,
        "finding": None,
        "comment": None,
        "current": True,
    }
    shown = history_html([record])
    assert "&lt;script&gt;" in shown and "<script>" not in shown
    assert "2026-12-07 15:00:00 UTC · current" in shown
    assert "disagrees: Non-Urgent</span> (of Urgent, version 2)" in shown
    assert "No reader has assessed" in history_html([])
    line = agreement_html({"overall": 0.75, "urgent": 0.5, "non_urgent": None, "n": 4})
    assert "Readers agreed with 75% of 4 assessed results · Urgent: 50% · Non-Urgent: not yet assessed" in line
    assert "no result has been assessed yet" in agreement_html(
        {"overall": None, "urgent": None, "non_urgent": None, "n": 0}
    )
    assert "unavailable" in agreement_html(None)
