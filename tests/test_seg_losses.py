"""Segmentation losses: the combination is the mean of its parts, and each part is its formula."""

import pytest
import torch
import torch.nn.functional as F

from saal.errors import SaalError
from saal.segmentation.losses import LOSSES, make_loss


def _batch(seed=0, n=4, size=16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 2, size, size, generator=g) * 2
    target = (torch.rand(n, size, size, generator=g) < 0.3).long()
    target[0] = 0  # an image without lesion: batch-wise Dice stays defined
    return logits, target


def test_ce_is_pixel_cross_entropy():
    logits, target = _batch()
    assert torch.allclose(make_loss("ce")(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_dice_is_batchwise_soft_dice_of_foreground_probability():
    logits, target = _batch()
    p = logits.softmax(1)[:, 1]
    y = target.float()
    expected = 1 - (2 * (p * y).sum() + 1e-5) / (p.sum() + y.sum() + 1e-5)
    assert torch.allclose(make_loss("dice")(logits, target), expected, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ce_plus_dice_is_half_the_sum_of_parts(seed):
    logits, target = _batch(seed)
    both = make_loss("ce+dice")(logits, target)
    parts = 0.5 * (make_loss("ce")(logits, target) + make_loss("dice")(logits, target))
    assert torch.allclose(both, parts, atol=1e-6)


def test_perfect_prediction_has_near_zero_loss_and_gradients_flow():
    _, target = _batch()
    logits = (torch.stack([1 - target, target], 1).float() * 40 - 20).requires_grad_()
    for name in LOSSES:
        assert make_loss(name)(logits, target).item() < 1e-4
    logits = torch.zeros(2, 2, 8, 8, requires_grad=True)
    make_loss("ce+dice")(logits, torch.ones(2, 8, 8, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_half_precision_logits_are_scored_in_float32():
    logits, target = _batch()
    loss = make_loss("ce+dice")(logits.half(), target)
    assert loss.dtype == torch.float32


def test_unknown_loss_names_the_choices():
    with pytest.raises(SaalError, match="ce\\+dice"):
        make_loss("focal")
