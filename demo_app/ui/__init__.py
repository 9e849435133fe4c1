"""Standalone Gradio UI for cxrtriage (the usual way is ``cxrtriage serve``, which mounts it at /ui)."""
