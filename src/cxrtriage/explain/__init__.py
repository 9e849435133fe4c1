"""Stage 3, the evidence around a score: boxes and crop thumbnails, prior-report analysis, provenance, the one-line
explanation."""
