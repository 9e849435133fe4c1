"""card.json: the measured results beside model.json. The --update-card commands rewrite it and never model.json,
the model card renders from both files, and a card of another model is never shown for this one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cxrtriage import config
from cxrtriage.backends.bundle_config import LEGACY_MEASURED_KEYS, META_FILE, BundleConfig
from cxrtriage.evaluation.card_data import CARD_DATA_FILE, CardData, read_card
from cxrtriage.evaluation.model_card import CARD_FILE, update_bundle_bench, write_card

SHIPPED = config.BUNDLED_WEIGHTS_DIR


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(SHIPPED, out)
    return out


def test_the_shipped_card_measures_the_shipped_model_and_renders_the_committed_model_card(tmp_path):
    bundle = BundleConfig.load(SHIPPED / META_FILE)
    card = read_card(SHIPPED)
    assert card == CardData.load(SHIPPED / CARD_DATA_FILE) and card.model.sha256 == bundle.sha256
    assert set(card.measured()) == set(LEGACY_MEASURED_KEYS)  # everything measured moved out of model.json
    # every block an old model.json carried, plus those measured only since card.json exists
    assert set(CardData.model_fields) == {"model", *LEGACY_MEASURED_KEYS, "operating_points"}
    out = _copy(tmp_path)
    write_card(out)
    assert (out / CARD_FILE).read_text() == (SHIPPED / CARD_FILE).read_text()


def test_update_card_rewrites_card_json_and_never_model_json(tmp_path):
    out = _copy(tmp_path)
    before = (out / META_FILE).read_bytes()
    bench = {**read_card(out).bench, "command": "cxrtriage bench --repeats 3 --update-card"}
    update_bundle_bench(bench, out)
    assert (out / META_FILE).read_bytes() == before
    card = CardData.load(out / CARD_DATA_FILE)
    assert card.bench == bench and card.test_metrics == read_card(SHIPPED).test_metrics
    assert "cxrtriage bench --repeats 3 --update-card" in (out / CARD_FILE).read_text()


def test_a_card_of_another_model_is_not_shown(tmp_path):
    out = _copy(tmp_path)
    data = json.loads((out / CARD_DATA_FILE).read_text())
    data["model"]["sha256"] = "0" * 64
    (out / CARD_DATA_FILE).write_text(json.dumps(data))
    assert read_card(out).measured() == {}
    write_card(out)
    text = (out / CARD_FILE).read_text()
    assert "Not yet measured: run `cxrtriage evaluate --update-card`." in text and "## Speed and memory" not in text


def test_a_model_json_from_before_card_json_keeps_its_card(tmp_path):
    """Its measured keys are read (not moved: model.json is not rewritten) until card.json is written."""
    out = _copy(tmp_path)
    card = json.loads((out / CARD_DATA_FILE).read_text())
    legacy = {**json.loads((out / META_FILE).read_text()), **{k: v for k, v in card.items() if k != "model"}}
    (out / META_FILE).write_text(json.dumps(legacy))
    (out / CARD_DATA_FILE).unlink()
    assert read_card(out) == CardData.load(SHIPPED / CARD_DATA_FILE)
    write_card(out)
    assert (out / CARD_FILE).read_text() == (SHIPPED / CARD_FILE).read_text()


def test_recalibration_moves_the_old_operating_point_and_its_test_figures_to_the_card(tmp_path):
    from cxrtriage.train.recalibrate import store_operating_point

    out = _copy(tmp_path)
    old = BundleConfig.load(out / META_FILE)
    op = {
        "calibration": {"type": "platt", "a": 1.3, "b": 0.02, "fit_on": "a test"},
        "threshold": 0.2,
        "threshold_rule": "a rule",
        "review_band": [0.15, 0.3],
        "review_band_rule": "a band rule",
        "validation_by_source": {"nih": {"n": 3, "n_pos": 1, "ece": 0.1, "mean_score": 0.4}},
    }
    store_operating_point(out, op)
    new = BundleConfig.load(out / META_FILE)
    assert (new.calibration.a, new.threshold, new.review_band) == (1.3, 0.2, (0.15, 0.3))
    assert new.sha256 == old.sha256 and new.provenance.validation["by_source"] == op["validation_by_source"]
    card = CardData.load(out / CARD_DATA_FILE)
    prev = card.previous_calibration
    assert prev["calibration"] == old.calibration.as_json_dict() and prev["threshold"] == old.threshold
    assert prev["test_summary"] == read_card(SHIPPED).test_metrics["summary"]
    assert card.test_metrics is None and card.bench == read_card(SHIPPED).bench
    assert "Not yet measured" in (out / CARD_FILE).read_text()


def test_a_fitter_rewriting_an_old_model_json_keeps_its_measurements(tmp_path):
    from cxrtriage.backends.bundle_config import write_bundle_config
    from cxrtriage.evaluation.card_data import keep_measurements

    out = _copy(tmp_path)
    card = json.loads((out / CARD_DATA_FILE).read_text())
    legacy = {**json.loads((out / META_FILE).read_text()), **{k: v for k, v in card.items() if k != "model"}}
    (out / META_FILE).write_text(json.dumps(legacy))
    (out / CARD_DATA_FILE).unlink()
    keep_measurements(out)  # what fit-view-probe / fit-finding-probe do before writing model.json
    write_bundle_config(BundleConfig.load(out / META_FILE).to_dict(), out / META_FILE)
    assert LEGACY_MEASURED_KEYS[0] not in json.loads((out / META_FILE).read_text())
    assert read_card(out) == CardData.load(SHIPPED / CARD_DATA_FILE)
    keep_measurements(SHIPPED)  # a current bundle: nothing to do
