"""The reader-feedback panel of the web UI, under a fresh result (Triage tab) and under a stored one (the Worklist
tab's study view): agree or disagree with the label, the label the reader would give (filled in from the choice, and
changeable only to agree with it), an optional finding and comment, Save, and the study's history of assessments.

It records through the same store as ``POST /worklist/{key}/feedback``
(:class:`~cxrtriage.worklist.feedback.FeedbackStore`, with its refusals) and names the reader by the same rule
(:func:`~cxrtriage.serve.routes.feedback.who_assessed`): the signed-in person; while the service runs without
authentication, the name typed in the panel's name box, which is shown only then. Each Save leaves a
``feedback.record`` audit record with the study's key (:mod:`cxrtriage.serve.ui.audit`), never the comment. The
panel follows a hidden key textbox: the key the Triage tab filed under, or the study the Worklist tab opened; empty,
the panel hides. Gradio is imported only inside :func:`build_feedback_panel`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cxrtriage.optional import require
from cxrtriage.serve.routes.feedback import who_assessed
from cxrtriage.serve.ui.audit import UiAudit, scope_of
from cxrtriage.serve.ui.feedback_render import agreement_html, history_html, saved_html
from cxrtriage.serve.ui.render import error_html
from cxrtriage.worklist.feedback import FINDINGS, LABELS, MAX_COMMENT_CHARS, MAX_READER_CHARS, FeedbackStore, agreement

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from cxrtriage.worklist import Worklist

__all__ = ["CHOICES", "FeedbackOpener", "build_feedback_panel", "current_agreement_html", "save_assessment"]

log = logging.getLogger(__name__)

#: the agree / disagree choice, as the panel says it
CHOICES = ("Agree", "Disagree")
NOT_SAVED = "Not saved"
#: the label the reader would give follows the choice: the result's label, or the other one (in the browser)
LABEL_FROM_CHOICE_JS = (
    "(choice, label) => (!choice || !label) ? null : "
    "(choice === 'Agree' ? label : (label === 'Urgent' ? 'Non-Urgent' : 'Urgent'))"
)


class FeedbackOpener:
    """The store of a worklist opener, made on first use and kept; a failed open is retried next time."""

    def __init__(self, open_worklist: Callable[[], Worklist]) -> None:
        self.open_worklist = open_worklist
        self._lock = threading.Lock()
        self._store: FeedbackStore | None = None

    def __call__(self) -> FeedbackStore:
        with self._lock:
            if self._store is None:
                self._store = FeedbackStore(self.open_worklist())
            return self._store


def _principal(request: Any) -> Any:
    state = scope_of(request).get("state")
    return state.get("principal") if isinstance(state, dict) else None


def needs_typed_name(request: Any) -> bool:
    """Whether nobody is signed in (the service runs without authentication): the panel then asks for a name."""
    principal = _principal(request)
    return principal is None or getattr(principal, "via", None) == "open"


def study_panel(open_store: Callable[[], FeedbackStore], key: str) -> tuple[str | None, str]:
    """``(the label of the study's latest result, its history HTML)``; ``(None, message)`` when it is not on the
    worklist or the worklist cannot be read."""
    try:
        store = open_store()
        history = store.history(key)
        item = store.worklist.item(key) if history is not None else None
    except (OSError, sqlite3.Error) as exc:
        log.error("feedback read failed in the web UI: %s", type(exc).__name__)
        return None, error_html("The worklist could not be read; nothing can be recorded now.", title=NOT_SAVED)
    if history is None or item is None:
        return None, error_html("This study is not on the worklist (it was not filed).", title=NOT_SAVED)
    return str(item["label"]), history_html(history)


def save_assessment(
    open_store: Callable[[], FeedbackStore],
    key: str,
    choice: str | None,
    label: str | None,
    finding: str | None,
    comment: str | None,
    typed_name: str | None,
    audit: UiAudit,
    request: Any,
) -> tuple[str, str | None]:
    """Record one assessment from the panel: ``(the answer HTML, the new history HTML or None when unchanged)``.
    Audited as ``feedback.record`` (``ok``, ``refused`` for a value not accepted, ``not_found``, ``failed``)."""
    if choice not in CHOICES:
        return error_html("Choose Agree or Disagree first.", title=NOT_SAVED), None
    try:
        reader, via = who_assessed(_principal(request), typed_name)
        store = open_store()
        record = store.record(
            key,
            agrees=choice == CHOICES[0],
            label=label or None,
            finding=finding or None,
            comment=comment,
            reader=reader,
            via=via,
        )
    except ValueError as exc:
        audit.record(request, "feedback.record", key, "refused")
        return error_html(str(exc).removeprefix("reader: "), title=NOT_SAVED), None
    except (OSError, sqlite3.Error) as exc:
        log.error("feedback write failed in the web UI: %s", type(exc).__name__)
        audit.record(request, "feedback.record", key, "failed")
        return error_html("The worklist could not be written; the assessment was not saved.", title=NOT_SAVED), None
    if record is None:
        audit.record(request, "feedback.record", key, "not_found")
        return error_html("This study is not on the worklist (it was not filed).", title=NOT_SAVED), None
    audit.record(request, "feedback.record", key, "ok")
    return saved_html(record), study_panel(lambda: store, key)[1]


def current_agreement_html(open_store: Callable[[], FeedbackStore]) -> str:
    """The worklist's agreement line, from each assessed study's current assessment."""
    try:
        return agreement_html(agreement(open_store().current()))
    except (OSError, sqlite3.Error) as exc:
        log.error("feedback read failed in the web UI: %s", type(exc).__name__)
        return agreement_html(None)


def build_feedback_panel(
    open_worklist: Callable[[], Worklist], audit: UiAudit, prefix: str, key: gr.Textbox | None = None
) -> gr.Textbox:
    """The panel's components and events, where it is called in a Blocks being built; it follows ``key`` (a hidden
    textbox of the caller's, else one made here) and returns that textbox. Element ids begin with ``prefix``."""
    gr = require("gradio", extra="demo", purpose="the web UI")
    open_store = FeedbackOpener(open_worklist)
    if key is None:
        key = gr.Textbox(visible=False, elem_id=f"{prefix}-key")
    model_label = gr.Textbox(visible=False, elem_id=f"{prefix}-model-label")
    with gr.Group(visible=False, elem_id=prefix) as panel:
        gr.HTML(
            '<p class="cxr-fb-head">Your assessment</p><p class="cxr-fb-note">Do you agree with the triage label? '
            "Your answer is kept with this result (a later one is added, the history stays).</p>"
        )
        choice = gr.Radio(list(CHOICES), label="The triage label", elem_id=f"{prefix}-agrees")
        label = gr.Radio(list(LABELS), label="The label you would give", elem_id=f"{prefix}-label")
        finding = gr.Dropdown(list(FINDINGS), value=None, label="Finding (optional)", elem_id=f"{prefix}-finding")
        comment = gr.Textbox(
            label=f"Comment (optional, at most {MAX_COMMENT_CHARS} characters)",
            lines=2,
            max_length=MAX_COMMENT_CHARS,
            elem_id=f"{prefix}-comment",
        )
        name = gr.Textbox(
            label="Your name (nobody is signed in: the assessment is recorded under it)",
            max_lines=1,
            max_length=MAX_READER_CHARS,
            visible=False,
            elem_id=f"{prefix}-name",
        )
        save = gr.Button("Save assessment", size="sm", elem_id=f"{prefix}-save")
        answer = gr.HTML("", elem_id=f"{prefix}-answer")
        history = gr.HTML("", elem_id=f"{prefix}-history")

    def opened(study: str | None, request: Any) -> tuple:
        """A new study in view: its history, an empty form, the name box when nobody is signed in."""
        if not study:
            return (gr.update(visible=False), "", None, None, None, "", "", "", gr.update())
        result_label, shown = study_panel(open_store, study)
        ask = gr.update(visible=needs_typed_name(request))
        return (gr.update(visible=True), result_label or "", None, None, None, "", "", shown, ask)

    def saved(study: str, choice_: str | None, label_: str | None, finding_: str | None, comment_: str | None,
              name_: str | None, request: Any) -> tuple:  # fmt: skip
        text, shown = save_assessment(open_store, study, choice_, label_, finding_, comment_, name_, audit, request)
        return text, gr.update() if shown is None else shown

    # gradio finds the request parameter by its annotation: the class itself (gradio is imported here, lazily)
    opened.__annotations__ = {"study": str | None, "request": gr.Request, "return": tuple}
    saved.__annotations__ = {"study": str, "request": gr.Request, "return": tuple}
    quiet: dict[str, Any] = {"api_name": False, "show_progress": "hidden"}
    form = [panel, model_label, choice, label, finding, comment, answer, history, name]
    key.change(opened, inputs=key, outputs=form, **quiet)
    choice.change(None, inputs=[choice, model_label], outputs=label, js=LABEL_FROM_CHOICE_JS, **quiet)
    inputs = [key, choice, label, finding, comment, name]
    save.click(saved, inputs=inputs, outputs=[answer, history], api_name=False)
    return key
