"""``cxrtriage writeup``: the challenge write-up (``writeup.pdf``), rendered from a Markdown + Jinja template whose
every number is read from a file a command wrote.

* Numbers: the template asks for ``{{ n("name") }}``; :data:`NUMBERS` says which file and key each name comes from.
  Every number used is recorded in ``docs/writeup/numbers.json`` (text, value, file, key, the command that writes the
  file), so a test can re-read each one from its source and find it in the PDF.
* Figures: the architecture (drawn here), ROC and calibration of every test set in the results table from the
  per-image predictions ``make evaluate`` (NIH, pediatric) and ``cxrtriage evaluate-operating-points`` (Shenzhen)
  leave in ``runs/eval/`` (needs the data directory), and a screenshot of the real UI (a server is started and
  driven with Playwright and Debian's chromium).
* PDF: headless Chromium's print-to-PDF. It is already what the browser test uses, it lays out HTML tables and
  figures as a reader sees them, and it adds no TeX or Python PDF stack to the environment.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrtriage.evaluation import writeup_numbers
from cxrtriage.evaluation.live_server import CHROMIUM

# the numbers (writeup_numbers) are re-exported under the names the video and the tests have always used
from cxrtriage.evaluation.writeup_numbers import NUMBERS as NUMBERS
from cxrtriage.evaluation.writeup_numbers import PCT as PCT
from cxrtriage.evaluation.writeup_numbers import WRITTEN_BY as WRITTEN_BY
from cxrtriage.evaluation.writeup_numbers import NumberBook as NumberBook
from cxrtriage.evaluation.writeup_numbers import format_number as format_number
from cxrtriage.evaluation.writeup_numbers import other_models
from cxrtriage.evaluation.writeup_numbers import read_number as read_number
from cxrtriage.schema import DISCLAIMER

#: the synthetic prior report typed into the UI for the screenshot and the video
PRIOR_REPORT = "Comparison chest radiograph. Small left pleural effusion. No pneumothorax."
WRITEUP_DIR = Path("docs") / "writeup"
TEMPLATE = WRITEUP_DIR / "writeup.md.j2"
NUMBERS_FILE = WRITEUP_DIR / "numbers.json"
FIGURES_DIR = WRITEUP_DIR / "figures"
FIGURES = ("architecture.png", "roc.png", "calibration.png", "ui.png", "pacs.png")

# ----------------------------------------------------------------------------- figures


def architecture_figure(out: Path) -> Path:
    """The pipeline as boxes and arrows (the stages of ARCHITECTURE.md)."""
    from cxrtriage.evaluation.figures import pyplot

    plt = pyplot()
    from matplotlib.patches import FancyBboxPatch

    stages = [
        ("Input", "PNG, JPEG,\nDICOM + prior\nreport"),
        ("Gate", "decode,\npolarity,\nnot-a-chest"),
        ("Anatomy", "lung + heart\nU-Net,\nview probe"),
        ("Classifier", "int8 CNN or\nMedSigLIP\nprobe"),
        ("Decision", "calibrated\nscore, review\nband"),
        ("Evidence", "CAM boxes\nin the lungs,\nsimilar cases"),
        ("Report", "medspaCy,\nConText\nnegation"),
        ("MedGemma", "optional\nexplainer,\n2nd opinion"),
        ("Result", "JSON, REST,\nUI, CLI +\ndisclaimer"),
    ]
    fig, ax = plt.subplots(figsize=(11, 1.9))
    ax.set_axis_off()
    w, gap = 1.0, 0.22
    for i, (title, text) in enumerate(stages):
        x = i * (w + gap)
        colour = "#fdebd0" if title == "MedGemma" else "#d6eaf8" if title in ("Classifier", "Decision") else "#eaecee"
        ax.add_patch(FancyBboxPatch((x, 0), w, 1, boxstyle="round,pad=0.03", fc=colour, ec="#566573", lw=1))
        ax.text(x + w / 2, 0.8, title, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x + w / 2, 0.36, text, ha="center", va="center", fontsize=8.4, linespacing=1.25)
        if i:
            ax.annotate("", (x - 0.02, 0.5), (x - gap + 0.02, 0.5), arrowprops={"arrowstyle": "->", "lw": 1})
    ax.set_xlim(-0.1, len(stages) * (w + gap))
    ax.set_ylim(-0.1, 1.1)
    fig.savefig(out, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return out


#: the test sets the curves show: name, per-image predictions and gold labels (``<stem>_{preds,gold}.jsonl`` under
#: the checkout), and the report and block whose figures the results table quotes for that set
CURVE_SETS = (
    ("NIH adults", "runs/eval/nih_test", writeup_numbers.M, "nih_test"),
    ("pediatric", "runs/eval/pediatric_test", writeup_numbers.M, "pediatric_test"),
    ("Shenzhen adults", "runs/eval/operating_points/shenzhen_test", writeup_numbers.OP, "sets/shenzhen"),
)


def curve_sets(root: Path) -> dict[str, tuple[Any, Any]]:
    """``{name: (y_true, scores)}`` of every :data:`CURVE_SETS` set, read from the per-image files ``make evaluate``
    (NIH, pediatric) and ``cxrtriage evaluate-operating-points`` (Shenzhen) leave in ``runs/eval/``. Refuses files
    whose n or AUC differ from the report the table quotes (an older run, another model): a curve never shows other
    scores than the table's."""
    import numpy as np

    from cxrtriage.evaluation import metrics
    from cxrtriage.evaluation.gold import load_gold
    from cxrtriage.evaluation.prediction_files import load_predictions

    curves = {}
    for name, stem, report, key in CURVE_SETS:
        preds_path, gold_path = root / f"{stem}_preds.jsonl", root / f"{stem}_gold.jsonl"
        command = writeup_numbers.WRITTEN_BY[report]
        if not preds_path.is_file():
            raise FileNotFoundError(f"{preds_path} not found: run `{command}` first (needs the data directory)")
        gold, preds = load_gold(gold_path), load_predictions(preds_path)
        keys = [k for k in gold if k in preds.scored]
        y = np.array([gold[k]["y"] for k in keys])
        s = np.array([preds.scored[k]["score"] for k in keys])
        block = writeup_numbers.dig(json.loads((root / report).read_text(encoding="utf-8")), key)
        if len(y) != block["n"] or abs(metrics.roc_auc(y, s) - block["auc"]) > 1e-9:
            raise RuntimeError(f"{preds_path} does not give {report}'s {key} (n, AUC): run `{command}` again")
        curves[name] = (y, s)
    return curves


