"""``predict()``: the one function every caller (CLI, REST, UI, notebooks) uses.

Order of work: decode -> header/statistics gate -> model -> embedding gate -> label and review band ->
evidence crops -> prior-report provenance -> similar cases -> explanation.

How the prior report affects the result (tested in tests/test_pipeline.py):
* it never changes the score, and never turns Urgent into Non-Urgent;
* if the model says Non-Urgent but the prior report affirms an urgent finding, the result keeps the
  model's label but is flagged ``needs_review`` with a warning: a prior report describes an earlier study,
  so it cannot decide the current one, but a disagreement must reach a human.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from cxrtriage import config, decision
from cxrtriage.config import Settings
from cxrtriage.anatomy import frontal
from cxrtriage.anatomy.measure import Anatomy, measure
from cxrtriage.anatomy.segmenter import SEGMENT_MODEL_FILE, Segmenter
from cxrtriage.imaging import gate
from cxrtriage.backends import Backend, Explainer, load_stages
from cxrtriage.backends.finding_probe import read_findings
from cxrtriage.explain.evidence import box_from_xywh, find_evidence_boxes, save_crop_thumbnails
from cxrtriage.explain.text import build_explanation
from cxrtriage.errors import NotAChestXrayError
from cxrtriage.imaging.load import LoadedImage, load_image
from cxrtriage.imaging.polarity import FLIP_WARNING, should_flip
from cxrtriage.imaging.preprocess import resize_square
from cxrtriage.explain.provenance import case_provenance, report_provenance
from cxrtriage.explain.report import DEFAULT_MAX_CHARS as REPORT_MAX_CHARS
from cxrtriage.explain.report import analyze_prior_report
from cxrtriage.schema import MAX_CROPS, Crop, ModelInfo, Prediction, Provenance

ImageInput = Union[str, os.PathLike, bytes, np.ndarray, Image.Image, LoadedImage]
#: ``Triage(segmenter=DEFAULT_SEGMENTER)``: the bundled segmentation when its files are installed
DEFAULT_SEGMENTER = "bundled"
#: a Non-Urgent result shows a crop only for a region holding at least this share of the positive map mass
NON_URGENT_MIN_STRENGTH = 0.5
#: an evidence box must have at least this share of its area on the segmented lung fields
MIN_BOX_LUNG_SHARE = 0.1


def default_segmenter(settings: Settings | None = None) -> Segmenter | None:
    """The lung-and-heart segmentation of ``settings`` (``segmenter_dir``, ``threads``; None: the environment's), or
    None when its files are not there (the pipeline then falls back to image-geometry zones and the layout gate
    alone, and says so in a warning)."""
    settings = settings if settings is not None else Settings()
    directory = settings.segmenter_dir
    return Segmenter(directory, threads=settings.threads) if (directory / SEGMENT_MODEL_FILE).is_file() else None


def _quoted_already(item: Provenance, provenance: list[Provenance]) -> bool:
    """True for a prior-report quote already contained in a quote the pipeline itself took from the report."""
    return item.source == "prior_report" and any(
        item.snippet.lower() in q.snippet.lower() for q in provenance if q.source == "prior_report")


def to_original_pixels(crops: list[Crop], analysed: tuple[int, int], original: tuple[int, int]) -> list[Crop]:
    """Boxes found on a reduced-resolution image (``ImageMeta.reduction``) in the original image's pixels."""
    (aw, ah), (ow, oh) = analysed, original
    if (aw, ah) == (ow, oh) or aw <= 0 or ah <= 0:
        return crops
    sx, sy = ow / aw, oh / ah
    out = []
    for c in crops:
        x, y = min(ow - 1, int(c.x * sx)), min(oh - 1, int(c.y * sy))
        w, h = max(1, min(ow - x, round(c.w * sx))), max(1, min(oh - y, round(c.h * sy)))
        out.append(c.model_copy(update={"x": x, "y": y, "w": w, "h": h}))
    return out


class Triage:
    """The pipeline built from declared stages: a classifier (``backend``) and an optional ``explainer``.
    Thread-safe for concurrent predict().

    ``Triage.from_config(settings)`` is how entry points build the engine: backend, model, classifier, segmenter,
    threads, device and crops directory all come from the one :class:`cxrtriage.config.Settings`, kept as
    ``self.settings`` (its ``max_pixels`` / ``max_working_pixels`` are for the decode step to pass to
    ``load_image``, which reads the configured ones per call when given none). ``Triage(backend_name="medgemma",
    model_dir=...)`` loads both stages of a configuration (:func:`cxrtriage.backends.load_stages`) and
    ``Triage(classifier, explainer)`` takes loaded ones; the keyword arguments given win over ``settings``, and
    without ``settings`` they are read from the environment here (the library's entry point).
    """

    def __init__(self, backend: Backend | None = None, explainer: Explainer | None = None, *,
                 backend_name: str = "bundled", model_dir: str | Path | None = None, crops_dir: str | Path | None = None,
                 n_neighbours: int = 3, segmenter: Segmenter | str | None = DEFAULT_SEGMENTER,
                 settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        if backend is None:
            backend, loaded_explainer = load_stages(backend_name, model_dir, self.settings)
            explainer = explainer or loaded_explainer
        self.backend = backend
        self.explainer = explainer
        self.crops_dir = Path(crops_dir) if crops_dir else self.settings.crops_dir
        self.n_neighbours = n_neighbours
        self.segmenter = default_segmenter(self.settings) if segmenter == DEFAULT_SEGMENTER else segmenter

    @classmethod
    def from_config(cls, settings: Settings) -> Triage:
        """The engine of a configuration: ``settings.backend`` with its model (``model_dir`` for ``bundled``,
        ``model`` for a HAI-DEF backend), classifier probe, device, threads; the segmentation from
        ``segmenter_dir``; crops written to ``crops_dir``."""
        return cls(backend_name=settings.backend, settings=settings)

    @property
    def info(self) -> ModelInfo:
        """The classifier's identity, under the configuration's backend name (the explainer's when there is one)."""
        if self.explainer is None:
            return self.backend.info
        return self.backend.info.model_copy(update={"backend": self.explainer.info.backend})

    def footprint_mb(self) -> float:
        """Model files on disk: the classifier's plus the explainer's."""
        return self.backend.footprint_mb() + (self.explainer.footprint_mb() if self.explainer is not None else 0.0)

    def predict(self, image: ImageInput, prior_report: str | None = None, *, save_crops: bool = True) -> Prediction:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        loaded = image if isinstance(image, LoadedImage) else load_image(image)
        pixels, meta = loaded.pixels, loaded.meta
        timings["decode"] = (time.perf_counter() - t_start) * 1e3
        warnings = list(meta.warnings) + list(self.backend.warnings)

        t = time.perf_counter()
        stats = gate.check_header_and_statistics(pixels, meta, allow_low_contrast=self.segmenter is not None)
        layout = self.backend.layout
        residual = None
        model_pixels = pixels
        if layout is not None:
            if (meta.photometric_interpretation or "").upper() == "MONOCHROME1" and should_flip(pixels, layout):
                pixels = (1.0 - pixels).astype(np.float32)
                warnings.append(FLIP_WARNING)
            # one squash to the model size serves the layout gate and, when the backend says its result is the
            # same for a pre-squashed image, the model too (saves a full-size resize: ~5 ms at 1024 px, ~18 ms at
            # a 2500x2000 DICOM)
            squashed = resize_square(np.clip(pixels, 0.0, 1.0), layout.input_size)
            residual = layout.residual(squashed)
            if self.backend.accepts_squashed(layout.input_size):
                model_pixels = squashed
        anatomy: Anatomy | None = None
        if self.segmenter is not None:
            t_seg = time.perf_counter()
            anatomy = measure(self.segmenter.segment(pixels))
            timings["segment"] = (time.perf_counter() - t_seg) * 1e3
            review_reasons = frontal.check(anatomy, residual, self.backend.max_layout_residual)
            if stats.get("low_contrast"):
                if not anatomy.typical_pair:
                    raise NotAChestXrayError(gate.BLANK_MESSAGE)
                review_reasons.append(f"its contrast is very low (grey-level spread {stats['std']:.3f}); window it before reading")
        else:
            gate.check_layout(residual, self.backend.max_layout_residual)
            review_reasons = []
            warnings.append("the lung segmentation is not installed: evidence zones come from image geometry and "
                            "the frontal-view check from the coarse layout only")
        timings["gate"] = (time.perf_counter() - t) * 1e3 - timings.get("segment", 0.0)

        out = self.backend.analyze(model_pixels)
        timings.update(out.timings_ms)

        t = time.perf_counter()
        index = self.backend.index
        knn_sim = None
        neighbours = []
        if index is not None and out.embedding is not None:
            knn_sim = index.knn_similarity(out.embedding, self.backend.knn_k)
            if anatomy is not None and anatomy.typical_pair:  # an unusual embedding of a film with two lungs is doubt for a human
                review_reasons += frontal.embedding_doubt(knn_sim, self.backend.min_knn_similarity)
            else:
                gate.check_embedding(knn_sim, self.backend.min_knn_similarity)
            neighbours = index.nearest(out.embedding, self.n_neighbours)
        probe = getattr(self.backend, "view_probe", None)
        if probe is not None and anatomy is not None and out.embedding is not None:
            view_score = probe.score(out.embedding, anatomy.view_features())
            review_reasons += frontal.check_view(view_score, probe.reject_above, probe.review_above, anatomy.typical_pair,
                                                 probe.reject_with_lungs_above)
        timings["neighbours"] = (time.perf_counter() - t) * 1e3

        # Decide on the values the result reports (4 decimals), so that anyone re-scoring the JSON
        # (eval_metrics.py) gets exactly the pipeline's decisions, also for a score within 1e-4 of the threshold.
        score = decision.reported(out.score)
        threshold = decision.reported(self.backend.threshold)
        band = (decision.reported(self.backend.review_band[0]), decision.reported(self.backend.review_band[1]))
        label, needs_review = decision.decide(score, threshold, band)
        if review_reasons:  # an atypical frontal film: triaged, but Urgent and for a human (safety first)
            label, needs_review = "Urgent", True
            warnings += [f"atypical frontal radiograph: {r}; labelled Urgent for human review" for r in review_reasons]

        height, width = pixels.shape
        boxes = []
        if out.cam is not None:
            region = anatomy.evidence_region() if anatomy is not None and anatomy.lungs else None
            boxes = find_evidence_boxes(out.cam, (width, height), max_boxes=MAX_CROPS, allowed=region,
                                        zone_of=anatomy.zone if anatomy is not None else None)
            if region is not None:  # a box grown from the margin alone would not touch the lungs: drop it
                boxes = [b for b in boxes if anatomy.lung_share(
                    (b.x / width, b.y / height, (b.x + b.w) / width, (b.y + b.h) / height)) >= MIN_BOX_LUNG_SHARE]
            if label == "Non-Urgent":  # weak boxes on a normal film are noise a clinician learns to ignore
                boxes = [b for b in boxes if (b.strength or 0.0) >= NON_URGENT_MIN_STRENGTH][:1]

        t = time.perf_counter()
        report = analyze_prior_report(prior_report) if prior_report and prior_report.strip() else None
        if report is not None and report.truncated:
            warnings.append(f"the prior report is longer than {REPORT_MAX_CHARS} characters: only the first "
                            f"{REPORT_MAX_CHARS} were analysed; read the rest of it yourself")
        if report is not None and label == "Non-Urgent" and report.has_affirmed_urgent_finding:
            needs_review = True
            warnings.append("the prior report affirms an urgent finding but the image score is below the threshold: "
                            "review the current image against the prior report")
        timings["report"] = (time.perf_counter() - t) * 1e3

        findings, nameable = read_findings(getattr(self.backend, "finding_probes", ()), out.embedding, out.logit)
        explanation = build_explanation(label, score, threshold, band, boxes, report, needs_review,
                                        has_map=out.cam is not None, finding=nameable)
        provenance = report_provenance(report) + case_provenance(neighbours)
        # The optional explainer stage (MedGemma): it may replace the explanation and add provenance and warnings,
        # and a second opinion that disagrees flags the result for review; it never changes label or score.
        if self.explainer is not None:
            t = time.perf_counter()
            extra = self.explainer.explain(pixels, prior_report, label)
            explanation = extra.explanation or explanation
            provenance += [p for p in extra.provenance if not _quoted_already(p, provenance)]
            warnings += extra.warnings
            needs_review = needs_review or extra.disagrees
            if extra.box_xywh:
                # MedGemma's box becomes one more crop (kept within MAX_CROPS by dropping the weakest CAM box)
                boxes = boxes[: MAX_CROPS - 1] + [box_from_xywh(extra.box_xywh, (width, height), "medgemma")]
            timings["explain"] = (time.perf_counter() - t) * 1e3
        image_info = meta.to_dict()
        if knn_sim is not None:
            image_info["knn_similarity"] = round(knn_sim, 4)
        if residual is not None:
            image_info["layout_residual"] = round(residual, 4)
        anatomy_info = None
        if anatomy is not None:  # measured by self.segmenter
            anatomy_info = {**anatomy.measurements(), "segmenter": self.segmenter.name}  # type: ignore[union-attr]

        # Thumbnails last: every step that can fail has run, so a failure leaves no files behind.
        t = time.perf_counter()
        crops = save_crop_thumbnails(pixels, boxes, self.crops_dir or config.crops_dir()) if save_crops and boxes else []
        crops = to_original_pixels(crops, (width, height), (meta.width, meta.height))
        timings["crops"] = (time.perf_counter() - t) * 1e3
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return Prediction(
            label=label, score=score, explanation=explanation, crops=crops, provenance=provenance,
            threshold=threshold, review_band=band, needs_review=needs_review,
            model=self.info, explainer=self.explainer.info if self.explainer is not None else None, timings_ms={k: round(v, 2) for k, v in timings.items()}, warnings=warnings,
            image=image_info, anatomy=anatomy_info, findings=findings,
        )


@functools.lru_cache(maxsize=4)
def get_triage(settings: Settings) -> Triage:
    """Process-wide cached engine of a configuration: the model loads once per distinct settings (frozen, hashable),
    so an engine built under other settings is never reused."""
    return Triage.from_config(settings)


def predict(image_or_path: ImageInput, prior_report: str | None = None, *, backend: str | None = None,
            model_dir: str | Path | None = None, save_crops: bool = True,
            settings: Settings | None = None) -> Prediction:
    """Triage one frontal chest radiograph. Raises cxrtriage.errors.InputError subclasses for bad inputs.

    The library's entry point: ``settings`` (None: read from the environment at this call), with ``backend`` /
    ``model_dir`` on top (the model of that backend, as ``cxrtriage predict --backend --model-dir``)."""
    settings = settings if settings is not None else Settings()
    if backend or model_dir:
        settings = settings.with_model(backend, model_dir)
    return get_triage(settings).predict(image_or_path, prior_report, save_crops=save_crops)
