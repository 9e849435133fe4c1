"""writeup.pdf: the challenge's limits and headings, and every number traceable to the file a command wrote (a
changed metrics file makes this fail until `make writeup` is run again)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cxrtriage.evaluation import writeup

ROOT = Path(__file__).resolve().parents[2]
PDF = ROOT / "writeup.pdf"
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
HEADINGS = ("Project name", "Your team", "Problem statement", "Overall solution", "Technical details")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def pdf_text() -> str:
    return _squash(subprocess.run(["pdftotext", str(PDF), "-"], capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((ROOT / writeup.NUMBERS_FILE).read_text())


@needs_poppler
def test_at_most_three_pages_and_about_1500_words(pdf_text):
    info = subprocess.run(["pdfinfo", str(PDF)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages <= 3
    assert len(pdf_text.split()) <= 1500


@needs_poppler
def test_template_headings_in_order_the_summary_verbatim_and_the_disclaimer(pdf_text):
    positions = [pdf_text.find(h) for h in HEADINGS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert "For clinical decision support only — not a diagnostic tool." in pdf_text
    spec = ROOT.parent / "shared" / "spec" / "000_04815da399bb1cce.txt"
    if spec.is_file():
        lines = (
            spec.read_text()
            .split("Short summary to include verbatim in README and writeup:")[1]
            .split("(You may paste")[0]
        )
        for line in filter(None, (ln.strip() for ln in lines.splitlines())):
            assert _squash(line) in pdf_text, line


@needs_poppler
def test_it_says_what_protects_the_data(pdf_text):
    for words in ("submitter", "reader", "admin", "OIDC", "sign-in page", "expiring", "audit verify", "TLS"):
        assert words in pdf_text, words
    assert "hash-chained audit trail" in pdf_text and "redacted from quoted prior reports" in pdf_text


@needs_poppler
def test_every_number_is_current_in_its_source_file_and_printed_in_the_pdf(pdf_text, record):
    assert len(record["numbers"]) >= 40
    for name, entry in record["numbers"].items():
        assert entry["written_by"] == writeup.WRITTEN_BY[entry["source"]]
        now = writeup.read_number(ROOT, name)
        assert now == entry["text"], (
            f"{name}: {entry['source']} now gives {now}, the PDF {entry['text']}: run `make writeup`"
        )
        assert entry["text"] in pdf_text, f"{name} ({entry['text']}) is not in writeup.pdf"


@needs_poppler
def test_every_figure_is_in_the_pdf(record):
    """The figures themselves are build outputs (git-ignored: the UI screenshot shows a dataset image)."""
    assert record["figures"] == [str(writeup.FIGURES_DIR / f) for f in writeup.FIGURES]
    images = subprocess.run(["pdfimages", "-list", str(PDF)], capture_output=True, text=True, check=True).stdout
    assert len([ln for ln in images.splitlines()[2:] if ln.strip()]) >= len(writeup.FIGURES)


def test_the_template_asks_only_for_numbers_that_have_a_source(tmp_path):
    book = writeup.NumberBook(ROOT)
    html = writeup.render_html(ROOT / writeup.TEMPLATE, book)
    assert "<h2>Technical details</h2>" in html and set(book.used) <= set(writeup.NUMBERS)
    with pytest.raises(KeyError, match="NUMBERS does not define"):
        book("a_number_nobody_measured")


def test_formats_read_what_the_files_hold():
    assert writeup.format_number(0.81818, "{:.2f}") == "0.82" and writeup.format_number(0.5, writeup.PCT) == "50%"
    assert writeup.format_number(2276, "{:,}") == "2,276"


def test_pacs_figure_puts_the_text_panels_left_and_the_image_right_within_the_width():
    from PIL import Image

    page, worklist, sc = Image.new("RGB", (1720, 980)), Image.new("RGB", (1500, 800)), Image.new("RGB", (900, 900))
    sheet = writeup.compose_pacs_figure(page, worklist, sc, gap=20, max_width=2400)
    assert sheet.width == 2400
    left_h = 980 + 20 + round(800 * 1720 / 1500)
    assert abs(sheet.height - round(left_h * 2400 / (1720 + 20 + left_h))) <= 1  # the image is as tall as both
    assert writeup.PACS_FIGURE_ACCESSION == "DEMO0001"  # the NIH film the demo's modality sends first