def curve_figures(root: Path, out_dir: Path, threshold: float) -> tuple[Path, Path]:
    """ROC with each set's point at the shipped threshold, and one reliability diagram of every set (the same
    colours), from :func:`curve_sets`; each sized to half the page's width so that legends stay legible."""
    from cxrtriage.evaluation import figures

    plt = figures.pyplot()
    curves = curve_sets(root)
    roc, cal = out_dir / "roc.png", out_dir / "calibration.png"
    fig, ax = plt.subplots(figsize=(4.8, 2.8))
    figures.roc_plot(curves, thresholds=dict.fromkeys(curves, threshold), ax=ax)
    fig.savefig(roc, dpi=200, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.8, 2.45))  # its legend stands above the axes: the same height as the ROC
    figures.reliability_curves(curves, ax=ax)
    fig.savefig(cal, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return roc, cal


#: the study the PACS figure shows: the first PNG the demo's modality sends, an urgent NIH ChestX-ray14 test film
#: (public domain) with synthetic identifiers (:func:`cxrtriage.pacs.stack_inputs.demo_inputs`); the other studies
#: hold the shared DICOM samples, whose images this page does not show
PACS_FIGURE_ACCESSION = "DEMO0001"


def _study_for_figure(orthanc_base: str, accession: str = PACS_FIGURE_ACCESSION) -> tuple[str, str]:
    """The Orthanc study with ``accession`` holding the radiograph and both cxrtriage series: its ID and the
    Secondary Capture instance's ID."""
    from cxrtriage.pacs.stack_tools import http_get

    def get(path: str) -> Any:
        return json.loads(http_get(orthanc_base + path, timeout=10))

    for study in get("/studies?expand"):
        if study["MainDicomTags"].get("AccessionNumber") != accession:
            continue
        series = {x["MainDicomTags"].get("SeriesDescription", ""): x for x in get(f"/studies/{study['ID']}/series")}
        sc = next((x for d, x in series.items() if d.startswith("cxrtriage AI evidence")), None)
        if sc is not None and any(d.startswith("cxrtriage AI triage (") for d in series):
            return study["ID"], sc["Instances"][0]
    raise RuntimeError(f"no study with accession {accession} holds both cxrtriage series in Orthanc")


def compose_pacs_figure(
    study_page: Any, worklist: Any, secondary_capture: Any, gap: int = 24, max_width: int = 2400
) -> Any:
    """One picture that stays readable at print size: Orthanc's study page above the Worklist tab on the left (the
    text), the Secondary Capture on the right at the height of both (the image). PIL images in, a PIL image out, at
    most ``max_width`` px wide (about 350 dpi across the printed page)."""
    from PIL import Image

    width = max(study_page.width, worklist.width)
    left = [im.resize((width, round(im.height * width / im.width)), Image.LANCZOS) for im in (study_page, worklist)]
    height = left[0].height + gap + left[1].height
    sc = secondary_capture.resize(
        (round(secondary_capture.width * height / secondary_capture.height), height), Image.LANCZOS
    )
    sheet = Image.new("RGB", (width + gap + sc.width, height), "white")
    sheet.paste(left[0], (0, 0))
    sheet.paste(left[1], (0, left[0].height + gap))
    sheet.paste(sc, (width + gap, 0))
    if sheet.width > max_width:
        sheet = sheet.resize((max_width, round(sheet.height * max_width / sheet.width)), Image.LANCZOS)
    return sheet


def pacs_screenshot(out: Path, data_dir: Path, timeout_s: float = 120.0) -> Path:
    """The hospital flow of ``make pacs-demo`` (:func:`cxrtriage.pacs.stack.pacs_stack`: a real Orthanc, the DICOM
    node, storescu): Orthanc's page of the study holding an NIH radiograph with cxrtriage's SR and Secondary Capture,
    the UI's Worklist tab, and the Secondary Capture itself (:func:`compose_pacs_figure`). Pages are captured at twice
    the pixel density, and Orthanc's page at a narrow width, so that its text is legible on the printed page."""
    from PIL import Image

    from cxrtriage.evaluation.live_server import CHROMIUM_ARGS, open_ui
    from cxrtriage.optional import require
    from cxrtriage.pacs.stack import Ports, pacs_stack

    sync_api = require("playwright.sync_api", extra="dev", purpose="the PACS screenshot")
    shots = [out.with_name(f".pacs-{i}.png") for i in range(3)]
    with pacs_stack(data_dir, Ports.free()) as stack, sync_api.sync_playwright() as p:
        study, sc = _study_for_figure(stack.orthanc_base)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(  # the stack's web service requires its API key: every request of the page sends it
            viewport={"width": 860, "height": 600},
            device_scale_factor=2,
            extra_http_headers={"X-API-Key": stack.api_key or ""},
        )
        page.set_default_timeout(timeout_s * 1000)
        page.goto(f"{stack.orthanc_base}/app/explorer.html#study?uuid={study}", wait_until="networkidle")
        page.wait_for_timeout(800)
        # the header, the patient and study boxes and the three series; not the Interact / Access buttons below
        page.screenshot(path=str(shots[0]), clip={"x": 0, "y": 0, "width": 860, "height": 492})
        page.goto(f"{stack.orthanc_base}/instances/{sc}/preview", wait_until="networkidle")
        page.locator("img").first.screenshot(path=str(shots[2]))
        page.set_viewport_size({"width": 1280, "height": 900})
        open_ui(page, stack.ui_base)
        page.get_by_role("tab", name="Worklist").click()
        page.locator("#cxr-worklist tr[data-key]").first.wait_for(state="visible")
        page.wait_for_timeout(800)
        page.locator("#cxr-worklist").screenshot(path=str(shots[1]))
        browser.close()
    images = [Image.open(s).convert("RGB") for s in shots]
    compose_pacs_figure(*images).save(out)
    for s in shots:
        s.unlink()
    return out


# ----------------------------------------------------------------------------- rendering

CSS = """
@page { size: A4; margin: 13mm 14mm 13mm 14mm; }
body { font-family: "DejaVu Sans", sans-serif; font-size: 8.6pt; line-height: 1.32; color: #1b2631; }
h1 { font-size: 15pt; margin: 0 0 2pt 0; } h2 { font-size: 10.5pt; margin: 7pt 0 2pt 0; \
border-bottom: 1px solid #aab7b8; }
h3 { font-size: 9pt; margin: 5pt 0 1pt 0; } p { margin: 2pt 0 4pt 0; } ul { margin: 1pt 0 4pt 0; padding-left: 14pt; }
li { margin: 0 0 1pt 0; } table { border-collapse: collapse; margin: 3pt 0 5pt 0; font-size: 7.8pt; }
th, td { border: 1px solid #aab7b8; padding: 1.5pt 4pt; text-align: left; } th { background: #eaecee; }
td:nth-child(n+2) { white-space: nowrap; }
img { display: block; margin: 3pt auto; } img.wide { width: 100%; } img.pacs { width: 92%; }
img.roc, img.cal { width: 49%; display: inline-block; }
img.ui { width: 86%; } blockquote { margin: 2pt 0 5pt 0; padding: 3pt 8pt; background: #fef9e7; \
border-left: 3px solid #f4d03f; }
.disclaimer { font-weight: bold; color: #922b21; } code { font-size: 7.8pt; }
.caption { font-size: 7.6pt; color: #566573; text-align: center; margin-top: 0; }
"""


def render_markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def render_html(template: Path, book: NumberBook) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,
        # the Markdown keeps raw HTML (render_markdown), so every value is HTML-escaped as it goes in: a number or
        # the disclaimer can never add markup (the write-up's figures and text render byte-identical either way)
        autoescape=True,
        keep_trailing_newline=True,
    )
    md = env.get_template(template.name).render(n=book, disclaimer=DISCLAIMER)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>cxrtriage write-up</title><style>{CSS}</style>"
        f"</head><body>{render_markdown(md)}</body></html>"
    )


