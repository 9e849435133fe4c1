"""The training augmentation (:mod:`cxrtriage.train.augment`), generation 3's acquisition operations above all: each
does what it says when switched on, masks move with the image, nothing is mirrored, a seed reproduces a batch."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra")

from cxrtriage.train.augment import LEVELS, Acquisition, augment, equalise, gaussian_blur  # noqa: E402

OFF = Acquisition(**{f.name: 0.0 for f in dataclasses.fields(Acquisition)})
OPS = [f.name for f in dataclasses.fields(Acquisition)]


def _films(n: int = 8, s: int = 64) -> torch.Tensor:
    """Film-like test images: a vertical exposure gradient, two darker 'lungs', a bright 'heart' left of centre
    (the image's right), fine texture."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    base = 0.3 + 0.3 * yy
    base = base - 0.15 * (((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1).float()
    base = base - 0.15 * (((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1).float()
    base = base + 0.25 * (((xx - 0.6) / 0.1) ** 2 + ((yy - 0.7) / 0.1) ** 2 < 1).float()
    texture = 0.05 * torch.sin(xx * 40) * torch.sin(yy * 37)
    return (base + texture).clamp(0, 1).expand(n, 1, s, s).clone()


def _edges(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute horizontal + vertical difference: how sharp an image is."""
    return (x.diff(dim=-1).abs().mean(dim=(1, 2, 3)) + x.diff(dim=-2).abs().mean(dim=(1, 2, 3))) / 2


def _run(x: torch.Tensor, acq: Acquisition, seed: int = 0, **kw: object) -> torch.Tensor:
    return augment(x.clone(), torch.Generator().manual_seed(seed), "gen3", acquisition=acq, **kw)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_keeps_shape_and_range_and_moves_masks_to_the_cam_grid(level: str) -> None:
    x, masks = _films(), torch.rand(8, 2, 64, 64)
    out, moved = augment(x, torch.Generator().manual_seed(1), level, masks=masks, mask_size=16)
    assert out.shape == x.shape and moved.shape == (8, 2, 16, 16)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.isfinite(out).all() and torch.isfinite(moved).all()


@pytest.mark.parametrize("level", LEVELS)
def test_a_seed_reproduces_the_batch_and_another_seed_does_not(level: str) -> None:
    x = _films()
    a = augment(x.clone(), torch.Generator().manual_seed(7), level)
    b = augment(x.clone(), torch.Generator().manual_seed(7), level)
    c = augment(x.clone(), torch.Generator().manual_seed(8), level)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_the_old_strong_flag_is_gen2() -> None:
    x = _films()
    assert torch.equal(
        augment(x.clone(), torch.Generator().manual_seed(3), True),
        augment(x.clone(), torch.Generator().manual_seed(3), "gen2"),
    )
    with pytest.raises(ValueError, match="gen1"):
        augment(x, torch.Generator(), "gen4")


@pytest.mark.parametrize("op", OPS)
def test_each_acquisition_operation_changes_the_image_when_switched_on(op: str) -> None:
    x = _films()
    off = _run(x, OFF)
    on = _run(x, dataclasses.replace(OFF, **{op: 1.0}))
    changed = (on - off).abs().flatten(1).mean(1)
    assert (changed > 2e-3).float().mean() >= 0.75, (op, changed)


def test_blur_and_sharpening_go_both_ways() -> None:
    x = _films(16)
    off, on = _run(x, OFF), _run(x, dataclasses.replace(OFF, blur_sharpen=1.0))
    ratio = _edges(on) / _edges(off)
    assert (ratio < 0.9).any() and (ratio > 1.1).any(), ratio


def test_lost_resolution_softens_edges() -> None:
    x = _films()
    off, on = _run(x, OFF), _run(x, dataclasses.replace(OFF, resolution=1.0))
    assert (_edges(on) < _edges(off)).all()


def test_equalisation_spreads_a_narrow_exposure() -> None:
    x = 0.45 + 0.1 * _films()  # a flat, grey film: all of it within 0.45-0.55
    off, on = _run(x, OFF), _run(x, dataclasses.replace(OFF, equalise=1.0))
    centre = slice(16, 48)  # away from the black corners a rotation or shift leaves
    spread_off, spread_on = (t[..., centre, centre].flatten(1).std(1) for t in (off, on))
    assert (spread_on > 1.3 * spread_off).all(), (spread_on, spread_off)


def test_jpeg_leaves_8_bit_values() -> None:
    on = _run(_films(), dataclasses.replace(OFF, jpeg=1.0))
    assert torch.allclose(on * 255, (on * 255).round(), atol=1e-3)


def test_aspect_jitter_squashes_and_stretches_the_masks_with_the_image() -> None:
    x = torch.zeros(16, 1, 64, 64)
    x[:, :, 20:44, 20:44] = 1.0  # a centred square, and the same square as a mask
    masks = x.clone()
    out, moved = _run(x, dataclasses.replace(OFF, aspect=1.0), masks=masks, mask_size=64)
    ratios = []
    for k in range(16):
        bright = out[k, 0] > out[k, 0].mean() + 0.5 * out[k, 0].std()
        assert (moved[k, 0][bright] > 0.5).float().mean() > 0.85  # where the square went, the mask went too
        rows, cols = torch.nonzero(moved[k, 0] > 0.5, as_tuple=True)
        ratios.append(float(cols.max() - cols.min() + 1) / float(rows.max() - rows.min() + 1))
    assert min(ratios) < 0.9 and max(ratios) > 1.1, ratios  # squashed one way on some films, the other on others


def test_gen3_never_flips_left_right() -> None:
    x = torch.zeros(16, 1, 64, 64)
    x[:, :, 20:44, 4:16] = 1.0  # a bright block on the image left
    out = _run(x, Acquisition(**{name: 1.0 for name in OPS}))
    left, right = out[..., :, :32].mean(dim=(1, 2, 3)), out[..., :, 32:].mean(dim=(1, 2, 3))
    assert (left - right > 0.05).all(), (left, right)  # brightness shifts both halves; a mirror would swap them


def test_equalise_flattens_the_histogram() -> None:
    x = (torch.linspace(0, 1, 64 * 64) ** 2).view(1, 1, 64, 64)  # most pixels dark
    hist = torch.histc(equalise(x), bins=4, min=0, max=1)
    assert float(hist.max() / hist.min()) < 1.3


def test_gaussian_blur_uses_each_images_own_sigma_and_keeps_a_flat_image() -> None:
    x = _films(2)
    out = gaussian_blur(x, torch.tensor([0.6, 2.0]))
    e = _edges(out)
    assert e[1] < e[0] < _edges(x)[0]
    flat = torch.full((1, 1, 32, 32), 0.4)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([1.5])), flat, atol=1e-6)


def test_train_config_keeps_strong_augment_meaning_gen2() -> None:
    from cxrtriage.train.trainer import TrainConfig

    assert TrainConfig(data_dir="d").augment == "gen1"
    assert TrainConfig(data_dir="d", strong_augment=True).augment == "gen2"  # an old command or recorded config
    new = TrainConfig(data_dir="d", augment="gen3")
    assert new.strong_augment  # a reader of the recorded flag alone sees more than gen1
    with pytest.raises(ValueError):
        TrainConfig(data_dir="d", augment="gen1", strong_augment=True)
    with pytest.raises(ValueError):
        TrainConfig(data_dir="d", augment="gen9")


@pytest.mark.parametrize(
    ("argv", "level"),
    [([], "gen1"), (["--augment", "gen3"], "gen3"), (["--strong-augment"], "gen2"), (["--gen1-augment"], "gen1")],
)
def test_the_train_command_passes_the_augmentation(argv: list[str], level: str) -> None:
    import argparse

    from cxrtriage.cli.training import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    assert parser.parse_args(["train", *argv]).augment == level
