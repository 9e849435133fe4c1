"""What the web UI shows, as pure functions: the result's HTML (label, explanation, warnings, provenance, footer,
error box), the image with its numbered evidence boxes, the crop gallery, and the page's CSS.

The main view is in words a radiologist reads at a glance: the label and what it means, the explanation, the
anatomy, the finding outputs that may be named, the prior report's quotes. The numbers behind it (score, threshold,
strengths, finding outputs and their AUCs, similar cases) are in the Details toggle of
:mod:`cxrtriage.serve.ui.details`, each with its meaning; a number left in the main view carries its meaning beside
it. Colours never say "all clear": Urgent is red (also when it needs review), a Non-Urgent result sent for review is
amber, and a plain Non-Urgent result and a finding the prior report calls absent are neutral, not green.

No Gradio here: :mod:`cxrtriage.serve.ui.app` builds the page from these. Only the pixels and the non-identifying
fields of the :class:`cxrtriage.schema.Prediction` are rendered; text is HTML-escaped.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxrtriage.explain.text import label_sense
from cxrtriage.schema import DISCLAIMER, UNVALIDATED_SITE_NOTE, Crop, Prediction
from cxrtriage.serve.ui.details import DETAILS_CSS, ModelFacts, nameable_findings_line, similar_cases_html

log = logging.getLogger(__name__)

TITLE = "cxrtriage — chest X-ray triage"
HAI_DEF_NOTICE = "Uses Google HAI-DEF models under the Health AI Developer Foundations terms of use"
#: the rendered result images (in the UI's files directory) are deleted after this many seconds
RENDERED_MAX_AGE_S = 900.0
#: longest side of the image shown on the page (the model and the boxes use the full-size image)
DISPLAY_MAX_SIDE = 1024
#: outline colours of the evidence boxes 1, 2, 3 (also used for the gallery captions' numbering)
BOX_COLOURS = ("#ffb000", "#00d5ff", "#ff4fd8")

UI_CSS = (
    """
.cxr-disclaimer {background:#fff4d6; border:2px solid #b7791f; color:#5c3d00; border-radius:8px;
  padding:10px 14px; font-weight:700; font-size:1.05rem;}
