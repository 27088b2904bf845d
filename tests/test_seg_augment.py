"""Augmentation keeps images and masks aligned and repeats for the same generator."""

import pytest
import torch

from saal.errors import SaalError
from saal.segmentation.augment import augment_batch


def _shapes(n=16, size=24, seed=0):
    """Asymmetric masks (an off-centre rectangle plus a bar), so every symmetry gives a new mask."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        top, left = torch.randint(1, 8, (2,), generator=g).tolist()
        masks[i, top:top + 9, left:left + 5] = 1
        masks[i, top, left:left + 12] = 1
    return masks


def test_flips_keep_an_image_equal_to_its_mask():
    masks = _shapes()
    images = masks[:, None].float()
    out_images, out_masks = augment_batch(images, masks, torch.Generator().manual_seed(3), "flips")
    assert torch.equal(out_images[:, 0], out_masks.float())
    assert not torch.equal(out_masks, masks)


def test_flips_reach_all_eight_symmetries_and_nothing_else():
    mask = _shapes(1)[0]
    masks = mask.expand(200, -1, -1).clone()
    _, out = augment_batch(masks[:, None].float(), masks, torch.Generator().manual_seed(0), "flips")
    symmetries = {tuple(torch.rot90(m, k).flatten().tolist()) for m in (mask, mask.T) for k in range(4)}
    seen = {tuple(o.flatten().tolist()) for o in out}
    assert seen == symmetries and len(symmetries) == 8


def test_full_policy_keeps_image_and_mask_aligned():
    masks = _shapes(32, size=32)
    images = masks[:, None].float()
    out_images, out_masks = augment_batch(images, masks, torch.Generator().manual_seed(1), "full")
    # bilinear image vs nearest mask: they may differ only along the outline
    agreement = ((out_images[:, 0] > 0.5).long() == out_masks).float().mean()
    assert agreement > 0.97
    assert set(out_masks.unique().tolist()) <= {0, 1} and out_masks.dtype == masks.dtype
    assert 0 <= out_images.min() and out_images.max() <= 1
    # the affine part really moves pixels (not only symmetries)
    _, flipped = augment_batch(images, masks, torch.Generator().manual_seed(1), "flips")
    assert not torch.equal(out_masks, flipped)


@pytest.mark.parametrize("policy", ["flips", "full"])
def test_same_generator_same_result_and_inputs_untouched(policy):
    masks = _shapes()
    images = torch.rand(len(masks), 3, 24, 24, generator=torch.Generator().manual_seed(5))
    before = images.clone(), masks.clone()
    a = augment_batch(images, masks, torch.Generator().manual_seed(7), policy)
    b = augment_batch(images, masks, torch.Generator().manual_seed(7), policy)
    c = augment_batch(images, masks, torch.Generator().manual_seed(8), policy)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(images, before[0]) and torch.equal(masks, before[1])


def test_none_is_identity_and_unknown_policy_is_an_error():
    masks = _shapes(2)
    images = masks[:, None].float()
    out = augment_batch(images, masks, torch.Generator(), "none")
    assert out[0] is images and out[1] is masks
    with pytest.raises(SaalError, match="unknown augmentation"):
        augment_batch(images, masks, torch.Generator(), "elastic")
