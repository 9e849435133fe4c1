"""``cxrtriage writeup``: the challenge write-up (``writeup.pdf``), rendered from a Markdown + Jinja template whose
every number is read from a file a command wrote.

* Numbers: the template asks for ``{{ n("name") }}``; :data:`NUMBERS` says which file and key each name comes from.
  Every number used is recorded in ``docs/writeup/numbers.json`` (text, value, file, key, the command that writes the
  file), so a test can re-read each one from its source and find it in the PDF.
* Figures: the architecture (drawn here), ROC and calibration from the per-image predictions ``make evaluate``
  leaves in ``runs/eval/`` (needs the data directory), and a screenshot of the real UI (a server is started and
  driven with Playwright and Debian's chromium).
* PDF: headless Chromium's print-to-PDF. It is already what the browser test uses, it lays out HTML tables and
  figures as a reader sees them, and it adds no TeX or Python PDF stack to the environment.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.live_server import CHROMIUM
from cxrtriage.schema import DISCLAIMER

#: the synthetic prior report typed into the UI for the screenshot and the video
PRIOR_REPORT = "Comparison chest radiograph. Small left pleural effusion. No pneumothorax."
WRITEUP_DIR = Path("docs") / "writeup"
TEMPLATE = WRITEUP_DIR / "writeup.md.j2"
NUMBERS_FILE = WRITEUP_DIR / "numbers.json"
FIGURES_DIR = WRITEUP_DIR / "figures"
FIGURES = ("architecture.png", "roc.png", "calibration.png", "ui.png", "pacs.png")

#: the commands that write each source file (the README's table)
WRITTEN_BY = {
    "prototype/eval/metrics.json": "make evaluate",
    "prototype/eval/anatomy_eval.json": "make evaluate",
    "prototype/eval/generalisation.json": "make generalisation",
    "prototype/eval/bench_results.json": "make bench",
    "prototype/eval/hai_def_bench.json": "make bench-hai-def",
    "prototype/eval/loadtest.json": "make loadtest",
    "prototype/eval/notebook_timings.json": "make notebooks PROFILE=full",
    "src/cxrtriage/weights/model.json": "make export / cxrtriage fit-finding-probe",
    "prototype/eval/pacs_demo.json": "make pacs-check",
}
M, A, G, B, H, L, T, J = (
    "prototype/eval/metrics.json",
    "prototype/eval/anatomy_eval.json",
    "prototype/eval/generalisation.json",
    "prototype/eval/bench_results.json",
    "prototype/eval/hai_def_bench.json",
    "prototype/eval/loadtest.json",
    "prototype/eval/notebook_timings.json",
    "src/cxrtriage/weights/model.json",
)
P = "prototype/eval/pacs_demo.json"
F3, F2, F0, PCT = "{:.3f}", "{:.2f}", "{:.0f}", "pct"
#: name -> (file, key path with "/" between levels, format); ``pct`` formats a fraction as a whole percentage
NUMBERS: dict[str, tuple[str, str, str]] = {
    "nih_n": (M, "nih_test/n", "{}"),
    "nih_n_pos": (M, "nih_test/n_pos", "{}"),
    "nih_auc": (M, "nih_test/auc", F3),
    "nih_auc_lo": (M, "nih_test/auc_ci95/0", F3),
    "nih_auc_hi": (M, "nih_test/auc_ci95/1", F3),
    "nih_sens": (M, "nih_test/operating_point/sensitivity", F3),
    "nih_spec": (M, "nih_test/operating_point/specificity", F3),
    "nih_sens_pct": (M, "nih_test/operating_point/sensitivity", PCT),
    "nih_spec_pct": (M, "nih_test/operating_point/specificity", PCT),
    "nih_spec95": (M, "nih_test/specificity_at_sensitivity_0.95", F3),
    "nih_ece": (M, "nih_test/ece", F3),
    "ped_n": (M, "pediatric_test/n", "{}"),
    "ped_n_pos": (M, "pediatric_test/n_pos", "{}"),
    "ped_auc": (M, "pediatric_test/auc", F3),
    "ped_auc_lo": (M, "pediatric_test/auc_ci95/0", F3),
    "ped_auc_hi": (M, "pediatric_test/auc_ci95/1", F3),
    "ped_sens": (M, "pediatric_test/operating_point/sensitivity", F3),
    "ped_spec": (M, "pediatric_test/operating_point/specificity", F3),
    "ped_sens_pct": (M, "pediatric_test/operating_point/sensitivity", PCT),
    "ped_spec_pct": (M, "pediatric_test/operating_point/specificity", PCT),
    "ped_spec95": (M, "pediatric_test/specificity_at_sensitivity_0.95", F3),
    "ped_ece": (M, "pediatric_test/ece", F3),
    "threshold": (M, "threshold", "{:.4f}"),
    "jsrt_n": (A, "jsrt_test/normal/n", "{}"),
    "jsrt_non_urgent": (A, "jsrt_test/normal/non_urgent", "{}"),
    "jsrt_spec": (A, "jsrt_test/normal/specificity", F3),
    "jsrt_nod_n": (A, "jsrt_test/nodule/n", "{}"),
    "jsrt_nod_non_urgent": (A, "jsrt_test/nodule/non_urgent", "{}"),
    "jsrt_nod_spec": (A, "jsrt_test/nodule/specificity", F3),
    "seed_jsrt_spec_min": (G, "seed_spread/jsrt/specificity_at_threshold/min", F2),
    "seed_jsrt_spec_max": (G, "seed_spread/jsrt/specificity_at_threshold/max", F2),
    "loso_jsrt_spec": (G, "leave_one_source_out/ablation_no_nih/test/jsrt/specificity_at_threshold/left_out_run", F2),
    "review_lo": (M, "review_band/0", F3),
    "review_hi": (M, "review_band/1", F3),
    "nih_review": (M, "nih_test/needs_review_fraction", PCT),
    "ped_review": (M, "pediatric_test/needs_review_fraction", PCT),
    "atyp_n": (A, "frontal_gate/nih_test_made_atypical/n", "{}"),
    "atyp_review": (A, "frontal_gate/nih_test_made_atypical/review", "{}"),
    "atyp_text_crops": (A, "frontal_gate/nih_test_made_atypical/crop_centres_on_burned_in_text", "{}"),
    "rsna_pointing": (A, "rsna_localisation/validation_and_test_patients/pointing_game_top_crop", F2),
    "rsna_n_opacity": (A, "rsna_localisation/validation_and_test_patients/n_opacity", "{}"),
    "crops_off_lungs": (A, "rsna_localisation/validation_and_test_patients/crops_off_lungs", "{}"),
    "crops_total": (A, "rsna_localisation/validation_and_test_patients/crops_total", "{}"),
    "laterals_n": (J, "view_probe/validation/laterals", "{}"),
    "laterals_refused": (J, "view_probe/validation/cv5_laterals_refused", "{}"),
    "laterals_review": (J, "view_probe/validation/cv5_laterals_review", "{}"),
    "laterals_passed": (J, "view_probe/validation/cv5_laterals_passed_as_frontal", "{}"),
    "frontal_refused": (J, "view_probe/validation/cv5_frontal_refused", "{}"),
    "frontal_n": (J, "view_probe/validation/frontal_fit_images", "{:,}"),
    "seed_nih_auc_mean": (G, "seed_spread/nih/auc/mean", F3),
    "seed_nih_auc_min": (G, "seed_spread/nih/auc/min", F3),
    "seed_nih_auc_max": (G, "seed_spread/nih/auc/max", F3),
    "seed_n": (G, "seed_spread/nih/auc/n", "{}"),
    "seed_nih_spec95_mean": (G, "seed_spread/nih/specificity_at_sensitivity_0.95/mean", F3),
    "ens_nih_auc": (G, "ensemble_of_seed_runs/nih/auc", F3),
    "loso_ped_auc": (G, "leave_one_source_out/ablation_nih_only/test/kermany/auc/left_out_run", F3),
    "loso_nih_auc": (G, "leave_one_source_out/ablation_no_nih/test/nih/auc/left_out_run", F3),
    "p50_ms": (B, "end_to_end/p50_ms", F0),
    "p95_ms": (B, "end_to_end/p95_ms", F0),
    "model_ms": (B, "model_int8_onnx/p50_ms", "{:.1f}"),
    "segment_ms": (B, "end_to_end_breakdown_p50_ms/segment", F0),
    "model_mb": (B, "model_int8_size_mb", F2),
    "files_mb": (B, "bundled_model_files_mb", "{:.1f}"),
    "rss_mb": (B, "peak_rss_mb_onnx_path", F0),
    "siglip_int8_s": (H, "medsiglip_vision/ort_int8_dynamic/median_s", F2),
    "siglip_bf16_s": (H, "medsiglip_vision/torch_bf16/median_s", F2),
    "gguf_token_s": (H, "medgemma_gguf/per_token_s", F2),
    "gguf_mb": (H, "medgemma_gguf/size_mb/text_Q4_K_M", F0),
    "opacity_auc": (J, "finding_probes/lung_opacity/held_out/auc", F3),
    "model_version": (J, "version", "{}"),
    "pacs_sent": (P, "sent", "{}"),
    "pacs_triaged": (P, "status/triaged", "{}"),
    "pacs_not_triaged": (P, "status/not_triaged", "{}"),
    "pacs_answer_s": (P, "status/answer_s_median", F2),
}


def _dig(data: Any, key: str) -> Any:
    for part in key.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def format_number(value: Any, fmt: str) -> str:
    return f"{100 * value:.0f}%" if fmt == PCT else fmt.format(value)


@dataclass
class NumberBook:
    """Looks numbers up in their source files and remembers every one the template used."""

    root: Path

    def __post_init__(self) -> None:
        self.used: dict[str, dict] = {}
        self._files: dict[str, Any] = {}

    def __call__(self, name: str) -> str:
        if name not in NUMBERS:
            raise KeyError(f"the write-up asks for {name!r}, which NUMBERS does not define")
        path, key, fmt = NUMBERS[name]
        if path not in self._files:
            self._files[path] = json.loads((self.root / path).read_text(encoding="utf-8"))
        value = _dig(self._files[path], key)
        text = format_number(value, fmt)
        self.used[name] = {"text": text, "value": value, "source": path, "key": key, "written_by": WRITTEN_BY[path]}
        return text


def read_number(root: Path, name: str) -> str:
    """A number of the write-up re-read from its source file now (what the test compares with the PDF)."""
    path, key, fmt = NUMBERS[name]
    return format_number(_dig(json.loads((root / path).read_text(encoding="utf-8")), key), fmt)


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


def curve_figures(root: Path, out_dir: Path, threshold: float) -> tuple[Path, Path]:
    """ROC (both test sets) and calibration (NIH adults) from ``runs/eval/*_test_{preds,gold}.jsonl``."""
    import numpy as np

    from cxrtriage.evaluation import figures
    from cxrtriage.evaluation.gold import load_gold
    from cxrtriage.evaluation.prediction_files import load_predictions

    plt = figures.pyplot()
    curves = {}
    for name, stem in (("NIH adult test", "nih_test"), ("pediatric test", "pediatric_test")):
        preds_path, gold_path = (
            root / "runs" / "eval" / f"{stem}_preds.jsonl",
            root / "runs" / "eval" / f"{stem}_gold.jsonl",
        )
        if not preds_path.is_file():
            raise FileNotFoundError(f"{preds_path} not found: run `make evaluate` first (needs the data directory)")
        gold, preds = load_gold(gold_path), load_predictions(preds_path)
        keys = [k for k in gold if k in preds.scored]
        curves[name] = (np.array([gold[k]["y"] for k in keys]), np.array([preds.scored[k]["score"] for k in keys]))
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    figures.roc_plot(curves, thresholds={"NIH adult test": threshold}, ax=ax)
    roc = out_dir / "roc.png"
    fig.savefig(roc, dpi=200, bbox_inches="tight")
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2))
    for ax, (name, (y, s)) in zip(axes, curves.items()):
        figures.reliability_plot(y, s, name=name, ax=ax)
        ax.set_title(f"Calibration, {name} (10 bins)", fontsize=9)
    cal = out_dir / "calibration.png"
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
img { display: block; margin: 3pt auto; } img.wide { width: 100%; } img.pacs { width: 92%; }
img.roc { width: 33%; display: inline-block; }
img.cal { width: 66%; display: inline-block; }
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
    """Figures (unless told not to), HTML, PDF and the numbers' record; returns the record."""
    fig_dir = root / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    book = NumberBook(root)
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
