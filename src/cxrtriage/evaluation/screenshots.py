"""The README's quick-start screenshot and the reading-station checks at common screen sizes: the real UI in headless
chromium, triaging a bundled sample (public-domain NIH film) with the demo prior report, as a new user would after
``make demo`` on a clean clone (no data directory: the server is started with one that does not exist)."""

from __future__ import annotations

import tempfile
from pathlib import Path

#: the screen sizes a result page is checked at: a common laptop and a common reading-station monitor
SCREEN_SIZES = ((1366, 768), (1920, 1080))


def quickstart_screenshots(root: Path, out_dir: Path, timeout_s: float = 180.0) -> list[Path]:
    """Save ``result_<w>x<h>.png`` (the viewport after Triage) per size in ``out_dir``; returns the paths."""
    from cxrtriage.data import DEMO_PRIOR_REPORT, bundled_samples
    from cxrtriage.evaluation.live_server import CHROMIUM, CHROMIUM_ARGS, open_ui, running_service, upload_and_triage
    from cxrtriage.optional import require

    sync_api = require("playwright.sync_api", extra="dev", purpose="the UI screenshots")
    sample = next(p for p in bundled_samples() if p.suffix == ".png")  # the urgent NIH film comes first
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    with tempfile.TemporaryDirectory() as empty:
        no_data = Path(empty) / "no-data-directory"
        with running_service(root, no_data, timeout_s) as service, sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for width, height in SCREEN_SIZES:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(timeout_s * 1000)
                open_ui(page, service.base, person=service.reader)
                upload_and_triage(page, sample, DEMO_PRIOR_REPORT)
                page.wait_for_timeout(1500)
                out = out_dir / f"result_{width}x{height}.png"
                page.screenshot(path=str(out))
                shots.append(out)
                page.close()
            browser.close()
    return shots


def ui_screenshot(root: Path, out: Path, data_dir: Path, prior_report: str, timeout_s: float = 120.0) -> Path:
    """The write-up's figure: an NIH film of the data directory triaged with ``prior_report`` in the real UI
    (headless chromium, signed in as a reader), the page clipped to the result from the disclaimer down."""
    from cxrtriage.evaluation.live_server import CHROMIUM, CHROMIUM_ARGS, open_ui, running_service, upload_and_triage
    from cxrtriage.optional import require

    sync_api = require("playwright.sync_api", extra="dev", purpose="the UI screenshot")
    with running_service(root, data_dir, timeout_s) as service, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(timeout_s * 1000)
        open_ui(page, service.base, person=service.reader)
        upload_and_triage(page, data_dir / "nih" / "images" / "00000150_002.png", prior_report)
        page.wait_for_timeout(1500)
        # from just above the disclaimer: the same view whatever stands above it (the signed-in bar, the title)
        top = page.locator("#cxr-disclaimer").bounding_box()["y"] - 24
        page.screenshot(path=str(out), clip={"x": 100, "y": top, "width": 1240, "height": 800}, full_page=True)
        browser.close()
    return out
