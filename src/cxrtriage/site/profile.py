"""The site profile folder written by ``cxrtriage commission`` and read at start-up (``--site``, CXRTRIAGE_SITE).

``SITE_DIR/site.json`` holds what the engine applies (the site's Platt calibration on the base model's logit or on
the optional site head's, threshold, review band) and what results name (name, date, sample size), beside the
base model's sha256: a profile fitted for another model is refused, since its threshold means nothing for other
scores. ``commissioning.json`` / ``commissioning.html`` (the figures) and ``reference.jsonl`` (the monitor records of
the commissioning films) sit beside it; the engine reads only ``site.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.backends.calibration import platt
from cxrtriage.errors import ConfigurationError, ModelError
from cxrtriage.schema import ModelInfo, SiteInfo

SITE_FILE = "site.json"
FIGURES_FILE = "commissioning.json"
REPORT_FILE = "commissioning.html"
REFERENCE_FILE = "reference.jsonl"
#: bumped when site.json changes in a way an older reader would misread
SITE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class SiteHead:
    """A logistic regression on the classifier's frozen embedding and logit, fitted on the site's films: its
    decision value ``weights . (features - mean) / scale + bias``, with features = embedding then logit."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logit(self, embedding: np.ndarray | None, logit: float) -> float:
        if embedding is None:
            raise ModelError("this site profile has a site head, which needs the classifier's embedding: none given")
        features = np.append(np.asarray(embedding, dtype=np.float64).ravel(), logit)
        if features.shape != self.mean.shape:
            raise ModelError(
                f"the site head takes {self.mean.size} features, the classifier gave {features.size}: "
                "the profile was fitted for another model"
            )
        return float(self.weights @ ((features - self.mean) / self.scale) + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": "embedding, then the base logit",
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiteHead:
        arrays = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
            raise ValueError("site_head: mean, scale and weights must be lists of the same length")
        return cls(mean=arrays[0], scale=arrays[1], weights=arrays[2], bias=float(d["bias"]))


@dataclass(frozen=True, eq=False)
class SiteProfile:
    """What the engine applies and what every result names of one site profile."""

    name: str
    created: str  # UTC date, YYYY-MM-DD
    n_cases: int
    directory: Path
    base_model: dict[str, str]  # name, version, sha256 of the model it was fitted for
    a: float  # Platt slope and intercept on the base logit (no head) or on the head's decision value
    b: float
    threshold: float
    review_band: tuple[float, float]
    head: SiteHead | None = None
    threshold_rule: str = ""
    review_band_rule: str = ""

    def score(self, logit: float, embedding: np.ndarray | None) -> float:
        """The site's calibrated probability of Urgent for one film."""
        raw = self.head.logit(embedding, logit) if self.head is not None else logit
        return float(platt(raw, self.a, self.b))

    @property
    def info(self) -> SiteInfo:
        head = "a site head and " if self.head is not None else ""
        return SiteInfo(
            name=self.name,
            created=self.created,
            n_cases=self.n_cases,
            validated=True,
            note=f"{head}calibration, threshold and review band commissioned at this site on {self.n_cases} "
            f"labelled films ({self.created})",
        )

    def to_dict(self) -> dict[str, Any]:
        """site.json's run-time part (the commissioning adds its sample counts and figures beside it)."""
        return {
            "format": SITE_FORMAT,
            "name": self.name,
            "created": self.created,
            "n_cases": self.n_cases,
            "base_model": self.base_model,
            "calibration": {"type": "platt", "a": self.a, "b": self.b, "on": "site_head" if self.head else "logit"},
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "review_band": list(self.review_band),
            "review_band_rule": self.review_band_rule,
            "site_head": self.head.to_dict() if self.head is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], directory: Path) -> SiteProfile:
        if d.get("format") != SITE_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, this version reads format {SITE_FORMAT}")
        cal, band = d["calibration"], d["review_band"]
        lo, hi = float(band[0]), float(band[1])
        if not 0.0 <= lo <= float(d["threshold"]) <= hi <= 1.0:
            raise ValueError("the review band must contain the threshold, within [0, 1]")
        return cls(
            name=str(d["name"]),
            created=str(d["created"]),
            n_cases=int(d["n_cases"]),
            directory=directory,
            base_model={k: str(v) for k, v in d["base_model"].items()},
            a=float(cal["a"]),
            b=float(cal["b"]),
            threshold=float(d["threshold"]),
            review_band=(lo, hi),
            head=SiteHead.from_dict(d["site_head"]) if d.get("site_head") else None,
            threshold_rule=str(d.get("threshold_rule", "")),
            review_band_rule=str(d.get("review_band_rule", "")),
        )


def load_profile(directory: str | Path, model: ModelInfo) -> SiteProfile:
    """The profile in ``directory`` for the loaded ``model``; :class:`ConfigurationError` (the CLI exits 2) when it
    is missing, unreadable, or was fitted for another model, with a sentence naming both models."""
    directory = Path(directory).expanduser()
    path = directory / SITE_FILE
    try:
        profile = SiteProfile.from_dict(json.loads(path.read_text(encoding="utf-8")), directory)
    except OSError as exc:
        raise ConfigurationError(
            f"site profile {path}: cannot read it ({exc.strerror or exc}); "
            "make one with `cxrtriage commission` (CXRTRIAGE_SITE / --site name its folder)"
        ) from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ConfigurationError(f"site profile {path} is not a valid site.json: {exc}") from None
    fitted_for = profile.base_model.get("sha256", "")
    if fitted_for != model.sha256:
        raise ConfigurationError(
            f"the site profile {profile.name!r} ({path}) was fitted for the model "
            f"{profile.base_model.get('name', '?')} {profile.base_model.get('version', '')} (sha256 "
            f"{fitted_for[:12]}), not for the loaded model {model.name} {model.version} (sha256 {model.sha256[:12]}): "
            "its threshold means nothing for this model's scores; commission the site again for this model"
        )
    return profile


def site_info(profile: SiteProfile | None) -> SiteInfo:
    """What a result says of the operating point it used (interface 1: no profile -> not validated at this site)."""
    return profile.info if profile is not None else SiteInfo()
