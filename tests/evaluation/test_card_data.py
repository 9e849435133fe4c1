"""card.json: the measured results beside model.json. The --update-card commands rewrite it and never model.json,
the model card renders from both files, and a card of another model is never shown for this one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cxrtriage import config
from cxrtriage.backends.bundle_config import LEGACY_MEASURED_KEYS, META_FILE, BundleConfig
from cxrtriage.evaluation.card_data import CARD_DATA_FILE, CardData, read_card, write_fresh_card
from cxrtriage.evaluation.model_card import CARD_FILE, update_bundle_bench, write_card

SHIPPED = config.BUNDLED_WEIGHTS_DIR


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(SHIPPED, out)
    return out


def _as_legacy(out: Path) -> CardData:
    """Turn a copied bundle into one from before card.json (its measured blocks, the legacy keys, inside
    model.json; no card.json) and return the card it must read back."""
    card = json.loads((out / CARD_DATA_FILE).read_text())
    blocks = {k: v for k, v in card.items() if k in LEGACY_MEASURED_KEYS}
    (out / META_FILE).write_text(json.dumps({**json.loads((out / META_FILE).read_text()), **blocks}))
    (out / CARD_DATA_FILE).unlink()
    return CardData.from_mapping({"model": card["model"], **blocks})


def test_the_shipped_card_measures_the_shipped_model_and_renders_the_committed_model_card(tmp_path):
    bundle = BundleConfig.load(SHIPPED / META_FILE)
    card = read_card(SHIPPED)
    assert card == CardData.load(SHIPPED / CARD_DATA_FILE) and card.model.sha256 == bundle.sha256
    # what make evaluate, bench, generalisation and evaluate-operating-points measure, plus the generation it replaced
    assert {"test_metrics", "anatomy_eval", "operating_points", "previous_generation"} <= set(card.measured())
    assert not set(LEGACY_MEASURED_KEYS) & set(json.loads((SHIPPED / META_FILE).read_text()))  # none in model.json
    # every block an old model.json carried, plus those measured only since card.json exists
    assert set(CardData.model_fields) == {"model", *LEGACY_MEASURED_KEYS, "operating_points", "commissioning"}
    out = _copy(tmp_path)
    write_card(out)
    assert (out / CARD_FILE).read_text() == (SHIPPED / CARD_FILE).read_text()


def test_the_card_reports_what_commissioning_changed_from_the_committed_holdout_file():
    """The model card's commissioning section quotes prototype/eval/commissioning_shenzhen.json, the file the
    hold-out command wrote: the same figures, before and after, on the half the profile never saw."""
    held = json.loads((SHIPPED.parents[2] / "prototype" / "eval" / "commissioning_shenzhen.json").read_text())
    assert read_card(SHIPPED).commissioning == held
    text = (SHIPPED / CARD_FILE).read_text()
    for when in ("before", "after"):
        m = held["held_out_half"][when]
        assert f"| {m['threshold']:.4f} | {m['sensitivity']:.3f} " in text and f"| {m['specificity']:.3f} (" in text


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
    expected = _as_legacy(out)
    assert read_card(out) == expected
    write_card(out)
    ref = tmp_path / "ref"
    shutil.copytree(SHIPPED, ref)
    expected.save(ref / CARD_DATA_FILE)
    write_card(ref)
    assert (out / CARD_FILE).read_text() == (ref / CARD_FILE).read_text()


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
    expected = _as_legacy(out)
    keep_measurements(out)  # what fit-view-probe / fit-finding-probe do before writing model.json
    write_bundle_config(BundleConfig.load(out / META_FILE).to_dict(), out / META_FILE)
    assert LEGACY_MEASURED_KEYS[0] not in json.loads((out / META_FILE).read_text())
    assert read_card(out) == expected
    keep_measurements(SHIPPED)  # a current bundle: nothing to do


def test_an_export_keeps_the_replaced_models_figures_as_the_previous_generation(tmp_path):
    """A new model's card starts empty, but the model it replaces stays beside it: name, sha256, headline test
    figures and its operating-points report; exporting again before evaluating keeps that, not an empty card."""
    out = _copy(tmp_path)
    old = read_card(out)
    new_bundle = BundleConfig.load(out / META_FILE).model_copy(update={"sha256": "1" * 64})
    write_fresh_card(out, new_bundle)
    card = CardData.load(out / CARD_DATA_FILE)
    assert card.model.sha256 == "1" * 64 and card.test_metrics is None and card.operating_points is None
    prev = card.previous_generation
    assert prev["sha256"] == old.model.sha256 and prev["operating_points"] == old.operating_points
    assert prev["summary"]["nih_test_auc"] == old.test_metrics["summary"]["nih_test_auc"]
    nih95 = old.operating_points["sets"]["nih"]["specificity_at_sensitivity"]["0.95"]["specificity"]
    assert prev["summary"]["nih_test_specificity_at_sensitivity_0.95"] == nih95
    assert "cxrtriage evaluate" in prev["measured"]
    again = new_bundle.model_copy(update={"sha256": "2" * 64})
    write_fresh_card(out, again)  # the unmeasured "1" model is not a generation worth keeping
    assert CardData.load(out / CARD_DATA_FILE).previous_generation == prev
