"""The view probe's recipe (issue 24): augmented laterals and frontal variants train only the folds that did not
hold their film out, the refusal rule never refuses a frontal film it was fitted above, and the bundled probe's
nested-CV figures meet the issue's aim (laterals refused 9 in 10, no frontal film refused)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrtriage.backends.bundle_config import BundleConfig
from cxrtriage.config import BUNDLED_WEIGHTS_DIR
from cxrtriage.train.view_probe_cv import (
    LATERAL_AUGMENTATIONS,
    ProbeData,
    choose_c,
    cv_scores,
    folds,
    outcome,
)

pytest.importorskip("sklearn")


def _data(n_frontal: int = 120, n_lateral: int = 15, seed: int = 0) -> ProbeData:
    """Frontal films near 0, laterals shifted along the first input; two augmented copies of every film."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_frontal, int), np.ones(n_lateral, int)]
    x = rng.normal(size=(len(y), 6))
    x[y == 1, 0] += 2.5
    aug_of = np.repeat(np.arange(len(y)), 2)
    return ProbeData(
        x=x,
        y=y,
        pairs=y == 0,
        x_aug=x[aug_of] + rng.normal(scale=0.1, size=(len(aug_of), 6)),
        aug_of=aug_of,
        aug_pairs=(y == 0)[aug_of],
    )


def test_a_films_own_augmentations_never_train_the_model_that_scores_it() -> None:
    data = _data()
    odd = len(data.y) - 1  # a lateral whose augmentations point somewhere no other film lies
    x_aug = data.x_aug.copy()
    x_aug[data.aug_of == odd] = 50.0
    with_own = ProbeData(data.x, data.y, data.pairs, x_aug, data.aug_of, data.aug_pairs)
    keep = data.aug_of != odd
    without_own = ProbeData(data.x, data.y, data.pairs, data.x_aug[keep], data.aug_of[keep], data.aug_pairs[keep])
    splits = folds(data.y)
    a = cv_scores(with_own, splits, lambda _: 0.1)[0]
    b = cv_scores(without_own, splits, lambda _: 0.1)[0]
    fold = next(te for _, te in splits if odd in te)
    assert a[fold] == pytest.approx(b[fold])  # the fold that held it out saw neither
    assert not np.isnan(a).any()


def test_cut_offs_from_cross_validated_scores_refuse_no_frontal_film_nor_variant() -> None:
    data = _data(seed=3)
    scores, aug_scores, cs = cv_scores(data, folds(data.y), lambda _: 0.1)
    result = outcome(data, scores, aug_scores)
    assert cs == [0.1] * 5
    assert result["frontal_refused"] == 0 and result["variant_refused"] == 0
    frontal = np.r_[scores[data.y == 0], aug_scores[data.frontal_aug()]]
    assert result["reject_above"] > frontal.max()
    assert result["laterals_refused"] + result["laterals_review"] + result["laterals_passed_as_frontal"] == 15


def test_c_is_chosen_from_the_grid_on_the_rows_given() -> None:
    data = _data(seed=5)
    assert choose_c(data, np.arange(len(data.y)), (0.05,)) == 0.05
    assert choose_c(data, np.arange(len(data.y)), (0.01, 1.0)) in (0.01, 1.0)


@pytest.mark.parametrize("name", sorted(LATERAL_AUGMENTATIONS))
def test_lateral_augmentations_give_a_grey_film_deterministically(name: str) -> None:
    film = np.random.default_rng(0).random((60, 50)).astype(np.float32)
    a, b = LATERAL_AUGMENTATIONS[name](film), LATERAL_AUGMENTATIONS[name](film)
    assert a.ndim == 2 and min(a.shape) >= 30
    assert np.array_equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_bundled_probe_refuses_nine_laterals_in_ten_and_no_frontal_film_in_cross_validation() -> None:
    probe = BundleConfig.load(BUNDLED_WEIGHTS_DIR / "model.json").view_probe
    assert probe is not None and probe.validation is not None
    v = probe.validation
    assert v["cv5_laterals_refused"] >= 0.9 * v["laterals"]
    assert v["cv5_laterals_passed_as_frontal"] == 0
    assert v["cv5_frontal_refused"] == 0 and v["cv5_variant_refused"] == 0
    assert all(h["refused"] == 0 for h in v["held_out_frontal"].values())
