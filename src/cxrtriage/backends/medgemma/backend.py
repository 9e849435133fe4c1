"""``medgemma`` backend: a calibrated classifier labels and scores; MedGemma explains and gives a second opinion.

Design (see :mod:`cxrtriage.backends.medgemma.explainer`): generative output is not calibrated and MedGemma 4B follows
instructions poorly, so the Urgent / Non-Urgent label, the score, the operating point and the safety gates all
come from the wrapped classifier backend (the bundled ONNX model by default, or MedSigLIP + a linear probe when
``CXRTRIAGE_CLASSIFIER`` names a probe). MedGemma only adds, through :meth:`MedGemmaBackend.explain`:

* a one-line explanation, prefixed ``"MedGemma: "`` so readers know it is generative text;
* its own urgency as a ``second_opinion`` provenance item, compared with the classifier's label; a disagreement
  becomes a warning and flags the result for review (it never changes the label);
* a supporting quote from the prior report, kept only when it occurs verbatim in the report;
* its evidence box, turned into one more crop marked ``source="medgemma"`` (unverified generative localisation).

Two runtimes share this class and its contract: ``medgemma`` (transformers, :class:`MedGemmaBackend`) and
``medgemma-gguf`` (llama.cpp on a GGUF text model + mmproj, :class:`MedGemmaGgufBackend`, the edge runtime).

If MedGemma's output cannot be parsed the classifier's own explanation is kept and a warning says so.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrtriage.backends.base import Backend, SecondOpinion, Stages
from cxrtriage.backends.model_source import resolve_model
from cxrtriage.config import Settings
from cxrtriage.files import sha256_files
from cxrtriage.schema import ModelInfo, Provenance

if TYPE_CHECKING:
    from cxrtriage.backends.medgemma.explainer import MedGemmaExplainer

DEFAULT_MODEL = "google/medgemma-4b-it"
EXPLANATION_PREFIX = "MedGemma: "
DISAGREEMENT_PREFIX = "MedGemma's second opinion ("


def disagreement_warning(opinion: str, label: str) -> str:
    return f"{DISAGREEMENT_PREFIX}{opinion}) disagrees with the classifier label ({label}): review"


class MedGemmaBackend:
    """The :class:`~cxrtriage.backends.base.Explainer` stage: MedGemma (loaded on first use) explains an image the
    classifier has labelled and gives its second opinion. Its ``info`` is MedGemma's own identity."""

    backend_name = "medgemma"

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        max_new_tokens: int = 160,
        load_in_4bit: bool = False,
        threads: int = 0,
    ) -> None:
        self.model = str(model)
        self.load_in_4bit = load_in_4bit  # bitsandbytes NF4 (CUDA only; Settings.four_bit)
        self.threads = threads  # llama.cpp's threads in the GGUF runtime (0: its default; Settings.threads)
        # Resolve now so that a missing model fails at load time with the clear "how to get it" ModelError.
        self.model_dir = self._locate(self.model)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self._explainer: MedGemmaExplainer | None = None
        # MedGemmaExplainer keeps per-call state and generation is heavy: one call at a time.
        self._lock = threading.Lock()
        is_local = Path(self.model).expanduser().exists()
        name = Path(self.model_dir).name if is_local else self.model
        self.info = ModelInfo(
            name=name,
            version=_revision(Path(self.model_dir)),
            sha256=sha256_files(sorted(self._weight_files())),
            backend=self.backend_name,
        )

    def _locate(self, model: str) -> str:
        return resolve_model(model, kind="MedGemma")

    def footprint_mb(self) -> float:
        """MedGemma's weight files on disk."""
        return sum(f.stat().st_size for f in self._weight_files()) / 1e6

    def _weight_files(self) -> list[Path]:
        from cxrtriage.backends.model_source import weight_files

        return weight_files(self.model_dir)

    # -- MedGemma -----------------------------------------------------------------------------------------------
    def _load_explainer(self) -> MedGemmaExplainer:
        from cxrtriage.backends.medgemma.explainer import MedGemmaExplainer

        return MedGemmaExplainer(
            self.model_dir, device=self.device, max_new_tokens=self.max_new_tokens, load_in_4bit=self.load_in_4bit
        )

    def explainer(self) -> MedGemmaExplainer:
        """The MedGemma explainer, loaded on first use (call under ``self._lock``)."""
        if self._explainer is None:
            self._explainer = self._load_explainer()
        return self._explainer

    def explain(self, pixels: np.ndarray, prior_report: str | None, label: str) -> SecondOpinion:
        """MedGemma's explanation, second-opinion provenance and warnings for one image already labelled ``label``."""
        from cxrtriage.backends.medgemma.explainer import agrees_with

        with self._lock:
            answer, warnings = self.explainer().explain(pixels, prior_report)
        warnings = list(warnings)
        if answer is None:
            return SecondOpinion(None, [], warnings)
        agree = agrees_with(answer, label)
        if agree is None:
            snippet = f"MedGemma gave no recognisable urgency; the classifier label ({label}) stands"
        else:
            snippet = (
                f"MedGemma second opinion: {answer.urgency}; "
                f"{'agrees' if agree else 'disagrees'} with the classifier label ({label})"
            )
        provenance = [Provenance(source="medgemma", snippet=snippet, relation="second_opinion")]
        if answer.supporting_quote:
            provenance.append(Provenance(source="prior_report", snippet=answer.supporting_quote, relation="supports"))
        if agree is False:
            warnings.append(disagreement_warning(str(answer.urgency), label))
        return SecondOpinion(
            EXPLANATION_PREFIX + answer.explanation, provenance, warnings, answer.box_xywh, disagrees=agree is False
        )


