"""Finding outputs read from the classifier's embedding: a logistic regression per finding, fitted on radiologist
labels (:mod:`cxrtriage.train.finding_probe`) and stored in model.json under ``finding_probes`` (typed by
:class:`~cxrtriage.backends.bundle_blocks.FindingProbeConfig`) with its held-out AUC. Every result carries each
finding's probability and that AUC; the explanation names a finding only when the AUC is at least
:data:`NAME_MIN_AUC` (the bar for naming anything)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrtriage.backends.bundle_blocks import FindingProbeConfig
from cxrtriage.decision import reported
from cxrtriage.schema import Finding

#: a finding is named in the one-line explanation only when its held-out AUC reaches this
NAME_MIN_AUC = 0.75


@dataclass(frozen=True)
class FindingProbe:
    key: str
    name: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    likely_above: float
    held_out_auc: float | None
    named: bool

    @classmethod
    def from_config(cls, key: str, block: FindingProbeConfig) -> FindingProbe:
        """The probe of a checked ``finding_probes`` entry; named only if its held-out AUC reaches the bar."""
        auc = block.held_out.auc if block.held_out else None
        return cls(
            key=key,
            name=block.name if block.name is not None else key.replace("_", " "),
            mean=np.asarray(block.mean, np.float64),
            scale=np.asarray(block.scale, np.float64),
            coef=np.asarray(block.coef, np.float64),
            intercept=block.intercept,
            likely_above=block.likely_above,
            held_out_auc=auc,
            named=block.named_in_explanation and auc is not None and auc >= NAME_MIN_AUC,
        )

    @classmethod
    def from_meta(cls, key: str, block: Mapping[str, Any]) -> FindingProbe:
        """The probe of a ``finding_probes`` entry given as a plain mapping (checked as model.json's would be)."""
        return cls.from_config(key, FindingProbeConfig.model_validate_json(json.dumps(dict(block))))

    @staticmethod
    def inputs(embedding: np.ndarray, logit: float) -> np.ndarray:
        e = np.asarray(embedding, np.float64).ravel()
        e = e / max(float(np.linalg.norm(e)), 1e-12)
        return np.concatenate([e, [float(logit)]])

    def probability(self, embedding: np.ndarray | None, logit: float) -> float | None:
        """None when the embedding does not fit the probe (another classifier's bundle)."""
        if embedding is None:
            return None
        x = self.inputs(embedding, logit)
        if x.shape != self.mean.shape:
            return None
        z = float(((x - self.mean) / self.scale) @ self.coef + self.intercept)
        return float(1.0 / (1.0 + np.exp(-z)))


def load_finding_probes(blocks: Mapping[str, FindingProbeConfig] | None) -> list[FindingProbe]:
    """Every finding output of a bundle's ``finding_probes`` (None: none)."""
    return [FindingProbe.from_config(k, b) for k, b in (blocks or {}).items()]


def read_findings(
    probes: Iterable[FindingProbe], embedding: np.ndarray | None, logit: float
) -> tuple[list[Finding], tuple[str, float] | None]:
    """Every probe's output for a result, and the first nameable finding judged likely (name, probability)."""
    findings: list[Finding] = []
    nameable = None
    for probe in probes:
        p = probe.probability(embedding, logit)
        if p is None:
            continue
        findings.append(
            Finding(
                name=probe.name,
                probability=reported(p),
                named_in_explanation=probe.named,
                held_out_auc=None if probe.held_out_auc is None else round(probe.held_out_auc, 3),
            )
        )
        if probe.named and p >= probe.likely_above and nameable is None:
            nameable = (probe.name, reported(p))
    return findings, nameable