.cxr-title h1 {margin:0 0 2px 0; font-size:1.7rem;}
.cxr-sub {color:#555; font-size:0.92rem; margin:0;}
.cxr-label {border-radius:10px; padding:14px 18px; font-size:1.6rem; font-weight:800; letter-spacing:0.01em;
  color:#fff; line-height:1.25;}
.cxr-label .cxr-sense {font-weight:700; font-size:1.25rem; color:#fff !important;}
.cxr-label .cxr-review {display:inline-block; margin-left:10px; padding:2px 10px; border-radius:999px;
  background:rgba(0,0,0,0.22); font-size:1rem; vertical-align:middle;}
.cxr-urgent {background:#c53030;}
.cxr-nonurgent {background:#2c5282;}
.cxr-amber {background:#c05621;}
.cxr-placeholder {border:2px dashed #bbb; border-radius:10px; padding:14px 18px; color:#666; font-size:1.05rem;}
.cxr-error {background:#fff5f5; border:2px solid #c53030; color:#9b2c2c; border-radius:8px; padding:12px 16px;
  font-weight:600;}
.cxr-error .cxr-error-title {font-size:1.1rem; margin-bottom:4px;}
.cxr-explanation {font-size:1.05rem; margin:2px 0;}
.cxr-warnings {background:#fffbea; border-left:4px solid #d69e2e; padding:8px 12px; border-radius:4px;}
.cxr-warnings ul {margin:4px 0 0 18px;}
.cxr-prov h4 {margin:12px 0 4px 0 !important; font-size:1.05rem;}
/* provenance tables: the Triage tab's result and the Worklist tab's stored result */
:is(#cxr-provenance, #cxr-wl-study, #cxr-details) .cxr-prov table {border-collapse:collapse !important; width:100%;
  font-size:0.93rem; border:none !important; margin:0 !important;}
:is(#cxr-provenance, #cxr-wl-study, #cxr-details) .cxr-prov :is(tr, thead, tbody) {border:none !important;
  background:none !important;}
:is(#cxr-provenance, #cxr-wl-study, #cxr-details) .cxr-prov :is(td, th) {border:none !important;
  border-bottom:1px solid #e2e2e2 !important; padding:5px 8px !important; text-align:left;
  vertical-align:middle !important;}
:is(#cxr-provenance, #cxr-wl-study, #cxr-details) .cxr-prov th {font-weight:700; color:#444;}
:is(#cxr-provenance, #cxr-wl-study, #cxr-details) blockquote {margin:0 !important; padding:0 0 0 10px !important;
  border-left:3px solid #cbd5e0; font-style:italic;}
:is(#cxr-provenance, #cxr-wl-study, #cxr-details) td.cxr-rel-cell {width:7.5em; white-space:nowrap;}
.cxr-rel {display:inline-block; padding:1px 8px; border-radius:999px; font-size:0.82rem; font-weight:700; color:#fff;}
.cxr-rel-supports {background:#c53030;}
.cxr-rel-contradicts {background:#4a5568;}
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
.cxr-cases-note {font-size:0.9rem; color:#444; margin:2px 0 4px 0;}
"""
    + DETAILS_CSS
)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_display_image(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> tuple[Image.Image, float]:
    """Float [0, 1] grey pixels -> 8-bit RGB PIL image no larger than ``max_side``, and the scale applied."""
    arr = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    img = Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8), mode="L").convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS
        )
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
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        pad = max(2, width)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        ty = y0 - th if y0 - th >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw, ty + th], fill=colour)
        draw.text((x0 + pad - left, ty + pad - top), tag, fill="#000000", font=font)
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
        items.append((thumb, crop_caption(i, crop)))
    return items


def crop_caption(i: int, crop: Crop) -> str:
    """``Box 2 — right lower zone``: named like the numbered box on the image (gallery and worklist alike). No bare
    number: a box's strength is in Details, with what it means."""
    caption = f"Box {i + 1} — {crop.region or 'evidence region'}"
    if crop.source == "medgemma":
        caption += " (MedGemma's box, generative, unverified)"
    return caption


def label_html(pred: Prediction) -> str:
    """The banner: the label and what it means in words ("URGENT — likely abnormal"), no score (Details has it).
    Urgent is red whether or not it needs review (amber would read as less urgent); Non-Urgent sent for review is
    amber; plain Non-Urgent is a neutral blue, never a reassuring green."""
    urgent = pred.label == "Urgent"
    text = "URGENT" if urgent else "NON-URGENT"
    cls = "cxr-urgent" if urgent else ("cxr-amber" if pred.needs_review else "cxr-nonurgent")
    sense = label_sense(pred.label, pred.needs_review)
    review = str(pred.needs_review).lower()
    return (
        f'<div class="cxr-label {cls}" data-label="{_esc(pred.label)}" data-needs-review="{review}">'
        f'{text} <span class="cxr-sense">— {_esc(sense)}</span></div>'
    )


PLACEHOLDER_HTML = (
    '<div class="cxr-placeholder">Upload a frontal chest X-ray and press <b>Triage</b>. The result appears here.</div>'
)


def error_html(message: str, title: str = "This image was not triaged") -> str:
    return (
        f'<div class="cxr-error" role="alert"><div class="cxr-error-title">{_esc(title)}</div>'
        f"<div>{_esc(message)}</div></div>"
    )


def anatomy_line(pred: Prediction) -> str:
    """One plain line from the segmentation: the lungs found and the cardiothoracic ratio with its caveat."""
    a = pred.anatomy
    if not a:
        return ""
    found = a.get("lungs_found") or []
    lungs = (
        "both lungs found"
        if len(found) == 2
        else (f"only the {found[0]} lung found" if found else "no lung field found")
    )
    ctr = a.get("cardiothoracic_ratio")
    ratio = (
        f"; cardiothoracic ratio {ctr:.2f} (the heart's width over the chest's, measured on the segmentation)"
        f"{_ctr_caveat(pred)}"
        if isinstance(ctr, (int, float))
        else ""
    )
    return f"Anatomy: {lungs}{ratio}."


def _ctr_caveat(pred: Prediction) -> str:
    """The magnification caveat, only where it can apply: an AP film, or one whose view the file does not record
    (a PNG, a DICOM without ViewPosition). A film recorded as PA gets none, so the caveat keeps its meaning."""
    view = str((pred.image or {}).get("view_position") or "").upper()
    if view == "PA":
        return ""
    if view == "AP":
        return "; an AP film magnifies the heart: read it with care"
    return "; the view is not recorded: an AP or supine film magnifies the heart"


def explanation_text(pred: Prediction) -> str:
    """The explanation as the page shows it under the banner: without its opening "<label> — <sense>", which the
    banner already says (an explanation that does not open with it, e.g. MedGemma's, is shown whole)."""
    text = pred.explanation.strip()
    opening = f"{pred.label} — {label_sense(pred.label, pred.needs_review)}"
    if not text.startswith(opening):
        return text
    rest = text[len(opening) :].lstrip(":;.").strip()
    return rest[:1].upper() + rest[1:] if rest else ""


def explanation_html(pred: Prediction, facts: ModelFacts | None = None) -> str:
    """The explanation, the anatomy line and the finding outputs that may be named (``facts``: the model's
    metadata, which says when an output suggests its finding; without it none is shown here)."""
    lines = (anatomy_line(pred), nameable_findings_line(pred, facts))
    extra = "".join(f'<p class="cxr-anatomy">{_esc(line)}</p>' for line in lines if line)
    text = explanation_text(pred)
    return (f'<p class="cxr-explanation">{_esc(text)}</p>' if text else "") + extra


def warnings_html(pred: Prediction) -> str:
    if not pred.warnings:
        return ""
    items = "".join(f"<li>{_esc(w)}</li>" for w in pred.warnings)
    return f'<div class="cxr-warnings"><b>Warnings</b><ul>{items}</ul></div>'


#: what a quoted prior-report sentence says about its urgent finding, in the reader's words: "supports" and
#: "contradicts" could be read as agreeing or disagreeing with the AI, which is not what they mean
RELATION_WORDS = {
    "supports": ("report: present", "the prior report affirms this urgent finding"),
    "contradicts": ("report: absent", "the prior report denies this urgent finding"),
    "uncertain": ("report: uncertain", "the prior report raises this urgent finding as uncertain"),
}


def _relation_badge(relation: str | None) -> str:
    kind = relation if relation in RELATION_WORDS else "other"
    text, title = RELATION_WORDS.get(relation or "", (relation or "mentioned", "mentioned in the prior report"))
    return f'<span class="cxr-rel cxr-rel-{kind}" title="{_esc(title)}">{_esc(text)}</span>'


def provenance_html(pred: Prediction, *, similar_cases: bool = True) -> str:
    """Prior-report quotes (with their relation) and, unless ``similar_cases`` is False (the Triage tab, whose
    Details holds them), the most similar training cases with what their numbers mean."""
    report = [p for p in pred.provenance if p.source == "prior_report"]
    cases = [p for p in pred.provenance if p.source.startswith("training_case:")]
    other = [p for p in pred.provenance if p not in report and p not in cases]
    parts = ['<div class="cxr-prov">']
    parts.append("<h4>Prior report</h4>")
    if report:
        rows = "".join(
            f'<tr><td class="cxr-rel-cell">{_relation_badge(p.relation)}</td>'
            f"<td><blockquote>“{_esc(p.snippet)}”</blockquote></td></tr>"
            for p in report
        )
        parts.append(f"<table><tbody>{rows}</tbody></table>")
    else:
        parts.append("<p>No prior-report sentence about an urgent finding (or no prior report given).</p>")
    if similar_cases:
        parts.append("<h4>Most similar training cases</h4>")
        parts.append(similar_cases_html(pred))
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


def site_line(site: object) -> str:
    """The operating point in use, in words: the site profile's name, date and sample size, or the bundled one."""
    info = site if isinstance(site, dict) else {}
    if not info.get("name"):
        return f"Operating point: {info.get('note') or UNVALIDATED_SITE_NOTE}."
    return f"Site profile {info['name']} (commissioned {info.get('created')} on {info.get('n_cases')} films)."


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
    parts = [
        '<div class="cxr-footer">',
        f'<div class="cxr-stats">{_size_label(backend)}: <span id="cxr-size">{size}</span> MB; '
        f'inference time: <span id="cxr-latency">{latency}</span> ms on this machine'
        f"{' (median)' if latency != '–' else ''}"
        f"{f' · model {_esc(name)}' if name else ''}{f' · backend {_esc(backend)}' if backend else ''}</div>",
    ]
    parts.append(f'<div class="cxr-site" id="cxr-site">{_esc(site_line(status.get("site")))}</div>')
    if backend and backend != "bundled":
        parts.append(f'<div class="cxr-haidef">{_esc(HAI_DEF_NOTICE)}.</div>')
    parts.append(f"<div>{_esc(DISCLAIMER)}</div></div>")
    return "".join(parts)


def title_html() -> str:
    """The page heading and its one-line summary."""
    return (
        f'<div class="cxr-title"><h1>{_esc(TITLE)}</h1>'
        '<p class="cxr-sub">Offline urgency triage of frontal chest radiographs, with evidence regions and '
        "provenance.</p></div>"
    )


def disclaimer_html() -> str:
    """The disclaimer, always visible at the top of the page."""
    return f'<div class="cxr-disclaimer" role="note">⚠ {_esc(DISCLAIMER)}</div>'