class MedGemmaGgufBackend(MedGemmaBackend):
    """The edge runtime: MedGemma as GGUF (text model + mmproj) through llama.cpp, same contract as above.

    ``model`` is a directory holding the text ``*.gguf`` and ``mmproj*.gguf`` (as written by
    ``cxrtriage hai-def convert-gguf``), or the text ``.gguf`` file with ``mmproj`` (``CXRTRIAGE_MMPROJ``) or an
    mmproj beside it.
    """

    backend_name = "medgemma-gguf"

    def __init__(self, model: str | Path, *, mmproj: str | None = None, **kwargs: Any) -> None:
        self.mmproj_given = mmproj
        super().__init__(model, **kwargs)

    def _locate(self, model: str) -> str:
        from cxrtriage.backends.medgemma.gguf import find_gguf_pair

        text, self.mmproj = find_gguf_pair(model, self.mmproj_given)
        return str(text)

    def _weight_files(self) -> list[Path]:
        return [Path(self.model_dir), Path(self.mmproj)]

    def _load_explainer(self) -> Any:
        from cxrtriage.backends.medgemma.gguf import GgufExplainer

        return GgufExplainer(
            self.model_dir, self.mmproj, n_threads=self.threads or None, max_new_tokens=self.max_new_tokens
        )


def _revision(model_dir: Path) -> str:
    """A hub snapshot's revision (its folder name under ``snapshots/``), else "local"."""
    return model_dir.name if model_dir.parent.name == "snapshots" else "local"


def load_classifier(settings: Settings) -> Backend:
    """The calibrated classifier: the bundled ONNX model of ``settings.model_dir``, unless ``settings.classifier``
    (CXRTRIAGE_CLASSIFIER) names a MedSigLIP linear probe."""
    probe = settings.classifier
    if probe is None:
        from cxrtriage.backends.bundled import BundledOnnxBackend

        return BundledOnnxBackend(settings.model_dir, threads=settings.threads)
    from cxrtriage.backends.medsiglip import DEFAULT_MODEL as MEDSIGLIP_DEFAULT
    from cxrtriage.backends.medsiglip import MedSigLIPBackend

    return MedSigLIPBackend(settings.medsiglip_model or MEDSIGLIP_DEFAULT, classifier=probe, device=settings.device)


def from_settings(model_dir: str | Path | None, settings: Settings) -> Stages:
    """The ``load_stages("medgemma")`` entry: MedGemma from the model given (``settings.model``: CXRTRIAGE_MODEL),
    else the hub id."""
    model = str(model_dir) if model_dir else DEFAULT_MODEL
    resolve_model(model, kind="MedGemma")  # fail fast, before loading the classifier
    explainer = MedGemmaBackend(model, device=settings.device, load_in_4bit=settings.four_bit)
    return Stages(load_classifier(settings), explainer)


def gguf_from_settings(model_dir: str | Path | None, settings: Settings) -> Stages:
    """The ``load_stages("medgemma-gguf")`` entry: GGUF files from the model given (``settings.model``:
    CXRTRIAGE_MODEL, required)."""
    from cxrtriage.backends.medgemma.gguf import find_gguf_pair
    from cxrtriage.errors import ModelError

    model = str(model_dir) if model_dir else None
    if not model:
        raise ModelError(
            "the medgemma-gguf backend needs CXRTRIAGE_MODEL (or --model): a directory with the MedGemma "
            "text GGUF and its mmproj*.gguf, written by `cxrtriage hai-def convert-gguf`; "
            "or use CXRTRIAGE_BACKEND=bundled"
        )
    find_gguf_pair(model, settings.mmproj)  # fail fast, before loading the classifier
    explainer = MedGemmaGgufBackend(model, mmproj=settings.mmproj, threads=settings.threads)
    return Stages(load_classifier(settings), explainer)
