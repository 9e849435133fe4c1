"""Model backends behind one small interface (:class:`cxrtriage.backends.base.Backend`)."""

from __future__ import annotations

from pathlib import Path

from cxrtriage.backends.base import Backend, BackendOutput


def load_backend(name: str = "bundled", model_dir: str | Path | None = None) -> Backend:
    """Backend factory used by every caller (CLI, service, UI, notebooks)."""
    if name == "bundled":
        from cxrtriage.backends.bundled import BundledOnnxBackend

        return BundledOnnxBackend(model_dir)
    raise ValueError(f"unknown backend {name!r}; available: bundled")


__all__ = ["Backend", "BackendOutput", "load_backend"]
