"""The lung-opacity output: reported with its held-out AUC on every result, named in the explanation only when
that AUC reaches the bar, and fitted on training patients only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrtriage import config
from cxrtriage.backends.finding_probe import NAME_MIN_AUC, FindingProbe, load_finding_probes
from cxrtriage.decision import decide
from cxrtriage.explain.evidence import EvidenceBox
from cxrtriage.explain.text import build_explanation


def _block(auc: float, named: bool = True) -> dict:
    return {
        "name": "lung opacity",
        "mean": [0.0] * 3,
        "scale": [1.0] * 3,
        "coef": [0.0, 0.0, 2.0],
        "intercept": 0.0,
        "likely_above": 0.5,
        "held_out": {"auc": auc},
        "named_in_explanation": named,
    }


def test_a_finding_below_the_auc_bar_is_never_named_whatever_the_metadata_says():
    assert FindingProbe.from_meta("lung_opacity", _block(NAME_MIN_AUC - 0.01)).named is False
    assert FindingProbe.from_meta("lung_opacity", _block(NAME_MIN_AUC)).named is True
    assert FindingProbe.from_meta("lung_opacity", _block(0.9, named=False)).named is False


def test_probability_follows_the_logit_and_refuses_a_foreign_embedding():
    probe = FindingProbe.from_meta("lung_opacity", _block(0.8))
    low, high = probe.probability(np.array([1.0, 0.0]), -2.0), probe.probability(np.array([1.0, 0.0]), 2.0)
    assert low < 0.5 < high
    assert probe.probability(np.ones(5), 1.0) is None and probe.probability(None, 1.0) is None


def test_an_urgent_line_leads_with_a_nameable_finding_and_its_zone():
    box = EvidenceBox(x=0, y=0, w=10, h=10, strength=0.5, peak_xy=(5, 5), region="right lower zone")
    line = build_explanation(decide(0.87, 0.13, (0.12, 0.35)), [box], None, finding=("lung opacity", 0.81))
    assert line == "Urgent — likely abnormal; suggests lung opacity in the right lower zone."
    quiet = build_explanation(decide(0.05, 0.13, (0.12, 0.35)), [], None, finding=("lung opacity", 0.81))
    assert "opacity" not in quiet


def test_every_result_of_the_shipped_model_reports_the_output_with_its_held_out_auc(engine, nih_pixels):
    from cxrtriage.backends.bundle_config import BundleConfig

    probes = load_finding_probes(BundleConfig.load(config.BUNDLED_WEIGHTS_DIR / "model.json").finding_probes)
    assert [p.key for p in probes] == ["lung_opacity"]
    meta = json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text())
    block = meta["finding_probes"]["lung_opacity"]
    pred = engine.predict(nih_pixels, save_crops=False)
    assert len(pred.findings) == 1
    f = pred.findings[0]
    assert f.name == "lung opacity" and 0.0 <= f.probability <= 1.0
    assert f.held_out_auc == pytest.approx(block["held_out"]["auc"], abs=1e-3)
    assert f.named_in_explanation == (block["held_out"]["auc"] >= NAME_MIN_AUC)
    if not f.named_in_explanation:
        assert "opacity" not in pred.explanation


@pytest.mark.data
def test_the_output_is_fitted_on_training_patients_and_judged_on_the_others(data_dir):
    pytest.importorskip("sklearn")
    from cxrtriage.train.finding_probe import fit_finding_probe, rsna_inputs

    parts = rsna_inputs(None, data_dir)
    assert not set(parts["train"]["patients"]) & set(parts["val"]["patients"] + parts["test"]["patients"])
    block = fit_finding_probe(None, data_dir, write=False)
    held = block["held_out"]
    assert held["n"] == len(parts["val"]["y"]) + len(parts["test"]["y"]) and 0 < held["n_opacity"] < held["n"]
    assert held["auc_ci95"][0] <= held["auc"] <= held["auc_ci95"][1]
    assert block["named_in_explanation"] == (held["auc"] >= NAME_MIN_AUC)


def test_only_a_nameable_likely_finding_is_handed_to_the_explanation():
    from cxrtriage.backends.finding_probe import read_findings

    strong = FindingProbe.from_meta("lung_opacity", _block(0.8))
    weak = FindingProbe.from_meta("lung_opacity", _block(0.7))
    emb = np.array([1.0, 0.0])
    findings, nameable = read_findings([strong], emb, 2.0)
    assert nameable == ("lung opacity", findings[0].probability) and findings[0].probability > 0.5
    assert read_findings([strong], emb, -2.0)[1] is None  # unlikely: reported, not named
    findings, nameable = read_findings([weak], emb, 2.0)
    assert nameable is None and findings[0].held_out_auc == 0.7 and findings[0].named_in_explanation is False
