"""What every output format is built from: one typed :class:`OutputContext`, so that a builder never decodes or parses
its input again and a new format needs no new plumbing in the REST route, the CLI or the DICOM node.

The context is made from a pipeline run (:meth:`cxrtriage.pipeline.Triage.run` returns a ``Triaged``, which has the
four attributes of :class:`Analysed`); ``interop`` sits below the pipeline in the layers, so it names the shape of
that result rather than importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cxrtriage.imaging.load import DicomSource, LoadedImage
from cxrtriage.schema import Prediction


class Analysed(Protocol):
    """A pipeline run: the result and what it was computed from (``cxrtriage.pipeline.Triaged``)."""

    @property
    def prediction(self) -> Prediction: ...

    @property
    def image(self) -> LoadedImage: ...

    @property
    def pixels(self) -> np.ndarray: ...

    @property
    def polarity_flipped(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class OutputContext:
    """One triaged input, as the output formats see it.

    ``prediction`` is the result as the caller serialises it (the REST route's has crop URLs and the worklist's
    warning); ``image`` is the decoded input, whose ``source`` holds a DICOM input's header (patient and study
    attributes: never serialised by this object, absent from its repr); ``pixels`` are what the model analysed
    (working resolution, display polarity, already flipped when ``polarity_flipped``).
    """

    prediction: Prediction
    image: LoadedImage | None = None
    pixels: np.ndarray | None = None
    polarity_flipped: bool = False

    @classmethod
    def of(cls, result: Analysed, prediction: Prediction | None = None) -> OutputContext:
        """The context of a pipeline run; ``prediction`` replaces the run's own (e.g. with crop URLs)."""
        return cls(
            prediction=prediction if prediction is not None else result.prediction,
            image=result.image,
            pixels=result.pixels,
            polarity_flipped=result.polarity_flipped,
        )

    @property
    def source(self) -> DicomSource | None:
        """The DICOM input's header and Study Instance UID; None for a PNG, JPEG or array input."""
        return self.image.source if self.image is not None else None
