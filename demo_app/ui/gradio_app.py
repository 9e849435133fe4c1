"""Run the cxrtriage web UI alone (no REST API) on http://127.0.0.1:7860/ui.

    python -m demo_app.ui.gradio_app [--host 0.0.0.0] [--port 7860]

The usual way is ``cxrtriage serve``, which serves the REST API and mounts this same UI at ``/ui``. Run alone, the
UI reads its settings (``CXRTRIAGE_*``) once here, builds the engine from them and gives them to the page: it files
its results on, and its Worklist tab lists, the worklist at ``CXRTRIAGE_WORKLIST_PATH``.
"""

from __future__ import annotations

import argparse

from cxrtriage.serve.ui.app import build_blocks, launch

__all__ = ["build_blocks", "main"]  # build_blocks re-exported for notebooks and custom launchers


def main(argv: list[str] | None = None) -> None:
    from cxrtriage.config import Settings
    from cxrtriage.pipeline import Triage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    args = parser.parse_args(argv)

    settings = Settings()
    engine = Triage.from_config(settings)

    def status() -> dict:
        backend = engine.backend
        return {
            "model_size_mb": backend.footprint_mb(),
            "median_latency_ms": None,  # the UI measures its own
            "model": backend.info.model_dump(),
            "backend": backend.info.backend,
        }

    launch(lambda: engine, status, settings, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
