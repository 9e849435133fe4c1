"""Measuring the model and the service: metrics, held-out evaluation, benchmarks, model card, figures, notebook
support."""
