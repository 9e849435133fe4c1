"""Browser UI (Gradio): upload a chest X-ray (PNG, JPEG or DICOM) and an optional prior report, press Triage; the
Worklist tab lists every triaged study in reading order (:mod:`cxrtriage.serve.ui.worklist`); Monitoring: drift.

The normal way to run it is ``cxrtriage serve``, which mounts it at ``/ui`` on the FastAPI service
(:func:`mount_ui`); ``python -m demo_app.ui.gradio_app`` runs it alone at ``/ui``. Gradio is an optional dependency
(``pip install 'cxrtriage[demo]'``) and is imported only inside the functions here. What the page shows (the
result's HTML, the boxed image, the crop gallery, the CSS) is rendered by :mod:`cxrtriage.serve.ui.render`.
Each result of the Triage button is filed on the service's worklist under a random key, as ``POST /predict`` files
one sent without an accession.

Design rules:

* **Offline**: Gradio analytics are off, the theme uses system fonts only (no Google Fonts) and the page
  loads nothing from outside the server (checked by ``tests/serve/test_ui_browser.py``).
* **Safety**: the disclaimer is always visible at the top; the banner says the label and what it means in words
  ("URGENT — needs a radiologist's review"), red for Urgent whatever the reason, amber for a Non-Urgent result sent
  for review, never a reassuring green; the numbers sit with their meaning in the Details toggle
  (:mod:`cxrtriage.serve.ui.details`); a rejected input clears the previous result and shows the reason in a red
  box, never a stack trace.
* **Privacy**: the Triage tab shows only the pixels and the non-identifying metadata of
  :class:`cxrtriage.imaging.load.ImageMeta`; the Worklist tab adds what the hospital's own list shows (accession,
  study date and time, view, modality: :func:`cxrtriage.imaging.study.study_info`), never a name or a patient ID.
  Uploads are held in memory by an opaque reference, never stored under their name and never served back; the UI
  serves rendered images from ``<crops dir>/ui`` and nothing else (:mod:`cxrtriage.serve.ui.uploads`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import statistics
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from PIL import Image

from cxrtriage.config import Settings
from cxrtriage.errors import InputError, ModelError, ServiceBusyError
from cxrtriage.optional import require
from cxrtriage.schema import Prediction
from cxrtriage.serve.ui.audit import UiAudit
from cxrtriage.serve.ui.details import ModelFacts, details_html, model_facts
from cxrtriage.serve.ui.feedback import build_feedback_panel
from cxrtriage.serve.ui.monitoring import MONITOR_CSS, build_monitoring_tab
from cxrtriage.serve.ui.render import (
    PLACEHOLDER_HTML,
    RENDERED_MAX_AGE_S,
    TITLE,
    UI_CSS,
    crop_gallery,
    disclaimer_html,
    draw_boxes,
    error_html,
    explanation_html,
    footer_html,
    label_html,
    provenance_html,
    title_html,
    to_display_image,
    warnings_html,
)
from cxrtriage.serve.ui.uploads import (
    UPLOAD_BYTES_FACTOR,
    UploadStore,
    install_ui_file_routes,
    is_upload_ref,
    private_files_dir,
)
from cxrtriage.serve.ui.user import user_bar_event
from cxrtriage.serve.ui.worklist import (
    WORKLIST_CSS,
    build_worklist_tab,
    configured_worklist,
    file_ui_result,
    filed_html,
)
from cxrtriage.worklist import KEY_PATTERN

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from cxrtriage.pipeline import Triage
    from cxrtriage.worklist import StudyInfo, Worklist

log = logging.getLogger(__name__)

NO_FILE_MESSAGE = "Please upload a chest X-ray first (PNG, JPEG or DICOM)."
UPLOAD_EXPIRED_MESSAGE = (
    "This upload is no longer held by the server (uploads are kept in memory for a limited "
    "time). Please upload the image again."
)
BUSY_MESSAGE = "The server is busy with other images; nothing was triaged. Please try again in a few seconds."
ACCESSION_MESSAGE = (
    "An accession may hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit), never a "
    "name; nothing was triaged. Correct it, or leave it empty for a random key."
)
GENERIC_ERROR = (
    "Something went wrong while analysing this image; nothing was triaged. "
    "Please try again, and contact the administrator if it keeps happening."
)


def _gradio():
    """Gradio, or :class:`cxrtriage.optional.MissingDependency` (an ImportError) naming the ``[demo]`` extra."""
    return require("gradio", extra="demo", purpose="the web UI")


def make_theme():
    """Gradio's default theme with system fonts only: nothing is fetched from font CDNs."""
    gr = _gradio()
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


