"""The statistics of drift monitoring on synthetic samples with known answers: PSI, the two-sample KS test (the
numpy implementation against scipy's), the two-proportion test and the standardised mean difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrtriage.monitoring.stats import SCORE_BINS, ks_two_sample, ks_two_sample_numpy, psi, smd, two_proportion_p


def test_psi_is_near_zero_for_one_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.beta(2, 5, 2000), rng.beta(2, 5, 2000)
    assert psi(a, b) < 0.02
    shifted = rng.beta(5, 2, 2000)
    assert psi(a, shifted) > 1.0


def test_psi_by_hand_on_two_bins() -> None:
    # 10 scores below 0.5 against 10 above, on two bins: shares (10.5/21, 0.5/21) and the reverse
    value = psi([0.1] * 10, [0.9] * 10, bins=(0.0, 0.5, 1.0))
    p, q = np.array([10.5, 0.5]) / 11, np.array([0.5, 10.5]) / 11
    assert value == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert SCORE_BINS[0] == 0.0 and SCORE_BINS[-1] == 1.0 and len(SCORE_BINS) == 11


def test_psi_counts_a_score_of_exactly_one_in_the_last_bin() -> None:
    assert psi([1.0] * 50, [0.95] * 50) < 0.01  # same last bin, whichever edge


def test_ks_numpy_agrees_with_scipy() -> None:
    rng = np.random.default_rng(1)
    for a, b in [(rng.normal(0, 1, 300), rng.normal(0.3, 1, 250)), (rng.uniform(size=80), rng.uniform(size=120))]:
        ours, theirs = ks_two_sample_numpy(a, b), ks_two_sample(a, b)
        assert theirs.method == "scipy.stats.ks_2samp"
        assert ours.statistic == pytest.approx(theirs.statistic)
        assert ours.p_value == pytest.approx(theirs.p_value, abs=0.02)
        assert "numpy" in ours.method


def test_ks_finds_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(2)
    assert ks_two_sample_numpy(rng.normal(0, 1, 400), rng.normal(0, 1, 400)).p_value > 0.01
    shifted = ks_two_sample_numpy(rng.normal(0, 1, 400), rng.normal(0.5, 1, 400))
    assert shifted.p_value < 1e-6 and shifted.statistic > 0.15


def test_two_proportion_test() -> None:
    assert two_proportion_p(38, 100, 71, 100) < 1e-5
    assert two_proportion_p(38, 100, 40, 100) > 0.5
    assert two_proportion_p(0, 10, 0, 10) == 1.0 and two_proportion_p(1, 0, 1, 1) == 1.0


def test_standardised_mean_difference() -> None:
    assert smd([0.0, 2.0] * 50, [1.0, 3.0] * 50) == pytest.approx(1.0 / math.sqrt(100 / 99), rel=1e-3)
    assert smd([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert smd([0.5, 0.5], [0.6, 0.6]) == math.inf
    assert smd([0.8] * 40, [0.8] * 60) == 0.0  # constant and equal, whatever the rounding of the means


def test_psi_of_small_samples_is_judged_against_its_sampling_noise() -> None:
    from scipy.stats import chi2

    from cxrtriage.monitoring.stats import chi2_sf, psi_p_value

    for x, df in [(7.0, 9), (30.0, 9), (3.0, 1), (12.0, 4)]:
        assert chi2_sf(x, df) == pytest.approx(chi2.sf(x, df), rel=1e-9)
    # 50 against 55 draws of one distribution: a PSI over 0.25 is common, and not significant
    rng = np.random.default_rng(3)
    values = [psi(rng.beta(2, 3, 50), rng.beta(2, 3, 55)) for _ in range(200)]
    assert np.mean(np.asarray(values) > 0.25) > 0.3
    assert psi_p_value(0.27, 50, 55) > 0.5
    assert psi_p_value(0.27, 1000, 1000) < 1e-6