def html_to_pdf(html_path: Path, pdf_path: Path, chromium: str = CHROMIUM) -> Path:
    if not Path(chromium).is_file():
        raise FileNotFoundError(f"{chromium} not found (apt-get install chromium): it prints the write-up to PDF")
    subprocess.run(  # noqa: S603 - chromium at a fixed path, argument list, no shell
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    return pdf_path


def build_writeup(
    root: Path,
    out_pdf: Path,
    *,
    data_dir: Path | None,
    figures: bool = True,
    screenshot: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Figures (unless told not to), HTML, PDF and the numbers' record; returns the record. Refuses, before any
    figure is made, when the files it quotes measured different models (e.g. a new export without `make bench`)."""
    book = NumberBook(root)
    render_html(root / TEMPLATE, book)
    stale = other_models(root, {entry["source"] for entry in book.used.values()})
    if stale:
        raise RuntimeError("these files measured another model than model.json's: " + "; ".join(stale))
    fig_dir = root / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    if figures:
        architecture_figure(fig_dir / "architecture.png")
        curve_figures(root, fig_dir, float(book("threshold")))
        log("figures: architecture, ROC, calibration")
    if screenshot:
        if data_dir is None:
            raise FileNotFoundError("the UI screenshot triages an NIH example: give the data directory")
        from cxrtriage.evaluation.screenshots import ui_screenshot

        ui_screenshot(root, fig_dir / "ui.png", data_dir, PRIOR_REPORT)
        log("figure: UI screenshot")
        pacs_screenshot(fig_dir / "pacs.png", data_dir)
        log("figure: PACS flow (Orthanc, Secondary Capture, Worklist tab)")
    missing = [f for f in FIGURES if not (fig_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"figures missing in {fig_dir}: {', '.join(missing)}")
    book = NumberBook(root)
    html = render_html(root / TEMPLATE, book)
    html_path = root / WRITEUP_DIR / "writeup.html"
    html_path.write_text(html, encoding="utf-8")
    html_to_pdf(html_path, out_pdf)
    record = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "make writeup",
        "template": str(TEMPLATE),
        "pdf": str(out_pdf.relative_to(root) if out_pdf.is_relative_to(root) else out_pdf),
        "figures": [str(FIGURES_DIR / f) for f in FIGURES],
        "numbers": book.used,
    }
    (root / NUMBERS_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"{out_pdf}: {len(book.used)} numbers from {len({v['source'] for v in book.used.values()})} files")
    return record
