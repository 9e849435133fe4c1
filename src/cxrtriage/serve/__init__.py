"""The web service (FastAPI) and the web UI (Gradio): thin callers of the pipeline. Needs the [demo] extra."""
