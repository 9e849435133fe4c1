"""Browser UI (Gradio): upload a chest X-ray (PNG, JPEG or DICOM) and an optional prior report, press Triage.

The normal way to run it is ``cxrtriage serve``, which mounts it at ``/ui`` on the FastAPI service
(:func:`mount_ui`); ``python -m demo_app.ui.gradio_app`` runs it alone at ``/ui``. Gradio is an optional dependency
(``pip install 'cxrtriage[demo]'``) and is imported only inside the functions here.

Design rules:

* **Offline**: Gradio analytics are off, the theme uses system fonts only (no Google Fonts) and the page
  loads nothing from outside the server (checked by ``tests/test_ui_browser.py``).
* **Safety**: the disclaimer is always visible at the top; a result in the review band is shown in amber
  with "needs review"; a rejected input clears the previous result and shows the reason in a red box,
  never a stack trace.
* **Privacy**: only the pixels and the non-identifying metadata of :class:`cxrtriage.imaging.load.ImageMeta` are
  shown; nothing else from a DICOM header ever reaches the page. Uploads are held in memory by an opaque
  reference, never stored under their name and never served back; the UI serves rendered images from
  ``<crops dir>/ui`` and nothing else (:mod:`cxrtriage.serve.webui_uploads`).
"""

from __future__ import annotations

import contextlib
import html
import logging
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import anyio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxrtriage.errors import InputError, ModelError, ServiceBusyError
from cxrtriage.optional import require
from cxrtriage.schema import DISCLAIMER, Prediction
from cxrtriage.serve.webui_uploads import (
    UPLOAD_BYTES_FACTOR, UploadStore, install_ui_file_routes, is_upload_ref, private_files_dir,
)

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from cxrtriage.pipeline import Triage

log = logging.getLogger(__name__)

TITLE = "cxrtriage — chest X-ray triage"
HAI_DEF_NOTICE = "Uses Google HAI-DEF models under the Health AI Developer Foundations terms of use"
NO_FILE_MESSAGE = "Please upload a chest X-ray first (PNG, JPEG or DICOM)."
UPLOAD_EXPIRED_MESSAGE = ("This upload is no longer held by the server (uploads are kept in memory for a limited "
                          "time). Please upload the image again.")
BUSY_MESSAGE = "The server is busy with other images; nothing was triaged. Please try again in a few seconds."
GENERIC_ERROR = ("Something went wrong while analysing this image; nothing was triaged. "
                 "Please try again, and contact the administrator if it keeps happening.")
#: the rendered result images (in the UI's files directory) are deleted after this many seconds
RENDERED_MAX_AGE_S = 900.0
#: longest side of the image shown on the page (the model and the boxes use the full-size image)
DISPLAY_MAX_SIDE = 1024
#: outline colours of the evidence boxes 1, 2, 3 (also used for the gallery captions' numbering)
BOX_COLOURS = ("#ffb000", "#00d5ff", "#ff4fd8")

