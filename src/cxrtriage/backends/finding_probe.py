"""Finding outputs read from the classifier's embedding: a logistic regression per finding, fitted on radiologist
labels (:mod:`cxrtriage.train.finding_probe`) and stored in model.json under ``finding_probes`` with its held-out
AUC. Every result carries each finding's probability and that AUC; the explanation names a finding only when the
AUC is at least :data:`NAME_MIN_AUC` (the issue's bar for naming anything)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

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
    def from_meta(cls, key: str, block: Mapping[str, Any]) -> "FindingProbe":
        auc = (block.get("held_out") or {}).get("auc")
        return cls(key=key, name=str(block.get("name", key.replace("_", " "))),
                   mean=np.asarray(block["mean"], np.float64), scale=np.asarray(block["scale"], np.float64),
                   coef=np.asarray(block["coef"], np.float64), intercept=float(block["intercept"]),
                   likely_above=float(block.get("likely_above", 0.5)), held_out_auc=None if auc is None else float(auc),
                   named=bool(block.get("named_in_explanation")) and auc is not None and float(auc) >= NAME_MIN_AUC)

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


def load_finding_probes(meta: Mapping[str, Any]) -> list[FindingProbe]:
    return [FindingProbe.from_meta(k, b) for k, b in (meta.get("finding_probes") or {}).items()]


def read_findings(probes: Iterable[FindingProbe], embedding: np.ndarray | None,
                  logit: float) -> tuple[list[Finding], tuple[str, float] | None]:
    """Every probe's output for a result, and the first nameable finding judged likely (name, probability)."""
    findings: list[Finding] = []
    nameable = None
    for probe in probes:
        p = probe.probability(embedding, logit)
        if p is None:
            continue
        findings.append(Finding(name=probe.name, probability=reported(p), named_in_explanation=probe.named,
                                held_out_auc=None if probe.held_out_auc is None else round(probe.held_out_auc, 3)))
        if probe.named and p >= probe.likely_above and nameable is None:
            nameable = (probe.name, reported(p))
    return findings, nameable
