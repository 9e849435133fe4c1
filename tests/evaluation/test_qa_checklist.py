"""The specification's QA checklist script: what it finds in this repository, and that it notices what is missing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import qa_checklist  # noqa: E402


@pytest.mark.skipif(
    shutil.which("pdfinfo") is None or shutil.which("ffprobe") is None,
    reason="pdfinfo (poppler-utils) or ffprobe (ffmpeg) not installed",
)
def test_this_repository_passes_every_item(capsys):
    """CI runs the same command and fails on any missing item."""
    assert qa_checklist.main([]) == 0
    assert capsys.readouterr().out.count("PASS") == len(qa_checklist.ITEMS)


def test_an_expected_item_that_appears_fails_the_run_so_the_list_is_kept_short(tmp_path, capsys):
    (tmp_path / "CITATION.md").write_text("cite")
    (tmp_path / "LICENSE").write_text("Apache")
    (tmp_path / "TERMS.md").write_text("HAI-DEF Terms of Use")
    assert qa_checklist.main(["--root", str(tmp_path), "--expect-missing", "legal"]) == 1
    assert "remove from --expect-missing: legal" in capsys.readouterr().err


def test_missing_legal_files_and_readme_terms_are_named(tmp_path):
    (tmp_path / "LICENSE").write_text("Apache")
    (tmp_path / "TERMS.md").write_text("dataset terms only")
    ok, detail = qa_checklist.check_legal(tmp_path)
    assert not ok and "CITATION.md" in detail
    (tmp_path / "CITATION.md").write_text("cite")
    ok, detail = qa_checklist.check_legal(tmp_path)
    assert not ok and "HAI-DEF" in detail
    (tmp_path / "README.md").write_text("# x\nmake demo\n")
    ok, detail = qa_checklist.check_readme(tmp_path)
    assert not ok and "dataset terms" in detail and "HAI-DEF terms" in detail


def test_a_corrupted_bundled_model_fails_the_checkpoint_item(tmp_path):
    weights = tmp_path / "src" / "cxrtriage" / "weights"
    shutil.copytree(REPO / "src" / "cxrtriage" / "weights", weights)
    (tmp_path / "prototype" / "models").mkdir(parents=True)
    (tmp_path / "prototype" / "models" / "README_models.md").write_text("models")
    assert qa_checklist.check_checkpoint(tmp_path)[0]
    with (weights / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    ok, detail = qa_checklist.check_checkpoint(tmp_path)
    assert not ok and "sha256" in detail


@pytest.mark.skipif(shutil.which("pdfinfo") is None, reason="pdfinfo (poppler-utils) not installed")
def test_a_writeup_longer_than_three_pages_is_refused(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(tmp_path / "writeup.pdf") as pdf:
        for _ in range(4):
            fig = plt.figure()
            pdf.savefig(fig)
            plt.close(fig)
    ok, detail = qa_checklist.check_writeup(tmp_path)
    assert not ok and "4 pages" in detail
