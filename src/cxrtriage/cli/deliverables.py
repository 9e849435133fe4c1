"""Deliverable commands: ``cxrtriage writeup | video | screenshots``, the write-up PDF, the demo video and the
README's screenshot built from a checkout.

They read the checkout's ``prototype/eval/`` and ``docs/`` (not an installed package), so each first finds the
checkout; a missing input (the checkout, a metrics file, a tool) is a usage error: one ``error:`` sentence, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from cxrtriage.cli.options import SubCommands, data_dir_or_exit


def _build_deliverable(name: str, build: Callable[[Path], object]) -> int:
    """Run a deliverable's builder on the checkout (``writeup``, ``video``); a missing input is a usage error."""
    from cxrtriage.evaluation.notebook_run import project_root

    root = project_root()
    if root is None:
        print(
            f"error: run `cxrtriage {name}` inside a cxrtriage checkout (it builds from the checkout's files)",
            file=sys.stderr,
        )
        return 2
    try:
        build(root)
    except (FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_writeup(args: argparse.Namespace) -> int:
    """Render writeup.pdf from docs/writeup/writeup.md.j2 and the metrics files."""
    from cxrtriage.evaluation.writeup import build_writeup

    data = None if args.no_screenshot else data_dir_or_exit(args.data_dir)
    return _build_deliverable(
        "writeup",
        lambda root: build_writeup(
            root,
            (root / args.out).resolve(),
            data_dir=data,
            figures=not args.no_figures,
            screenshot=not args.no_screenshot,
        ),
    )


def cmd_video(args: argparse.Namespace) -> int:
    """Record video/demo.mp4 from the running application."""
    from cxrtriage.evaluation.video import build_video

    return _build_deliverable("video", lambda root: build_video(root, data_dir_or_exit(args.data_dir)))


def cmd_screenshots(args: argparse.Namespace) -> int:
    """The result page after triaging a bundled sample, at each screen size of SCREEN_SIZES."""
    from cxrtriage.evaluation.screenshots import quickstart_screenshots

    def build(root: Path) -> None:
        for shot in quickstart_screenshots(root, (root / args.out_dir).resolve()):
            print(shot)

    return _build_deliverable("screenshots", build)


def cmd_browser_build(args: argparse.Namespace) -> int:
    """The static browser page as a plain folder (``make browser``)."""
    from cxrtriage.browser.build import BrowserBuildError, build

    def run(root: Path) -> None:
        try:
            print(build((root / args.out).resolve(), root))
        except BrowserBuildError as exc:
            raise RuntimeError(str(exc)) from exc

    return _build_deliverable("browser-build", run)


def add_parser(sub: SubCommands) -> None:
    """Register ``writeup`` and ``video`` on the main CLI's subcommands."""
    s = sub.add_parser(
        "writeup",
        help="render writeup.pdf (figures, UI screenshot, numbers from the metrics files; "
        "needs the data directory, chromium and the [notebooks] extra)",
    )
    s.add_argument("--out", default="writeup.pdf", help="PDF path, relative to the checkout (default writeup.pdf)")
    s.add_argument("--data-dir")
    s.add_argument(
        "--no-figures",
        action="store_true",
        help="reuse the ROC, calibration and architecture figures of an earlier run",
    )
    s.add_argument("--no-screenshot", action="store_true", help="reuse the UI screenshot of an earlier run")
    s.set_defaults(func=cmd_writeup)

    s = sub.add_parser(
        "video",
        help="record video/demo.mp4 from the running service and UI (needs the data directory, "
        "chromium, ffmpeg and Playwright)",
    )
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_video)

    s = sub.add_parser(
        "screenshots",
        help="the UI's result page after triaging a bundled sample, with no data directory, at 1366x768 and "
        "1920x1080 (result_WxH.png; needs chromium and Playwright)",
    )
    s.add_argument("--out-dir", default="build/screenshots", help="relative to the checkout")
    s.set_defaults(func=cmd_screenshots)

    s = sub.add_parser(
        "browser-build",
        help="the static triage page (onnxruntime-web, the bundled models) as a plain folder that works offline "
        "(needs npm once, for demo_app/browser/node_modules)",
    )
    s.add_argument("--out", default="build/browser", help="relative to the checkout (default build/browser)")
    s.set_defaults(func=cmd_browser_build)
