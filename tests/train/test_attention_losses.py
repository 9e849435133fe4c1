"""The activation-map losses of the weak supervision (RSNA boxes, lung fields) and the augmentation that moves masks
with the image."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cxrtriage.train.augment import augment  # noqa: E402
from cxrtriage.train.trainer import attention_losses  # noqa: E402


def _fmap_with_peak(i: int, j: int) -> torch.Tensor:
    f = torch.zeros(1, 2, 16, 16)
    f[0, 0, i, j] = 5.0
    return f


def test_box_loss_is_lower_when_the_map_peaks_inside_the_radiologists_box() -> None:
    w = torch.tensor([1.0, 0.0])
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 0, 2:6, 2:6] = 1  # the box
    masks[0, 1] = 1  # lungs everywhere
    inside, _ = attention_losses(_fmap_with_peak(3, 3), w, masks)
    outside, _ = attention_losses(_fmap_with_peak(12, 12), w, masks)
    assert inside < outside


def test_lung_loss_is_the_share_of_positive_map_outside_the_lungs() -> None:
    w = torch.tensor([1.0, 0.0])
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 1, :, :8] = 1  # lungs on the left half
    _, in_lungs = attention_losses(_fmap_with_peak(5, 3), w, masks)
    _, off_lungs = attention_losses(_fmap_with_peak(5, 12), w, masks)
    assert float(in_lungs) == pytest.approx(0.0, abs=1e-6)
    assert float(off_lungs) == pytest.approx(1.0, abs=1e-4)


def test_images_without_a_box_add_no_box_loss() -> None:
    masks = torch.zeros(2, 2, 16, 16)
    masks[:, 1] = 1
    box, _ = attention_losses(torch.randn(2, 2, 16, 16), torch.tensor([1.0, -1.0]), masks)
    assert float(box) == 0.0


def test_augment_moves_the_masks_with_the_image() -> None:
    x = torch.zeros(4, 1, 64, 64)
    x[:, :, 8:24, 40:56] = 1.0  # a bright square, and the same square as a mask
    masks = torch.zeros(4, 1, 64, 64)
    masks[:, :, 8:24, 40:56] = 1.0
    out, moved = augment(x, torch.Generator().manual_seed(0), masks=masks, mask_size=64)
    for k in range(4):  # where the image's square went, the mask went too
        bright = out[k, 0] > out[k, 0].mean() + 0.5 * out[k, 0].std()
        assert (moved[k, 0][bright] > 0.5).float().mean() > 0.8
