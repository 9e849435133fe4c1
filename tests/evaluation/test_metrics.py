"""Known-answer tests for cxrtriage.evaluation.metrics: every expected value here is computed by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from cxrtriage.evaluation import metrics as M

# A small example used by several tests (hand-checked):
#   positives: 0.9, 0.8, 0.4, 0.3      negatives: 0.5, 0.1
Y6 = [1, 1, 1, 1, 0, 0]
S6 = [0.9, 0.8, 0.4, 0.3, 0.5, 0.1]


# --------------------------------------------------------------------------- AUC


def test_auc_perfect_reversed_and_ties() -> None:
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # pairs (pos, neg): (.5,.5)=1/2, (.5,.2)=1, (.8,.5)=1, (.8,.2)=1 -> 3.5 / 4
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.8]) == pytest.approx(0.875)


def test_auc_single_class_is_nan() -> None:
    assert math.isnan(M.roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(M.roc_auc([0, 0], [0.1, 0.5]))


def test_auc_accepts_bool_and_float_labels() -> None:
    assert M.roc_auc(np.array([False, True]), [0.2, 0.7]) == 1.0
    assert M.roc_auc([0.0, 1.0], [0.2, 0.7]) == 1.0


# --------------------------------------------------------------------------- bootstrap


def _toy_patients(n_patients: int = 60, images_per_patient: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    y_pat = rng.integers(0, 2, n_patients)
    s_pat = np.clip(0.5 + 0.25 * (2 * y_pat - 1) + rng.normal(0, 0.25, n_patients), 0, 1)
    y = np.repeat(y_pat, images_per_patient)
    s = np.repeat(s_pat, images_per_patient)
    pid = np.repeat([f"p{i:03d}" for i in range(n_patients)], images_per_patient)
    return y, s, pid, y_pat, s_pat


def test_cluster_bootstrap_contains_estimate_and_is_reproducible() -> None:
    y, s, pid, _, _ = _toy_patients()
    auc = M.roc_auc(y, s)
    ci1 = M.bootstrap_auc_ci(y, s, n_boot=300, seed=7, groups=pid)
    ci2 = M.bootstrap_auc_ci(y, s, n_boot=300, seed=7, groups=pid)
    assert ci1 == ci2
    assert ci1[0] <= auc <= ci1[1]
    assert ci1 != M.bootstrap_auc_ci(y, s, n_boot=300, seed=8, groups=pid)


def test_cluster_bootstrap_equals_patient_level_bootstrap() -> None:
    # Duplicating each patient's row 3 times does not change any AUC, so resampling whole
    # patients must give exactly the interval of the one-row-per-patient data; resampling
    # images instead treats the copies as independent and is too narrow.
    y, s, pid, y_pat, s_pat = _toy_patients()
    per_patient = M.bootstrap_auc_ci(y_pat, s_pat, n_boot=400, seed=3)
    clustered = M.bootstrap_auc_ci(y, s, n_boot=400, seed=3, groups=pid)
    naive = M.bootstrap_auc_ci(y, s, n_boot=400, seed=3)
    assert clustered == pytest.approx(per_patient)
    assert (naive[1] - naive[0]) < (clustered[1] - clustered[0])


def test_bootstrap_single_class_gives_nan_interval() -> None:
    lo, hi = M.bootstrap_auc_ci([1, 1, 1], [0.2, 0.3, 0.4], n_boot=10)
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_rejects_bad_groups_and_params() -> None:
    with pytest.raises(ValueError, match="groups"):
        M.bootstrap_auc_ci(Y6, S6, n_boot=10, groups=["a", "b"])
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_auc_ci(Y6, S6, n_boot=10, alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        M.bootstrap_auc_ci(Y6, S6, n_boot=0)


# --------------------------------------------------------------------------- thresholds


def test_threshold_for_sensitivity_hand_computed() -> None:
    # sorted positive scores 0.9, 0.8, 0.4, 0.3; k = ceil(target * 4)
    assert M.threshold_for_sensitivity(Y6, S6, target=0.75) == 0.4  # k = 3
    assert M.threshold_for_sensitivity(Y6, S6, target=0.95) == 0.3  # k = 4
    assert M.threshold_for_sensitivity(Y6, S6, target=0.5) == 0.8  # k = 2
    assert M.threshold_for_sensitivity(Y6, S6, target=0.51) == 0.4  # k = 3


def test_threshold_for_sensitivity_float_rounding() -> None:
    # 0.95 * 20 = 19.000000000000004 in floating point; 19 of 20 positives suffice.
    y = [1] * 20
    s = [i / 20 for i in range(20, 0, -1)]  # 1.0, 0.95, ..., 0.05
    assert M.threshold_for_sensitivity(y, s, target=0.95) == pytest.approx(s[18])


def test_threshold_for_sensitivity_is_highest_feasible() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 2)  # many ties
    for target in (0.8, 0.9, 0.95, 1.0):
        t = M.threshold_for_sensitivity(y, s, target)
        sens = lambda thr: np.mean(s[y == 1] >= thr)  # noqa: E731
        assert sens(t) >= target
        higher = np.unique(s[s > t])
        assert all(sens(h) < target for h in higher)


def test_threshold_for_sensitivity_needs_positives() -> None:
    with pytest.raises(ValueError, match="positive"):
        M.threshold_for_sensitivity([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="target"):
        M.threshold_for_sensitivity(Y6, S6, target=0.0)


def test_bootstrap_threshold_interval() -> None:
    y, s, pid, _, _ = _toy_patients()
    lo, hi = M.bootstrap_threshold_interval(y, s, target=0.9, n_boot=200, seed=1, groups=pid)
    assert (lo, hi) == M.bootstrap_threshold_interval(y, s, target=0.9, n_boot=200, seed=1, groups=pid)
    assert s[y == 1].min() <= lo <= hi <= s[y == 1].max()
    # Every resample of Y6 has a threshold equal to one of the positive scores.
    lo6, hi6 = M.bootstrap_threshold_interval(Y6, S6, n_boot=100, alpha=0.5)
    assert 0.3 <= lo6 <= hi6 <= 0.9


# --------------------------------------------------------------------------- operating point


def test_operating_point_counts_and_rates() -> None:
    # threshold 0.4 -> called Urgent: 0.9, 0.8, 0.4 (pos) and 0.5 (neg); missed: 0.3
    op = M.operating_point(Y6, S6, 0.4)
    assert (op.tp, op.fp, op.tn, op.fn) == (3, 1, 1, 1)
    assert op.sensitivity == 0.75
    assert op.specificity == 0.5
    assert op.ppv == 0.75
    assert op.npv == 0.5
    assert op.threshold == 0.4


def test_operating_point_undefined_rates_are_nan_and_none_in_dict() -> None:
    op = M.operating_point([0, 0, 0], [0.1, 0.2, 0.3], 0.5)  # no positives, nothing flagged
    assert (op.tp, op.fp, op.tn, op.fn) == (0, 0, 3, 0)
    assert math.isnan(op.sensitivity) and math.isnan(op.ppv)
    assert op.specificity == 1.0 and op.npv == 1.0
    d = op.to_dict()
    assert d["sensitivity"] is None and d["ppv"] is None and d["tn"] == 3
    json.dumps(d, allow_nan=False)


def test_sensitivity_at_specificity_and_back() -> None:
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    assert M.sensitivity_at_specificity(y, s, 0.75) == 1.0  # t = 0.4: only 0.6 is a false positive
    assert M.sensitivity_at_specificity(y, s, 1.0) == 0.75  # t = 0.7
    assert M.specificity_at_sensitivity(y, s, 1.0) == 0.75
    assert M.specificity_at_sensitivity(y, s, 0.75) == 1.0
    assert math.isnan(M.sensitivity_at_specificity([1, 1], [0.1, 0.2], 0.9))


# --------------------------------------------------------------------------- calibration


def test_ece_perfectly_calibrated_is_zero() -> None:
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4  # 1/4 and 3/4 observed
    assert M.expected_calibration_error(y, p) == pytest.approx(0.0)


def test_ece_hand_computed() -> None:
    # bin [0.1,0.2): conf 0.1, rate 0.5, weight 1/2 -> 0.2 ; bin [0.9,1]: conf 0.9, rate 1 -> 0.05
    assert M.expected_calibration_error([1, 0, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.25)
    # one bin for everything: |3/4 - 0.5| = 0.25
    assert M.expected_calibration_error([1, 0, 1, 1], [0.1, 0.1, 0.9, 0.9], n_bins=1) == pytest.approx(0.25)
    # probability exactly 1.0 lands in the last bin
    assert M.expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0


def test_reliability_table() -> None:
    rows = M.reliability_table([1, 0, 1, 1], [0.1, 0.1, 0.9, 1.0], n_bins=10)
    assert len(rows) == 10
    assert rows[1]["n"] == 2 and rows[1]["observed_rate"] == 0.5 and rows[1]["mean_confidence"] == pytest.approx(0.1)
    assert rows[9]["n"] == 2 and rows[9]["mean_confidence"] == pytest.approx(0.95)
    assert rows[0]["n"] == 0 and rows[0]["mean_confidence"] is None
    ece = sum(r["n"] * r["gap"] for r in rows if r["n"]) / 4
    assert ece == pytest.approx(M.expected_calibration_error([1, 0, 1, 1], [0.1, 0.1, 0.9, 1.0]))


def test_calibration_requires_probabilities() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.expected_calibration_error([0, 1], [-0.1, 0.5])
    with pytest.raises(ValueError, match="n_bins"):
        M.expected_calibration_error([0, 1], [0.1, 0.5], n_bins=0)


# --------------------------------------------------------------------------- boxes


def test_box_iou_known_answers() -> None:
    assert M.box_iou((10, 20, 30, 40), (10, 20, 30, 40)) == 1.0
    assert M.box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert M.box_iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges
    assert M.box_iou((0, 0, 2, 2), (1, 0, 2, 2)) == pytest.approx(1 / 3)  # inter 2, union 6
    assert M.box_iou((0, 0, 2, 2), (0, 0, 2, 1)) == pytest.approx(0.5)  # contained half
    assert M.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_best_box_iou() -> None:
    gt = [(0, 0, 2, 2), (100, 100, 10, 10)]
    assert M.best_box_iou([(1, 0, 2, 2), (100, 100, 10, 10)], gt) == 1.0
    assert M.best_box_iou([(1, 0, 2, 2)], gt) == pytest.approx(1 / 3)
    assert M.best_box_iou([], gt) == 0.0
    assert M.best_box_iou(np.zeros((0, 4)), gt) == 0.0
    with pytest.raises(ValueError, match="gt_boxes is empty"):
        M.best_box_iou([(0, 0, 1, 1)], [])


def test_pointing_hit_inclusive() -> None:
    gt = [(10, 10, 5, 5)]
    assert M.pointing_hit((12, 12), gt)
    assert M.pointing_hit((10, 15), gt)  # corner counts
    assert not M.pointing_hit((15.01, 12), gt)
    assert M.pointing_hit((0, 0), [(50, 50, 1, 1), (0, 0, 1, 1)])
    with pytest.raises(ValueError, match="gt_boxes is empty"):
        M.pointing_hit((1, 1), [])


def test_box_validation() -> None:
    with pytest.raises(ValueError, match="4 numbers"):
        M.box_iou((0, 0, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError, match="negative"):
        M.box_iou((0, 0, -1, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError, match="NaN"):
        M.best_box_iou([(0, 0, float("nan"), 1)], [(0, 0, 1, 1)])
    with pytest.raises(ValueError, match="point_xy"):
        M.pointing_hit((1, 2, 3), [(0, 0, 1, 1)])


# --------------------------------------------------------------------------- reports


def test_subgroup_metrics() -> None:
    views = ["PA", "PA", "AP", "AP", "PA", "AP"]
    out = M.subgroup_metrics(Y6, S6, views, 0.4)
    assert list(out) == ["AP", "PA"]
    # PA: y=[1,1,0] s=[.9,.8,.5] ; AP: y=[1,1,0] s=[.4,.3,.1]
    assert out["PA"]["n"] == 3 and out["PA"]["n_pos"] == 2
    assert out["PA"]["auc"] == 1.0 and out["PA"]["sensitivity"] == 1.0 and out["PA"]["specificity"] == 0.0
    assert out["AP"]["auc"] == 1.0 and out["AP"]["sensitivity"] == 0.5 and out["AP"]["specificity"] == 1.0
    with pytest.raises(ValueError, match="groups"):
        M.subgroup_metrics(Y6, S6, ["PA"], 0.4)


def test_summarize_is_json_ready() -> None:
    y, s, pid, _, _ = _toy_patients()
    out = M.summarize(y, s, 0.5, groups=pid, n_boot=200, seed=0)
    json.dumps(out, allow_nan=False)
    assert out["n"] == len(y) and out["n_pos"] == int(y.sum())
    assert out["auc"] == pytest.approx(M.roc_auc(y, s))
    assert out["auc_ci95"] == pytest.approx(list(M.bootstrap_auc_ci(y, s, n_boot=200, seed=0, groups=pid)))
    assert out["operating_point"] == M.operating_point(y, s, 0.5).to_dict()
    assert out["ece"] == pytest.approx(M.expected_calibration_error(y, s))
    # One class: AUC and its CI are undefined -> None, not NaN.
    one = M.summarize([0, 0, 0], [0.1, 0.2, 0.3], 0.5, n_boot=10)
    assert one["auc"] is None and one["auc_ci95"] == [None, None]
    json.dumps(one, allow_nan=False)
    # Scores that are not probabilities: no ECE rather than an error.
    assert M.summarize([0, 1], [-2.0, 3.0], 0.0, n_boot=10)["ece"] is None


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "same length"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0, -1], [0.1, 0.2], "only 0 and 1"),
        (["urgent", "no"], [0.1, 0.2], "numeric"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1], [0.1, float("inf")], "NaN or infinite"),
        ([], [], "empty"),
        ([0, 1], ["a", "b"], "numeric"),
    ],
)
def test_input_validation(y, s, match) -> None:
    for fn in (M.roc_auc, lambda a, b: M.operating_point(a, b, 0.5), M.expected_calibration_error):
        with pytest.raises(ValueError, match=match):
            fn(y, s)


def test_threshold_validation() -> None:
    with pytest.raises(ValueError, match="threshold"):
        M.operating_point(Y6, S6, float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        M.subgroup_metrics(Y6, S6, ["a"] * 6, "high")


def test_import_does_not_need_sklearn() -> None:
    code = "import sys, cxrtriage.evaluation.metrics; assert 'sklearn' not in sys.modules, 'sklearn imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_sklearn_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"cxrtriage\[eval\]"):
        M.roc_auc([0, 1], [0.1, 0.9])


def test_bootstrap_fast_auc_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), 1)  # ties on purpose
        levels = np.unique(s, return_inverse=True)[1].reshape(-1)
        fast = M.bootstrap.auc_from_levels(y, levels, int(levels.max()) + 1)
        if y.min() == y.max():
            assert math.isnan(fast)
        else:
            assert fast == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_bootstrap_refuses_missing_cluster_ids() -> None:
    # A missing id must not silently merge all such cases into one giant "None" cluster.
    with pytest.raises(ValueError, match="missing ids"):
        M.bootstrap_auc_ci([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], n_boot=10, groups=["a", None, "b", None])