class _LocalLatency:
    """End-to-end latency of the triages run through this UI, for when ``get_status`` has no median yet."""

    def __init__(self, maxlen: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def median(self) -> float | None:
        with self._lock:
            return statistics.median(self._values) if self._values else None


def _example_label(path: str) -> str:
    """``nih · 00000165_001.png``: the dataset folder (the one holding ``images/``, else the parent) and the name."""
    parts = Path(path).parts
    dataset = parts[parts.index("images") - 1] if "images" in parts[1:-1] else Path(path).parent.name
    return f"{dataset} · {Path(path).name}"


def _no_slot() -> contextlib.AbstractAsyncContextManager:
    return contextlib.nullcontext()


def build_blocks(
    get_engine: Callable[[], Triage],
    get_status: Callable[[], dict],
    examples: list[str] | None = None,
    examples_source: str = "public datasets",
    *,
    uploads: UploadStore | None = None,
    slot: Callable[[], contextlib.AbstractAsyncContextManager] = _no_slot,
    worklist: Callable[[], Worklist] | None = None,
    settings: Settings | None = None,
    audit: UiAudit | None = None,
) -> gr.Blocks:
    """The page: the Triage, Worklist and Monitoring tabs. Theme and CSS are applied where it is served
    (:func:`mount_ui`, :func:`launch`).

    ``uploads`` holds what the browser uploaded (see :mod:`cxrtriage.serve.ui.uploads`): the page sends the triage
    its opaque reference, never a path. An example is named by its file name and read from where the server found
    it (the data directory or the bundled samples; ``examples_source`` says which, above the examples), so no path
    chosen by the client is ever opened. ``slot`` is the service's inference queue, shared with the
    REST API, so the UI cannot overload the machine behind the API's back. ``worklist`` opens the worklist that
    the Triage button files results on and the Worklist tab lists (that of ``settings`` when not given).
    ``settings``: the service's (:func:`mount_ui`); a notebook's or custom launcher's page without them reads them
    from the environment here. Uploads are decoded with its pixel limits.
    """
    gr = _gradio()
    from cxrtriage.imaging.load import load_image
    from cxrtriage.imaging.study import study_info

    settings = settings if settings is not None else Settings()
    latency = _LocalLatency()
    uploads = uploads if uploads is not None else UploadStore()
    open_worklist = worklist if worklist is not None else configured_worklist(settings)
    # which study a reader opened or filed (serve/ui/audit.py): the service's own audit log when it passes one
    audit = audit if audit is not None else UiAudit.from_settings(settings)
    examples_by_name = {Path(p).name: str(p) for p in examples or []}

    def source_of(ref: str | None) -> bytes | str | None:
        """Uploaded bytes, or the data-directory path of a chosen example, or None (nothing usable chosen)."""
        if not ref:
            return None
        if is_upload_ref(ref):
            return uploads.get(ref)
        return examples_by_name.get(Path(str(ref)).name)

    def safe_status() -> dict:
        try:
            status = get_status()
            return status if isinstance(status, dict) else {}
        except Exception:  # noqa: BLE001 - the footer must never break the page
            log.exception("get_status failed")
            return {}

    def footer() -> str:
        return footer_html(safe_status(), latency.median())

    def shown(value: str):
        return gr.update(value=value, visible=bool(value))

    def cleared(message_html: str) -> tuple:
        """An error: the reason in the red box, and no trace of any earlier result."""
        blank = shown("")
        return (shown(message_html), blank, blank, blank, None, [], blank, blank, blank, None, footer(), "")

    def run(
        source: bytes | str, prior_report: str | None
    ) -> tuple[Prediction, Image.Image, ModelFacts | None, StudyInfo]:
        loaded = load_image(source, max_pixels=settings.max_pixels, max_working_pixels=settings.max_working_pixels)
        engine = get_engine()
        pred = engine.predict(loaded, prior_report or None)
        latency.add(float(pred.timings_ms.get("total", 0.0)))  # the total counts the decode done here
        display, _ = to_display_image(loaded.pixels)
        # boxes are in original pixels; the pixels may be a reduced-resolution decode (ImageMeta.reduction)
        annotated = draw_boxes(display, pred, display.width / max(1, loaded.meta.width))
        return pred, annotated, model_facts(engine), study_info(loaded)

    async def triage(
        ref: str | None, prior_report: str | None, accession: str | None = None, request: object = None
    ) -> tuple:
        accession = (accession or "").strip() or None
        if accession is not None and not re.match(KEY_PATTERN, accession):
            return cleared(error_html(ACCESSION_MESSAGE, title="Accession not accepted"))
        source = source_of(ref)
        if source is None:
            message = UPLOAD_EXPIRED_MESSAGE if is_upload_ref(ref) else NO_FILE_MESSAGE
            return cleared(error_html(message, title="No image"))
        try:
            async with slot():
                pred, annotated, facts, study = await anyio.to_thread.run_sync(run, source, prior_report)
        except ServiceBusyError:
            return cleared(error_html(BUSY_MESSAGE, title="The server is busy"))
        except InputError as exc:
            return cleared(error_html(str(exc)))
        except ModelError as exc:  # e.g. "the model is still loading; retry in a few seconds"
            log.warning("web UI: model not available: %s", exc)
            return cleared(error_html(str(exc), title="The model is not available"))
        except Exception:  # noqa: BLE001 - never show a stack trace to the user
            log.exception("triage failed in the web UI")
            return cleared(error_html(GENERIC_ERROR, title="Internal error"))
        # a failed write comes back as a warning on the result; the filing is on the audit trail
        pred, key = await anyio.to_thread.run_sync(
            file_ui_result, open_worklist, pred, study, accession, audit, request
        )
        data = pred.model_dump(mode="json")
        for crop in data["crops"]:
            crop.pop("thumb_path", None)  # server-side paths mean nothing in the browser
        return (
            shown(""),
            shown(label_html(pred)),
            shown(filed_html(key)),
            shown(explanation_html(pred, facts)),
            annotated,
            crop_gallery(pred),
            shown(warnings_html(pred)),
            shown(provenance_html(pred, similar_cases=False)),
            shown(details_html(pred, facts)),
            data,
            footer(),
            key or "",  # the reader-feedback panel follows it (serve/ui/feedback.py)
        )

    # delete_cache: the rendered images in Gradio's cache (the UI's files directory) go after RENDERED_MAX_AGE_S
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(300, int(RENDERED_MAX_AGE_S))) as blocks:
        user_bar = gr.HTML("", elem_id="cxr-user", visible=False)  # who is signed in, Sign out (serve/ui/user.py)
        gr.HTML(title_html())
        gr.HTML(disclaimer_html(), elem_id="cxr-disclaimer")
        with gr.Tabs(elem_id="cxr-tabs"):
            with gr.Tab("Triage", id="triage", elem_id="cxr-tab-triage") as triage_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        upload = gr.File(
                            label="Chest X-ray (PNG, JPEG or DICOM)",
                            file_count="single",
                            type="filepath",
                            elem_id="cxr-file",
                            height=140,
                        )
                        # what the triage receives: the upload's reference (or the example's name), copied in the
                        # browser
                        chosen = gr.Textbox(visible=False, elem_id="cxr-file-ref")
                        prior = gr.Textbox(
                            label="Prior report (optional)",
                            lines=5,
                            elem_id="cxr-prior",
                            placeholder="Paste the report of an earlier study, if any. It never "
                            "changes the score; disagreements are flagged for review.",
                        )
                        accession_box = gr.Textbox(
                            label="Accession (optional)",
                            max_lines=1,
                            elem_id="cxr-accession",
                            placeholder="Files the result on the worklist under this accession (else a random key)",
                        )
                        button = gr.Button("Triage", variant="primary", elem_id="cxr-triage")
                        if examples:
                            from cxrtriage.data import DEMO_PRIOR_REPORT

                            rows = [[str(p), DEMO_PRIOR_REPORT if i == 0 else ""] for i, p in enumerate(examples)]
                            gr.Examples(
                                examples=rows,
                                inputs=[upload, prior],
                                label=f"Examples: {examples_source or 'public datasets'}. "
                                "The first comes with a synthetic prior report.",
                                example_labels=[_example_label(str(p)) for p in examples],
                            )
                    with gr.Column(scale=5, min_width=420):
                        error = gr.HTML("", elem_id="cxr-error", visible=False)
                        label = gr.HTML(PLACEHOLDER_HTML, elem_id="cxr-label")
                        explanation = gr.HTML("", elem_id="cxr-explanation", visible=False)
                        with gr.Row(equal_height=False):
                            image = gr.Image(
                                label="Image with evidence boxes",
                                type="pil",
                                format="png",
                                interactive=False,
                                elem_id="cxr-image",
                                scale=3,
                                height=460,
                                buttons=["fullscreen"],
                            )
                            crops = gr.Gallery(
                                label="Evidence crops",
                                format="png",
                                columns=1,
                                object_fit="contain",
                                height=460,
                                elem_id="cxr-crops",
                                scale=2,
                                interactive=False,
                                buttons=["fullscreen"],
                            )
                        warnings = gr.HTML("", elem_id="cxr-warnings", visible=False)
                        provenance = gr.HTML("", elem_id="cxr-provenance", visible=False)
                        details = gr.HTML("", elem_id="cxr-details", visible=False)
                        filed = gr.HTML("", elem_id="cxr-filed", visible=False)
                        filed_key = build_feedback_panel(open_worklist, audit, prefix="cxr-fb")
                        with gr.Accordion("Full result (JSON)", open=False):
                            raw = gr.JSON(label="Prediction", elem_id="cxr-json")
            with gr.Tab("Worklist", id="worklist", elem_id="cxr-tab-worklist") as worklist_tab:
                wl_timer = build_worklist_tab(open_worklist, worklist_tab, others=[triage_tab], audit=audit)
            with gr.Tab("Monitoring", id="monitoring", elem_id="cxr-tab-monitoring") as monitoring_tab:
                build_monitoring_tab(settings, monitoring_tab, stop_timers=[wl_timer])  # drift (reader role)
        foot = gr.HTML(footer(), elem_id="cxr-footer")

        outputs = [error, label, filed, explanation, image, crops, warnings, provenance, details, raw, foot, filed_key]
        upload.change(None, inputs=upload, outputs=chosen, js="(f) => (f && f.path) ? f.path : ''")
        triage.__annotations__["request"] = gr.Request  # the class itself, so that gradio passes the request
        button.click(
            triage, inputs=[chosen, prior, accession_box], outputs=outputs, api_name=False, concurrency_limit=4
        )
        blocks.load(footer, inputs=None, outputs=foot, api_name=False)
        blocks.load(user_bar_event(), inputs=None, outputs=user_bar, api_name=False)
    return blocks


