"""The static browser page (``make browser``) gives the answer ``cxrtriage predict`` gives, on real files, and makes
no request while it triages.

Builds the page into a temporary folder, serves it with a plain static file server, opens it in headless Debian
Chromium (Playwright), sets the file input to 33 real shared files (NIH, pediatric, JSRT, Shenzhen, the three
DICOMs, two laterals) and compares ``#result-json`` with ``Triage.predict`` on the same files: same label (or both
refuse), score within 0.01, top evidence box IoU >= 0.5 where both show one. Skips, with the reason, when Chromium,
Playwright or npm (and an installed demo_app/browser/node_modules) is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrtriage.browser.build import build
from cxrtriage.browser.files import parity_files
from cxrtriage.browser.parity import compare, page_skip_reason, run_page, serve_folder

ROOT = Path(__file__).resolve().parents[2]

MAX_SCORE_DIFF = 0.01
MIN_TOP_BOX_IOU = 0.5
MAX_KNN_DIFF = 0.01

pytestmark = pytest.mark.data  # ~25 s: in `make test`, so CI runs it (issue 27: "the parity test passes in CI")


@pytest.fixture(scope="module")
def page_and_reference(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    reason = page_skip_reason(ROOT)
    if reason:
        pytest.skip(reason)
    files = parity_files(data_dir)
    folder = build(tmp_path_factory.mktemp("page") / "browser", ROOT)
    with serve_folder(folder) as url:
        page, late, _ = run_page(url, files)
    return files, page, late, compare(files, page)


def test_the_build_holds_everything_the_page_loads(page_and_reference) -> None:
    files, page, _, _ = page_and_reference
    assert len(page) == len(files) >= 30
    kinds = {p.suffix for p in files}
    assert {".png", ".jpeg", ".dcm"} <= kinds


def test_no_request_leaves_the_page_while_it_triages(page_and_reference) -> None:
    _, _, late, _ = page_and_reference
    assert late == [], f"requests made while triaging: {late}"


def test_same_label_and_score_as_predict(page_and_reference) -> None:
    _, _, _, rows = page_and_reference
    differ = [r for r in rows if not r["same_label"]]
    assert not differ, json.dumps(differ, indent=1)
    far = [r for r in rows if r.get("score_diff", 0.0) > MAX_SCORE_DIFF]
    assert not far, json.dumps(far, indent=1)
    assert sum("score_diff" in r for r in rows) >= 30


def test_same_similarity_review_flag_and_similar_cases_as_predict(page_and_reference) -> None:
    """The page runs the server's similarity check on the engine's index: the same statistic, the same review flag,
    the same three similar training films (or the same nearest one and near ties for the rest)."""
    _, _, _, rows = page_and_reference
    scored = [r for r in rows if "score_diff" in r]
    assert all(r["knn_similarity_diff"] <= MAX_KNN_DIFF for r in scored), json.dumps(scored, indent=1)
    differ = [r for r in scored if not (r["same_review_flag"] and r["similar_cases_agree"])]
    assert not differ, json.dumps(differ, indent=1)


def test_top_evidence_box_overlaps(page_and_reference) -> None:
    _, _, _, rows = page_and_reference
    low = [r for r in rows if r.get("top_box_iou", 1.0) < MIN_TOP_BOX_IOU]
    assert not low, json.dumps(low, indent=1)
    one_sided = [r for r in rows if "boxes" in r and (r["boxes"][0] == 0) != (r["boxes"][1] == 0)]
    assert not one_sided, json.dumps(one_sided, indent=1)


def test_a_lateral_film_is_refused_with_a_message(page_and_reference) -> None:
    files, page, _, _ = page_and_reference
    laterals = [p for f, p in zip(files, page) if "laterals" in f.parts]
    assert laterals and all(p.get("refused") and "lateral" in p["error"] for p in laterals)
