"""The classifier with a site profile applied: the base model runs unchanged, the site's calibration turns its logit
(or its site head's decision value) into the score, and the site's threshold and review band are the ones the
decision reads. It is a :class:`~cxrtriage.backends.base.Backend` like any other, so the pipeline applies a profile
without knowing about sites."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrtriage.backends.base import Backend, BackendOutput, OperatingPointNotes
from cxrtriage.site.profile import SiteProfile, load_profile


class SiteBackend:
    """``base`` with ``profile``'s score, threshold and review band; everything else is the base model's."""

    def __init__(self, base: Backend, profile: SiteProfile) -> None:
        self.base, self.profile = base, profile
        self.info = base.info
        self.threshold = profile.threshold
        self.review_band = profile.review_band
        self.index = base.index
        self.min_knn_similarity = base.min_knn_similarity
        self.knn_k = base.knn_k
        self.layout = base.layout
        self.max_layout_residual = base.max_layout_residual
        self.warnings = list(base.warnings)
        self.view_probe = base.view_probe
        self.finding_probes = base.finding_probes
        fitted = f"site profile {profile.name!r}, {profile.n_cases} films, {profile.created}"
        self.operating_point_notes = OperatingPointNotes(
            calibration=f"Platt scaling on {'the site head' if profile.head else 'the base logit'} ({fitted})",
            threshold_rule=profile.threshold_rule or None,
            review_band_rule=profile.review_band_rule or None,
        )

    def analyze(self, pixels: np.ndarray) -> BackendOutput:
        out = self.base.analyze(pixels)
        return replace(out, score=self.profile.score(out.logit, out.embedding))

    def accepts_squashed(self, size: int) -> bool:
        return self.base.accepts_squashed(size)

    def returns_resized(self, size: int) -> bool:
        return self.base.returns_resized(size)

    def footprint_mb(self) -> float:
        return self.base.footprint_mb()


def with_site(backend: Backend, site_dir: str | Path | None) -> tuple[Backend, SiteProfile | None]:
    """The engine's classifier under the site profile in ``site_dir`` (None: the bundled operating point), and the
    profile; a profile fitted for another model raises :class:`~cxrtriage.errors.ConfigurationError`."""
    if site_dir is None:
        return backend, None
    profile = load_profile(site_dir, backend.info)
    return SiteBackend(backend, profile), profile