def _examples_for(data_dir: Path | None) -> tuple[list[str], str]:
    """Example images from the data layer (:func:`cxrtriage.data.examples_from`: the data directory's held-out test
    images, else the samples bundled in the package) and the words that say where they come from."""
    from cxrtriage.data import examples_from

    try:
        found = examples_from(Path(data_dir) if data_dir is not None and Path(data_dir).is_dir() else None)
    except Exception:  # noqa: BLE001 - a partial data folder (or an install without samples) only costs the examples
        log.warning("no UI examples: neither the data directory nor the bundled samples could be read", exc_info=True)
        return [], ""
    return [str(p) for p in found.paths if Path(p).is_file()], found.source


def _cache_files_in(blocks: gr.Blocks, directory: Path) -> None:
    """Point the cache of every built block at ``directory``: Gradio saves a component's rendered output to the
    component's ``GRADIO_CACHE`` (read from ``GRADIO_TEMP_DIR`` when the block is built; this sets it without
    touching the environment). Files copied while building (the example images, public data) stay where Gradio
    put them."""
    for block in (blocks, *blocks.blocks.values()):
        block.GRADIO_CACHE = str(directory)


def mount_ui(
    app,
    get_engine: Callable[[], Triage],
    get_status: Callable[[], dict],
    settings: Settings,
    *,
    slot: Callable[[], contextlib.AbstractAsyncContextManager] = _no_slot,
    worklist: Callable[[], Worklist] | None = None,
    audit: UiAudit | None = None,
) -> None:
    """Mount the UI at ``/ui`` on a FastAPI app with the service's ``settings`` (upload limit, crops and data
    directories, pixel limits; called by the service's ``create_app``, which also passes its one worklist and its
    audit log; without them, those of ``settings``, opened on first use).

    Uploads go to an in-memory store and Gradio's files (rendered images only) to ``<crops dir>/ui``; the routes
    of :func:`cxrtriage.serve.ui.uploads.install_ui_file_routes` replace Gradio's upload and file-serving routes.
    """
    from starlette.routing import Mount

    gr = _gradio()
    max_bytes = settings.max_upload_bytes
    files_dir = private_files_dir(settings.crops_dir)
    uploads = UploadStore(max_bytes=UPLOAD_BYTES_FACTOR * max_bytes)
    install_ui_file_routes(app, "/ui", uploads, files_dir, max_bytes)
    blocks = build_blocks(
        get_engine,
        get_status,
        *_examples_for(settings.find_data_dir()),
        uploads=uploads,
        slot=slot,
        worklist=worklist if worklist is not None else configured_worklist(settings),
        settings=settings,
        audit=audit,
    )
    _cache_files_in(blocks, files_dir)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/ui",
        theme=make_theme(),
        css=UI_CSS + WORKLIST_CSS + MONITOR_CSS,
        footer_links=["api"],
        max_file_size=max_bytes,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
    )
    mounted = next(r.app for r in reversed(app.routes) if isinstance(r, Mount) and r.path == "/ui")
    mounted.uploaded_file_dir = str(files_dir)  # what Gradio's app itself writes (deep-link state) stays in there too


def launch(
    get_engine: Callable[[], Triage],
    get_status: Callable[[], dict],
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
) -> None:
    """Serve the UI alone (without the REST API), at ``http://host:port/ui``, with the same upload handling and the
    launcher's ``settings`` (:mod:`demo_app.ui.gradio_app` builds them once, for the engine and the page)."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    mount_ui(app, get_engine, get_status, settings)
    app.add_api_route("/", lambda: RedirectResponse("/ui"), include_in_schema=False)
    uvicorn.run(app, host=host, port=port, log_level="info")
