"""``predict()``: the one function every caller (CLI, REST, UI, notebooks) uses.

:meth:`Triage.run` is a short sequence of named stages passing one :class:`Case`: decode -> exposed field (the
film without a canvas or wide black borders; every box is mapped back to the original pixels) -> gate (header,
statistics, polarity, layout, frontal-view check) -> classify -> view and similarity checks -> decide -> evidence
-> prior report -> explain (+ the optional explainer stage) -> assemble. Every label and review flag comes from
:mod:`cxrtriage.decision`; the stages only collect what it decides on.

How the prior report affects the result (tested in tests/test_pipeline.py):
* it never changes the score, and never turns Urgent into Non-Urgent;
* if the model says Non-Urgent but the prior report affirms an urgent finding, the result keeps the
  model's label but is flagged ``needs_review`` with a warning: a prior report describes an earlier study,
  so it cannot decide the current one, but a disagreement must reach a human.
* if the film is labelled Urgent but the prior report describes no urgent finding (negated mentions or a
  normal study), the label stays Urgent and the result is flagged ``needs_review`` with a warning to compare
  the two studies (the disagreement in the other direction).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtriage import decision
from cxrtriage.anatomy import frontal
from cxrtriage.anatomy.measure import measure
from cxrtriage.anatomy.segmenter import Segmenter, installed_segmenter
from cxrtriage.backends import Backend, Explainer, load_stages
from cxrtriage.backends.base import BackendOutput
from cxrtriage.backends.finding_probe import read_findings
from cxrtriage.case import Case
from cxrtriage.config import Settings
from cxrtriage.errors import NotAChestXrayError
from cxrtriage.explain.evidence import (
    NON_URGENT_MIN_PROMINENCE,
    NON_URGENT_MIN_STRENGTH,
    box_from_xywh,
    find_evidence_boxes,
    peak_prominence,
    save_crop_thumbnails,
    scaled_boxes,
)
from cxrtriage.explain.provenance import case_provenance, quoted_already, redact_quotes, report_provenance
from cxrtriage.explain.report import DEFAULT_MAX_CHARS as REPORT_MAX_CHARS
from cxrtriage.explain.report import analyze_prior_report
from cxrtriage.explain.text import build_explanation
from cxrtriage.imaging import gate
from cxrtriage.imaging.exposed_field import analysed_field, to_original_pixels
from cxrtriage.imaging.load import ImageSource, LoadedImage, load_image
from cxrtriage.imaging.polarity import FLIP_WARNING, should_flip
from cxrtriage.imaging.preprocess import clip_unit, resize_square
from cxrtriage.memory import keep_freed_memory
from cxrtriage.schema import MAX_CROPS, ModelInfo, Prediction
from cxrtriage.site import site_info, with_site

ImageInput = str | os.PathLike | bytes | np.ndarray | Image.Image | LoadedImage
#: ``Triage(segmenter=DEFAULT_SEGMENTER)``: the bundled segmentation when its files are installed
DEFAULT_SEGMENTER = "bundled"
#: an evidence box must have at least this share of its area on the segmented lung fields
MIN_BOX_LUNG_SHARE = 0.1
#: similar training cases a result quotes
N_NEIGHBOURS = 3


@dataclass(frozen=True, eq=False)
class Triaged:
    """One run of the pipeline: the result, and what it was computed from. Only ``prediction`` is ever serialised;
    ``image`` (the decoded input, with its DICOM dataset when it was one) and ``pixels`` stay in memory."""

    prediction: Prediction
    image: LoadedImage  # as decoded, before any polarity flip
    pixels: np.ndarray  # the decoded image at working resolution, display polarity (flipped when needed): the
    # model analysed its exposed field (``prediction.image["exposed_field"]``, original pixels, when not the whole)
    polarity_flipped: bool  # an inverted MONOCHROME1 film was detected and flipped
    output: BackendOutput | None = None  # the classifier's own output (logit, embedding): what commissioning fits on


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

    def __init__(
        self,
        backend: Backend | None = None,
        explainer: Explainer | None = None,
        *,
        backend_name: str = "bundled",
        model_dir: str | Path | None = None,
        crops_dir: str | Path | None = None,
        n_neighbours: int = N_NEIGHBOURS,
        segmenter: Segmenter | str | None = DEFAULT_SEGMENTER,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        keep_freed_memory()  # the buffers a request frees serve the next one (memory.py: page faults otherwise)
        if backend is None:
            backend, loaded_explainer = load_stages(backend_name, model_dir, self.settings)
            explainer = explainer or loaded_explainer
        # a site profile (settings.site_dir) replaces calibration, threshold and review band inside the classifier
        self.backend, self.site = with_site(backend, self.settings.site_dir)
        self.explainer = explainer
        self.crops_dir = Path(crops_dir) if crops_dir else self.settings.crops_dir
        self.n_neighbours = n_neighbours
        if isinstance(segmenter, str) and segmenter != DEFAULT_SEGMENTER:
            raise ValueError(f"segmenter must be a Segmenter, None or {DEFAULT_SEGMENTER!r}, not {segmenter!r}")
        self.segmenter = installed_segmenter(self.settings) if isinstance(segmenter, str) else segmenter

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
        """Triage one frontal chest radiograph: the result every caller serialises."""
        return self.run(image, prior_report, save_crops=save_crops).prediction

    def load(self, image: ImageSource, *, kind: str | None = None) -> LoadedImage:
        """Decode an input with this engine's limits (``max_pixels``, ``max_working_pixels``): what an adapter
        calls once before :meth:`run` when it also needs the decoded image (its DICOM header) for other outputs."""
        return load_image(
            image, max_pixels=self.settings.max_pixels, max_working_pixels=self.settings.max_working_pixels, kind=kind
        )

    def run(self, image: ImageInput, prior_report: str | None = None, *, save_crops: bool = True) -> Triaged:
        """:meth:`predict`, plus the decoded image and the pixels the model analysed, for the outputs that draw on
        them (DICOM SR and Secondary Capture) without decoding the source again. The stages in order; each reads
        and writes one :class:`Case`."""
        t_start = time.perf_counter()
        loaded = image if isinstance(image, LoadedImage) else self.load(image)
        case = Case(
            loaded=loaded,
            prior_report=prior_report,
            pixels=loaded.pixels,
            warnings=[*loaded.meta.warnings, *self.backend.warnings],
        )
        case.timings["decode"] = loaded.decode_ms  # also when the caller decoded it (once) beforehand
        if image is loaded:  # decoded by the caller: the total still counts the decode
            t_start -= loaded.decode_ms / 1e3
        self._find_field(case)
        self._gate(case)
        self._classify(case)
        self._check_view_and_similarity(case)
        self._decide(case)
        self._find_evidence(case)
        self._read_prior_report(case)
        self._explain(case)
        prediction = self._assemble(case, save_crops, t_start)
        return Triaged(prediction, loaded, case.display, case.flipped, case.output)  # in the fields' order

    def _find_field(self, case: Case) -> None:
        """The exposed field (imaging/exposed_field.py): a film on a black canvas or inside wide black borders is
        analysed without them by every later stage, box-averaged when it is 1024 px or more
        (imaging/analysis_size.py); the boxes are mapped back when the result is assembled."""
        t = time.perf_counter()
        case.exposed, case.pixels, case.scale = analysed_field(case.pixels)
        case.timings["field"] = (time.perf_counter() - t) * 1e3

    def _gate(self, case: Case) -> None:
        """Header and statistics, polarity, coarse layout and, with the segmentation, the frontal-view check:
        refuses what is not a frontal chest film (raises), keeps the doubts about an atypical one."""
        t = time.perf_counter()
        meta = case.loaded.meta
        stats = gate.check_header_and_statistics(case.pixels, meta, allow_low_contrast=self.segmenter is not None)
        layout = self.backend.layout
        case.model_pixels = case.pixels
        classify_ms = 0.0  # the classifier's time when it runs inside the gate (reported as its own stages)
        if layout is not None:
            if (meta.photometric_interpretation or "").upper() == "MONOCHROME1" and should_flip(case.pixels, layout):
                case.pixels = (1.0 - case.pixels).astype(np.float32)
                case.flipped = True
                case.warnings.append(FLIP_WARNING)
            size = layout.input_size
            if self.backend.returns_resized(size):
                # the classifier's graph resizes the field itself and hands the result back (classify_full.onnx's
                # ``resized``), so it runs first and the layout gate reads that image, as the browser page does
                t_cls = time.perf_counter()
                case.model_pixels = case.pixels  # after the polarity flip
                self._classify(case)
                classify_ms = (time.perf_counter() - t_cls) * 1e3
                resized = case.output.resized
                squashed = resized if resized is not None else resize_square(clip_unit(case.pixels), size)
            else:
                # one squash serves the layout gate and, when the backend's result is the same for a pre-squashed
                # image, the model too (saves a full-size resize: ~5 ms at 1024 px, ~18 ms at a 2500x2000 DICOM)
                squashed = resize_square(clip_unit(case.pixels), size)
                case.model_pixels = squashed if self.backend.accepts_squashed(size) else case.pixels
            case.residual = layout.residual(squashed)
        if self.segmenter is not None:
            t_seg = time.perf_counter()
            case.anatomy = measure(self.segmenter.segment(case.pixels))
            case.timings["segment"] = (time.perf_counter() - t_seg) * 1e3
            case.doubts += frontal.check(case.anatomy, case.residual, self.backend.max_layout_residual)
            if stats.get("low_contrast"):
                if not case.anatomy.typical_pair:
                    raise NotAChestXrayError(gate.BLANK_MESSAGE)
                case.doubts.append(
                    f"its contrast is very low (grey-level spread {stats['std']:.3f}); window it before reading"
                )
        else:
            gate.check_layout(case.residual, self.backend.max_layout_residual)
            case.warnings.append(
                "the lung segmentation is not installed: evidence zones come from image geometry "
                "and the frontal-view check from the coarse layout only"
            )
        case.timings["gate"] = (time.perf_counter() - t) * 1e3 - case.timings.get("segment", 0.0) - classify_ms

    def _classify(self, case: Case) -> None:
        """The classifier, once: in the gate when it returns the resized image the layout gate reads, else here."""
        if case.output is None:
            case.output = self.backend.analyze(case.model_pixels)
            case.timings.update(case.output.timings_ms)

    def _check_view_and_similarity(self, case: Case) -> None:
        """After the model: the embedding against the training films (refuse, or doubt for a film with two lungs),
        the similar cases, and the view probe (refuse a lateral, doubt a possible one)."""
        t = time.perf_counter()
        out, anatomy, index = case.output, case.anatomy, self.backend.index
        if index is not None and out.embedding is not None:
            case.knn_similarity = index.knn_similarity(out.embedding, self.backend.knn_k)
            if anatomy is not None and anatomy.typical_pair:  # an unusual embedding of a film with two lungs: doubt
                case.doubts += frontal.embedding_doubt(case.knn_similarity, self.backend.min_knn_similarity)
            else:
                gate.check_embedding(case.knn_similarity, self.backend.min_knn_similarity)
            case.neighbours = index.nearest(out.embedding, self.n_neighbours)
        probe = self.backend.view_probe
        if probe is not None and anatomy is not None and out.embedding is not None:
            view_score = probe.score(out.embedding, anatomy.view_features())
            case.doubts += frontal.check_view(
                view_score, probe.reject_above, probe.review_above, anatomy.typical_pair, probe.reject_with_lungs_above
            )
        case.timings["neighbours"] = (time.perf_counter() - t) * 1e3

    def _decide(self, case: Case) -> None:
        case.settle(
            decision.decide(
                case.output.score, self.backend.threshold, self.backend.review_band, atypical_film=case.doubts
            )
        )

    def _find_evidence(self, case: Case) -> None:
        """Boxes from the activation map, inside the lung fields when they are known. A Non-Urgent film keeps at
        most one box, and only a strong one on a map whose peak stands out of the lung fields (crops on most normal
        films are noise a clinician learns to ignore); an Urgent film keeps its boxes (explain/evidence.py holds the
        rule's numbers)."""
        if case.output.cam is None:
            return
        height, width = case.pixels.shape
        anatomy = case.anatomy
        region = anatomy.evidence_region() if anatomy is not None and anatomy.lungs else None
        boxes = find_evidence_boxes(
            case.output.cam,
            (width, height),
            max_boxes=MAX_CROPS,
            allowed=region,
            zone_of=anatomy.zone if anatomy is not None else None,
        )
        if region is not None:  # a box grown from the margin alone would not touch the lungs: drop it
            boxes = [
                b
                for b in boxes
                if anatomy.lung_share(  # type: ignore[union-attr]
                    (b.x / width, b.y / height, (b.x + b.w) / width, (b.y + b.h) / height)
                )
                >= MIN_BOX_LUNG_SHARE
            ]
        if case.decision.label == decision.NON_URGENT:
            stands_out = peak_prominence(case.output.cam, region) >= NON_URGENT_MIN_PROMINENCE
            boxes = [b for b in boxes if stands_out and (b.strength or 0.0) >= NON_URGENT_MIN_STRENGTH][:1]
        case.boxes = boxes

    def _read_prior_report(self, case: Case) -> None:
        t = time.perf_counter()
        text = case.prior_report
        report = analyze_prior_report(text) if text and text.strip() else None
        if report is not None and report.truncated:
            case.warnings.append(
                f"the prior report is longer than {REPORT_MAX_CHARS} characters: only the first "
                f"{REPORT_MAX_CHARS} were analysed; read the rest of it yourself"
            )
        if report is not None:
            case.settle(
                decision.with_prior_report(
                    case.decision, report.has_affirmed_urgent_finding, report.describes_no_urgent_finding
                )
            )
        case.report = report
        case.timings["report"] = (time.perf_counter() - t) * 1e3

    def _explain(self, case: Case) -> None:
        """Finding outputs, the one-line explanation and provenance; then the optional explainer stage (MedGemma),
        which may replace the explanation and add provenance, warnings and a box, and whose disagreement sends the
        result for review; it never changes label or score."""
        out = case.output
        case.findings, nameable = read_findings(self.backend.finding_probes, out.embedding, out.logit)
        case.explanation = build_explanation(
            case.decision, case.boxes, case.report, has_map=out.cam is not None, finding=nameable
        )
        case.provenance = report_provenance(case.report) + case_provenance(case.neighbours)
        if self.explainer is not None:
            self._second_opinion(case, self.explainer)
        # the report was analysed as written; what the result quotes of it is redacted (explain/deid.py)
        case.provenance, case.explanation, redacted = redact_quotes(
            case.prior_report, case.provenance, case.explanation
        )
        case.warnings += [redacted] if redacted else []

    def _second_opinion(self, case: Case, explainer: Explainer) -> None:
        """The optional explainer stage (MedGemma)."""
        t = time.perf_counter()
        # the explainer reads the field at the decoded resolution
        extra = explainer.explain(case.field().crop(case.display), case.prior_report, case.decision.label)
        case.explanation = extra.explanation or case.explanation
        case.provenance += [p for p in extra.provenance if not quoted_already(p, case.provenance)]
        case.warnings += extra.warnings
        case.settle(decision.with_second_opinion(case.decision, extra.disagrees))
        if extra.box_xywh:
            # MedGemma's box becomes one more crop (kept within MAX_CROPS by dropping the weakest CAM box)
            height, width = case.pixels.shape
            x, y, w, h = (int(v) // case.scale for v in extra.box_xywh)  # it read the field at the decoded resolution
            case.boxes = case.boxes[: MAX_CROPS - 1] + [box_from_xywh((x, y, w, h), (width, height), "medgemma")]
        case.timings["explain"] = (time.perf_counter() - t) * 1e3

    def _assemble(self, case: Case, save_crops: bool, t_start: float) -> Prediction:
        """The Prediction. Thumbnails last: every step that can fail has run, so a failure leaves no files behind.
        They are cut from ``case.display`` (the decoded image in display polarity), the boxes mapped to its pixels."""
        meta, d = case.loaded.meta, case.decision
        image_info = meta.to_dict()
        if case.knn_similarity is not None:
            image_info["knn_similarity"] = round(case.knn_similarity, 4)
        if case.residual is not None:
            image_info["layout_residual"] = round(case.residual, 4)
        if case.exposed is not None and not case.exposed.is_whole:
            image_info["exposed_field"] = case.exposed.xywh((meta.width, meta.height))
        anatomy_info = None
        if case.anatomy is not None:  # measured by self.segmenter
            anatomy_info = {**case.anatomy.measurements(), "segmenter": self.segmenter.name}  # type: ignore[union-attr]
        t = time.perf_counter()
        display, field = case.display, case.field()
        boxes = scaled_boxes(case.boxes, (field.x0, field.y0), case.scale)  # in the decoded image's pixels
        crops = save_crop_thumbnails(display, boxes, self.crops_dir) if save_crops and boxes else []
        height, width = display.shape
        crops = to_original_pixels(crops, (width, height), (meta.width, meta.height))
        case.timings["crops"] = (time.perf_counter() - t) * 1e3
        case.timings["total"] = (time.perf_counter() - t_start) * 1e3
        return Prediction(
            label=d.label,
            score=d.score,
            explanation=case.explanation,
            crops=crops,
            provenance=case.provenance,
            threshold=d.threshold,
            review_band=d.review_band,
            needs_review=d.needs_review,
            model=self.info,
            explainer=self.explainer.info if self.explainer is not None else None,
            model_logit=round(float(case.output.logit), 6),
            timings_ms={k: round(v, 2) for k, v in case.timings.items()},
            warnings=case.warnings,
            image=image_info,
            anatomy=anatomy_info,
            findings=case.findings,
            site=site_info(self.site),
        )


@functools.lru_cache(maxsize=4)
def get_triage(settings: Settings) -> Triage:
    """Process-wide cached engine of a configuration: the model loads once per distinct settings (frozen, hashable),
    so an engine built under other settings is never reused."""
    return Triage.from_config(settings)


def predict(
    image_or_path: ImageInput,
    prior_report: str | None = None,
    *,
    backend: str | None = None,
    model_dir: str | Path | None = None,
    save_crops: bool = True,
    settings: Settings | None = None,
) -> Prediction:
    """Triage one frontal chest radiograph. Raises cxrtriage.errors.InputError subclasses for bad inputs.

    The library's entry point: ``settings`` (None: read from the environment at this call), with ``backend`` /
    ``model_dir`` on top (the model of that backend, as ``cxrtriage predict --backend --model-dir``)."""
    settings = settings if settings is not None else Settings()
    if backend or model_dir:
        settings = settings.with_model(backend, model_dir)
    return get_triage(settings).predict(image_or_path, prior_report, save_crops=save_crops)