UI_CSS = """
.cxr-disclaimer {background:#fff4d6; border:2px solid #b7791f; color:#5c3d00; border-radius:8px;
  padding:10px 14px; font-weight:700; font-size:1.05rem;}
.cxr-title h1 {margin:0 0 2px 0; font-size:1.7rem;}
.cxr-sub {color:#555; font-size:0.92rem; margin:0;}
.cxr-label {border-radius:10px; padding:14px 18px; font-size:1.6rem; font-weight:800; letter-spacing:0.01em;
  color:#fff; line-height:1.25;}
.cxr-label .cxr-score {font-weight:600; font-size:1.1rem; opacity:0.95;}
.cxr-label .cxr-review {display:inline-block; margin-left:10px; padding:2px 10px; border-radius:999px;
  background:rgba(0,0,0,0.22); font-size:1rem; vertical-align:middle;}
.cxr-urgent {background:#c53030;}
.cxr-nonurgent {background:#2f855a;}
.cxr-amber {background:#c05621;}
.cxr-placeholder {border:2px dashed #bbb; border-radius:10px; padding:14px 18px; color:#666; font-size:1.05rem;}
.cxr-error {background:#fff5f5; border:2px solid #c53030; color:#9b2c2c; border-radius:8px; padding:12px 16px;
  font-weight:600;}
.cxr-error .cxr-error-title {font-size:1.1rem; margin-bottom:4px;}
.cxr-explanation {font-size:1.05rem; margin:2px 0;}
.cxr-warnings {background:#fffbea; border-left:4px solid #d69e2e; padding:8px 12px; border-radius:4px;}
.cxr-warnings ul {margin:4px 0 0 18px;}
.cxr-prov h4 {margin:12px 0 4px 0 !important; font-size:1.05rem;}
#cxr-provenance table {border-collapse:collapse !important; width:100%; font-size:0.93rem; border:none !important;
  margin:0 !important;}
#cxr-provenance tr, #cxr-provenance thead, #cxr-provenance tbody {border:none !important; background:none !important;}
#cxr-provenance td, #cxr-provenance th {border:none !important; border-bottom:1px solid #e2e2e2 !important;
  padding:5px 8px !important; text-align:left; vertical-align:middle !important;}
#cxr-provenance th {font-weight:700; color:#444;}
#cxr-provenance blockquote {margin:0 !important; padding:0 0 0 10px !important; border-left:3px solid #cbd5e0;
  font-style:italic;}
#cxr-provenance td.cxr-rel-cell {width:7.5em; white-space:nowrap;}
.cxr-rel {display:inline-block; padding:1px 8px; border-radius:999px; font-size:0.82rem; font-weight:700; color:#fff;}
.cxr-rel-supports {background:#c53030;}
.cxr-rel-contradicts {background:#2f855a;}
.cxr-rel-uncertain {background:#b7791f;}
.cxr-rel-other {background:#4a5568;}
/* evidence crops: stacked, all in view, each row the same share of the gallery height */
#cxr-crops .grid-wrap {overflow:hidden !important;}
#cxr-crops .grid-container {height:100% !important; box-sizing:border-box; grid-auto-rows:minmax(0, 1fr) !important;}
#cxr-crops .gallery-item {min-height:0 !important; height:100% !important;}
#cxr-crops .thumbnail-item {aspect-ratio:auto !important; height:100% !important; width:100% !important;}
.cxr-footer {color:#444; font-size:0.9rem; border-top:1px solid #ddd; padding-top:8px;}
/* an upload is held in memory and never served back: its name and size are shown, but not as a download link */
#cxr-file a[download] {pointer-events:none; color:inherit !important; text-decoration:none;}
.cxr-footer .cxr-haidef {margin-top:4px;}
"""


def _gradio():
    """Gradio, or :class:`cxrtriage.optional.MissingDependency` (an ImportError) naming the ``[demo]`` extra."""
    return require("gradio", extra="demo", purpose="the web UI")


def make_theme():
    """Gradio's default theme with system fonts only: nothing is fetched from font CDNs."""
    gr = _gradio()
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


# --------------------------------------------------------------------------------------------- rendering


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_display_image(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> tuple[Image.Image, float]:
    """Float [0, 1] grey pixels -> 8-bit RGB PIL image no larger than ``max_side``, and the scale applied."""
    arr = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    img = Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8), mode="L").convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
    return img, scale


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 or no FreeType: bitmap default font
        return ImageFont.load_default()


