"""Run the built browser page in headless Chromium on real files and compare it with ``Triage.predict``: the parity
check of ``tests/browser/test_browser_parity.py`` and ``scripts/browser_parity.py`` (which writes
``prototype/eval/browser_parity.json``). Playwright and Chromium are test tools, imported only here, when called.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 120_000
#: how far the page's similarities may be from predict's (the score's tolerance of the issue)
SIMILARITY_TOLERANCE = 0.01


def page_skip_reason(root: Path) -> str | None:
    """Why the page cannot run here (no Chromium, no Playwright, no onnxruntime-web to vendor), or None."""
    import importlib.util
    import shutil

    from cxrtriage.browser.build import VENDOR_FILES, page_source

    if not CHROMIUM.is_file():
        return f"{CHROMIUM} missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (the [dev] extra)"
    modules = page_source(root) / "node_modules"
    if not all((modules / name).is_file() for name in VENDOR_FILES) and shutil.which("npm") is None:
        return "demo_app/browser/node_modules is not installed and npm is missing (cannot vendor onnxruntime-web)"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A static file server on a free loopback port for ``folder`` (what ``python -m http.server`` does)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def run_page(url: str, files: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str], float]:
    """Load the page, triage each file through its file input; (results from #result-json, URLs requested after the
    page was ready, seconds the page took to become ready)."""
    from playwright.sync_api import sync_playwright

    results: list[dict[str, Any]] = []
    late: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
            ready_s = time.perf_counter() - t0
            page.on("request", lambda req: late.append(req.url))
            for i, path in enumerate(files, start=1):
                page.set_input_files("#file", str(path))
                page.wait_for_selector(f"body[data-done='{i}']", timeout=TIMEOUT_MS)
                results.append(json.loads(page.text_content("#result-json") or "{}"))
        finally:
            browser.close()
    return results, late, ready_s


def iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Intersection over union of two boxes given as x, y, w, h."""
    x0, y0 = max(a["x"], b["x"]), max(a["y"], b["y"])
    x1, y1 = min(a["x"] + a["w"], b["x"] + b["w"]), min(a["y"] + a["h"], b["y"] + b["h"])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a["w"] * a["h"] + b["w"] * b["h"] - inter
    return inter / union if union > 0 else 0.0


def compare(files: Sequence[Path], page_results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per file: the page's label/score/top box against ``Triage.predict`` on the same file."""
    from cxrtriage.pipeline import Triage

    with tempfile.TemporaryDirectory() as crops_dir:  # the thumbnails predict writes, removed at once
        return _compare(Triage(crops_dir=crops_dir), files, page_results)


def _compare(engine: Any, files: Sequence[Path], page_results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from cxrtriage.errors import NotAChestXrayError

    rows = []
    for path, page in zip(files, page_results):
        row: dict[str, Any] = {"file": f"{path.parent.name}/{path.name}"}
        try:
            ref = engine.predict(path).model_dump()
        except NotAChestXrayError as exc:
            ref = {"refused": True, "error": str(exc)}
        row["python"] = {k: ref.get(k) for k in ("label", "score", "needs_review", "refused")}
        row["browser"] = {k: page.get(k) for k in ("label", "score", "needs_review", "refused", "error")}
        row["browser_ms"] = (page.get("timings_ms") or {}).get("total")
        if "score" in ref and "score" in page:
            row["same_label"] = ref["label"] == page["label"]
            row["same_review_flag"] = ref["needs_review"] == page["needs_review"]
            row["score_diff"] = round(abs(ref["score"] - page["score"]), 6)
            sims = [(r.get("image") or {}).get("knn_similarity") for r in (ref, page)]
            if None not in sims:
                row["knn_similarity_diff"] = round(abs(sims[0] - sims[1]), 6)
            row["same_similar_cases"] = [c for c, _ in _cases(ref)] == [c for c, _ in _cases(page)]
            row["similar_cases_agree"] = cases_agree(_cases(ref), _cases(page))
            ref_crops, page_crops = ref.get("crops") or [], page.get("crops") or []
            row["boxes"] = [len(ref_crops), len(page_crops)]
            if ref_crops and page_crops:
                row["top_box_iou"] = round(iou(ref_crops[0], page_crops[0]), 4)
        else:
            row["same_label"] = bool(ref.get("refused")) and bool(page.get("refused"))
        rows.append(row)
    return rows


def _cases(result: dict[str, Any]) -> list[tuple[str, float]]:
    """The similar training cases a result names, with their similarity, in its order."""
    return [
        (p["source"], p["similarity"]) for p in result.get("provenance") or [] if p.get("relation") == "similar_case"
    ]


def cases_agree(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = SIMILARITY_TOLERANCE) -> bool:
    """Two lists of similar cases name the same nearest case, and any case only one of them names is a near tie:
    its similarity within ``tol`` of the other list's last (the page's WebAssembly kernels move the embedding, and so
    every similarity, by up to about a thousandth)."""
    if [c for c, _ in a] == [c for c, _ in b]:
        return True
    if not a or not b or a[0][0] != b[0][0]:
        return False
    only_a = [sim for c, sim in a if c not in dict(b)]
    only_b = [sim for c, sim in b if c not in dict(a)]
    return all(abs(sim - b[-1][1]) <= tol for sim in only_a) and all(abs(sim - a[-1][1]) <= tol for sim in only_b)


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures the README quotes: agreement, the largest score difference, top-box overlap, speed."""
    scored = [r for r in rows if "score_diff" in r]
    ious = [r["top_box_iou"] for r in rows if "top_box_iou" in r]
    times = sorted(r["browser_ms"] for r in rows if r.get("browser_ms") is not None)
    return {
        "files": len(rows),
        "scored_by_both": len(scored),
        "same_label": sum(bool(r["same_label"]) for r in rows),
        "max_score_diff": max((r["score_diff"] for r in scored), default=None),
        "same_review_flag": sum(bool(r.get("same_review_flag")) for r in scored),
        "max_knn_similarity_diff": max(
            (r["knn_similarity_diff"] for r in scored if "knn_similarity_diff" in r), default=None
        ),
        "same_similar_cases": sum(bool(r.get("same_similar_cases")) for r in scored),
        "similar_cases_agree": sum(bool(r.get("similar_cases_agree")) for r in scored),
        "top_box_pairs": len(ious),
        "top_box_iou_min": min(ious, default=None),
        "top_box_iou_below_0_5": sum(v < 0.5 for v in ious),
        "box_count_differs": sum(r["boxes"][0] != r["boxes"][1] for r in scored),
        "browser_ms_median": times[len(times) // 2] if times else None,
        "browser_ms_max": times[-1] if times else None,
    }