def draw_boxes(img: Image.Image, pred: Prediction, scale: float) -> Image.Image:
    """Outline each evidence box (original-image pixels, scaled to the display image) with its number."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width = max(2, round(side / 256))
    font = _font(max(12, round(side / 32)))
    for i, crop in enumerate(pred.crops):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        x0, y0 = crop.x * scale, crop.y * scale
        x1, y1 = (crop.x + crop.w) * scale, (crop.y + crop.h) * scale
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        tag = str(i + 1)
        l, t, r, b = draw.textbbox((0, 0), tag, font=font)
        pad = max(2, width)
        tw, th = r - l + 2 * pad, b - t + 2 * pad
        ty = y0 - th if y0 - th >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw, ty + th], fill=colour)
        draw.text((x0 + pad - l, ty + pad - t), tag, fill="#000000", font=font)
    return out


def crop_gallery(pred: Prediction) -> list[tuple[Image.Image, str]]:
    """The crop thumbnails as (image, caption) pairs, numbered like the boxes."""
    items = []
    for i, crop in enumerate(pred.crops):
        try:
            with Image.open(crop.thumb_path) as im:
                thumb = im.convert("RGB")
        except OSError:
            log.warning("crop thumbnail %s could not be read", crop.thumb_path)
            continue
        caption = f"{i + 1}. {crop.region or 'evidence region'}"
        if crop.source == "medgemma":
            caption += " (MedGemma's box, generative, unverified)"
        if crop.strength is not None:
            caption += f" (strength {crop.strength:.2f})"
        items.append((thumb, caption))
    return items


def label_html(pred: Prediction) -> str:
    text = "URGENT" if pred.label == "Urgent" else "NON-URGENT"
    cls = "cxr-amber" if pred.needs_review else ("cxr-urgent" if pred.label == "Urgent" else "cxr-nonurgent")
    review = '<span class="cxr-review">needs review</span>' if pred.needs_review else ""
    return (f'<div class="cxr-label {cls}" data-label="{_esc(pred.label)}">{text} '
            f'<span class="cxr-score">— score {pred.score:.2f} (threshold {pred.threshold:.2f})</span>{review}</div>')


PLACEHOLDER_HTML = ('<div class="cxr-placeholder">Upload a frontal chest X-ray and press <b>Triage</b>. '
                    "The result appears here.</div>")


def error_html(message: str, title: str = "This image was not triaged") -> str:
    return (f'<div class="cxr-error" role="alert"><div class="cxr-error-title">{_esc(title)}</div>'
            f"<div>{_esc(message)}</div></div>")


def explanation_html(pred: Prediction) -> str:
    return f'<p class="cxr-explanation">{_esc(pred.explanation)}</p>'


def warnings_html(pred: Prediction) -> str:
    if not pred.warnings:
        return ""
    items = "".join(f"<li>{_esc(w)}</li>" for w in pred.warnings)
    return f'<div class="cxr-warnings"><b>Warnings</b><ul>{items}</ul></div>'


def _case_label(snippet: str) -> str:
    for label in ("Non-Urgent", "Urgent"):
        if f"labelled {label}" in snippet:
            return label
    return ""


def _relation_badge(relation: str | None) -> str:
    kind = relation if relation in {"supports", "contradicts", "uncertain"} else "other"
    return f'<span class="cxr-rel cxr-rel-{kind}">{_esc(relation or "mentioned")}</span>'


def provenance_html(pred: Prediction) -> str:
    """Prior-report quotes (with their relation) and the most similar training cases."""
    report = [p for p in pred.provenance if p.source == "prior_report"]
    cases = [p for p in pred.provenance if p.source.startswith("training_case:")]
    other = [p for p in pred.provenance if p not in report and p not in cases]
    parts = ['<div class="cxr-prov">']
    parts.append("<h4>Prior report</h4>")
    if report:
        rows = "".join(f'<tr><td class="cxr-rel-cell">{_relation_badge(p.relation)}</td>'
                       f"<td><blockquote>“{_esc(p.snippet)}”</blockquote></td></tr>" for p in report)
        parts.append(f"<table><tbody>{rows}</tbody></table>")
    else:
        parts.append("<p>No prior-report sentence about an urgent finding (or no prior report given).</p>")
    parts.append("<h4>Most similar training cases</h4>")
    if cases:
        rows = "".join(
            f"<tr><td><code>{_esc(p.source.split(':', 1)[1])}</code></td><td>{_esc(_case_label(p.snippet))}</td>"
            f"<td>{'' if p.similarity is None else f'{p.similarity:.2f}'}</td></tr>"
            for p in cases)
        parts.append("<table><thead><tr><th>training case (ID only)</th><th>label</th><th>cosine similarity</th></tr>"
                     f"</thead><tbody>{rows}</tbody></table>")
    else:
        parts.append("<p>No similar-case index in this model.</p>")
    for p in other:
        parts.append(f"<p>[{_esc(p.source)}] {_esc(p.relation or '')}: {_esc(p.snippet)}</p>")
    parts.append("</div>")
    return "".join(parts)


def _fmt_number(value: Any, digits: int) -> str:
    try:
        if value is None:
            return "–"
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    if not np.isfinite(number):
        return "–"
    return f"{number:.{digits}f}"


def backend_of(status: dict) -> str | None:
    model = status.get("model") if isinstance(status.get("model"), dict) else {}
    return status.get("backend") or model.get("backend")


#: backends whose whole model is one quantised ONNX file; the others report their weight files on disk
_ONNX_BACKENDS = frozenset({"bundled", "medsiglip-onnx"})


def _size_label(backend: str | None) -> str:
    return "quantized ONNX size" if backend is None or backend in _ONNX_BACKENDS else "model files on disk"


def footer_html(status: dict, local_median_ms: float | None = None) -> str:
    """Model size and the median latency measured by this running instance ("–" before the first request)."""
    size = _fmt_number(status.get("model_size_mb"), 2)
    median = status.get("median_latency_ms")
    if median is None:
        median = local_median_ms
    latency = _fmt_number(median, 0)
    model = dict(status.get("model")) if isinstance(status.get("model"), dict) else {}
    for key in ("name", "version"):  # the service's /status has flat model_name / model_version
        model.setdefault(key, status.get(f"model_{key}"))
    name = " ".join(str(model[k]) for k in ("name", "version") if model.get(k))
    backend = backend_of(status)
    parts = ['<div class="cxr-footer">',
             f'<div class="cxr-stats">{_size_label(backend)}: <span id="cxr-size">{size}</span> MB; '
             f'inference time: <span id="cxr-latency">{latency}</span> ms on this machine'
             f"{' (median)' if latency != '–' else ''}"
             f"{f' · model {_esc(name)}' if name else ''}{f' · backend {_esc(backend)}' if backend else ''}</div>"]
    if backend and backend != "bundled":
        parts.append(f'<div class="cxr-haidef">{_esc(HAI_DEF_NOTICE)}.</div>')
    parts.append(f"<div>{_esc(DISCLAIMER)}</div></div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------- the app


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


def build_blocks(get_engine: Callable[[], "Triage"], get_status: Callable[[], dict],
                 examples: list[str] | None = None, *, uploads: UploadStore | None = None,
                 slot: Callable[[], contextlib.AbstractAsyncContextManager] = _no_slot) -> "gr.Blocks":
    """The triage page. Theme and CSS are applied where it is served (:func:`mount_ui`, :func:`launch`).

    ``uploads`` holds what the browser uploaded (see :mod:`cxrtriage.serve.webui_uploads`): the page sends the triage
    its opaque reference, never a path. An example is named by its file name and read from the data directory,
    so no path chosen by the client is ever opened. ``slot`` is the service's inference queue, shared with the
    REST API, so the UI cannot overload the machine behind the API's back.
    """
    gr = _gradio()
    from cxrtriage.imaging.load import load_image

    latency = _LocalLatency()
    uploads = uploads if uploads is not None else UploadStore()
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
        return (shown(message_html), shown(""), shown(""), None, [], shown(""), shown(""), None, footer())

    def run(source: bytes | str, prior_report: str | None) -> tuple[Prediction, Image.Image]:
        t0 = time.perf_counter()
        loaded = load_image(source)
        decode_ms = (time.perf_counter() - t0) * 1e3
        pred = get_engine().predict(loaded, prior_report or None)
        latency.add(decode_ms + float(pred.timings_ms.get("total", 0.0)))
        display, _ = to_display_image(loaded.pixels)
        # boxes are in original pixels; the pixels may be a reduced-resolution decode (ImageMeta.reduction)
        return pred, draw_boxes(display, pred, display.width / max(1, loaded.meta.width))

    async def triage(ref: str | None, prior_report: str | None) -> tuple:
        source = source_of(ref)
        if source is None:
            message = UPLOAD_EXPIRED_MESSAGE if is_upload_ref(ref) else NO_FILE_MESSAGE
            return cleared(error_html(message, title="No image"))
        try:
            async with slot():
                pred, annotated = await anyio.to_thread.run_sync(run, source, prior_report)
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
        data = pred.model_dump(mode="json")
        for crop in data["crops"]:
            crop.pop("thumb_path", None)  # server-side paths mean nothing in the browser
        return (shown(""), shown(label_html(pred)), shown(explanation_html(pred)), annotated, crop_gallery(pred),
                shown(warnings_html(pred)), shown(provenance_html(pred)), data, footer())

    # delete_cache: the rendered images in Gradio's cache (the UI's files directory) go after RENDERED_MAX_AGE_S
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(300, int(RENDERED_MAX_AGE_S))) as blocks:
        gr.HTML(f'<div class="cxr-title"><h1>{_esc(TITLE)}</h1>'
                '<p class="cxr-sub">Offline urgency triage of frontal chest radiographs, with evidence regions and '
                "provenance.</p></div>")
        gr.HTML(f'<div class="cxr-disclaimer" role="note">⚠ {_esc(DISCLAIMER)}</div>', elem_id="cxr-disclaimer")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                upload = gr.File(label="Chest X-ray (PNG, JPEG or DICOM)", file_count="single", type="filepath",
                                 elem_id="cxr-file", height=140)
                # what the triage receives: the upload's reference (or the example's name), copied in the browser
                chosen = gr.Textbox(visible=False, elem_id="cxr-file-ref")
                prior = gr.Textbox(label="Prior report (optional)", lines=5, elem_id="cxr-prior",
                                   placeholder="Paste the report of an earlier study, if any. It never changes the "
                                               "score; disagreements are flagged for review.")
                button = gr.Button("Triage", variant="primary", elem_id="cxr-triage")
                if examples:
                    from cxrtriage.data import DEMO_PRIOR_REPORT

                    rows = [[str(p), DEMO_PRIOR_REPORT if i == 0 else ""] for i, p in enumerate(examples)]
                    gr.Examples(examples=rows, inputs=[upload, prior],
                                label="Examples (public datasets; first with a synthetic prior report)",
                                example_labels=[_example_label(str(p)) for p in examples])
            with gr.Column(scale=5, min_width=420):
                error = gr.HTML("", elem_id="cxr-error", visible=False)
                label = gr.HTML(PLACEHOLDER_HTML, elem_id="cxr-label")
                explanation = gr.HTML("", elem_id="cxr-explanation", visible=False)
                with gr.Row(equal_height=False):
                    image = gr.Image(label="Image with evidence boxes", type="pil", format="png", interactive=False,
                                     elem_id="cxr-image", scale=3, height=460, buttons=["fullscreen"])
                    crops = gr.Gallery(label="Evidence crops", format="png", columns=1, object_fit="contain",
                                       height=460, elem_id="cxr-crops", scale=2, interactive=False,
                                       buttons=["fullscreen"])
                warnings = gr.HTML("", elem_id="cxr-warnings", visible=False)
                provenance = gr.HTML("", elem_id="cxr-provenance", visible=False)
                with gr.Accordion("Full result (JSON)", open=False):
                    raw = gr.JSON(label="Prediction", elem_id="cxr-json")
        foot = gr.HTML(footer(), elem_id="cxr-footer")

        outputs = [error, label, explanation, image, crops, warnings, provenance, raw, foot]
        upload.change(None, inputs=upload, outputs=chosen, js="(f) => (f && f.path) ? f.path : ''")
        button.click(triage, inputs=[chosen, prior], outputs=outputs, api_name=False, concurrency_limit=4)
        blocks.load(footer, inputs=None, outputs=foot, api_name=False)
    return blocks


def _examples_for(data_dir: Path | None) -> list[str]:
    """Example images from the data layer (:func:`cxrtriage.data.example_paths`), or none without data."""
    from cxrtriage.data import example_paths

    if data_dir is None or not Path(data_dir).is_dir():
        return []
    try:
        paths = example_paths(Path(data_dir))
    except Exception:  # noqa: BLE001 - a partial data folder only costs the examples
        log.warning("no UI examples: the data directory could not be read", exc_info=True)
        return []
    return [str(p) for p in paths if Path(p).is_file()]


def _settings_data_dir(settings: Any) -> Path | None:
    from cxrtriage import config

    value = getattr(settings, "data_dir", None) if settings is not None else None
    return Path(value) if value else config.data_dir()


def _max_upload_bytes(settings: Any) -> int:
    for attr, factor in (("max_upload_bytes", 1), ("max_upload_mb", 1024 * 1024)):
        value = getattr(settings, attr, None) if settings is not None else None
        if isinstance(value, (int, float)) and value > 0:
            return int(value * factor)
    return 32 * 1024 * 1024


def _cache_files_in(blocks: "gr.Blocks", directory: Path) -> None:
    """Point the cache of every built block at ``directory``: Gradio saves a component's rendered output to the
    component's ``GRADIO_CACHE`` (read from ``GRADIO_TEMP_DIR`` when the block is built; this sets it without
    touching the environment). Files copied while building (the example images, public data) stay where Gradio
    put them."""
    for block in (blocks, *blocks.blocks.values()):
        block.GRADIO_CACHE = str(directory)


def mount_ui(app, get_engine: Callable[[], "Triage"], get_status: Callable[[], dict], settings=None, *,
             slot: Callable[[], contextlib.AbstractAsyncContextManager] = _no_slot) -> None:
    """Mount the UI at ``/ui`` on a FastAPI app (called by the service's ``create_app``).

    Uploads go to an in-memory store and Gradio's files (rendered images only) to ``<crops dir>/ui``; the routes
    of :func:`cxrtriage.serve.webui_uploads.install_ui_file_routes` replace Gradio's upload and file-serving routes.
    """
    from starlette.routing import Mount

    gr = _gradio()
    max_bytes = _max_upload_bytes(settings)
    files_dir = private_files_dir(getattr(settings, "crops_dir", None) if settings is not None else None)
    uploads = UploadStore(max_bytes=UPLOAD_BYTES_FACTOR * max_bytes)
    install_ui_file_routes(app, "/ui", uploads, files_dir, max_bytes)
    blocks = build_blocks(get_engine, get_status, _examples_for(_settings_data_dir(settings)), uploads=uploads,
                          slot=slot)
    _cache_files_in(blocks, files_dir)
    gr.mount_gradio_app(app, blocks, path="/ui", theme=make_theme(), css=UI_CSS, footer_links=["api"],
                        max_file_size=max_bytes, ssr_mode=False, mcp_server=False, pwa=False)
    mounted = next(r.app for r in reversed(app.routes) if isinstance(r, Mount) and r.path == "/ui")
    mounted.uploaded_file_dir = str(files_dir)  # what Gradio's app itself writes (deep-link state) stays in there too


def launch(get_engine: Callable[[], "Triage"], get_status: Callable[[], dict], *, host: str = "127.0.0.1",
           port: int = 7860, data_dir: str | Path | None = None) -> None:
    """Serve the UI alone (without the REST API), at ``http://host:port/ui``, with the same upload handling."""
    import types

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    mount_ui(app, get_engine, get_status, types.SimpleNamespace(data_dir=data_dir, crops_dir=None))
    app.add_api_route("/", lambda: RedirectResponse("/ui"), include_in_schema=False)
    uvicorn.run(app, host=host, port=port, log_level="info")
