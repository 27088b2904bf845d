"""Segmentation losses: cross-entropy, soft Dice, and their mean (the paper's default).

All losses take 2-class logits ``(B, 2, H, W)`` and an integer class map
``(B, H, W)`` (what :func:`saal.data.dataset.masks_to_tensor` returns).

* ``ce``       -- pixel-wise cross-entropy over both classes, averaged over pixels.
* ``dice``     -- ``1 - soft Dice`` of the *foreground* softmax probability,
  computed **batch-wise**: the sums run over every pixel of the batch, so one
  image with a tiny lesion cannot dominate the gradient, and a batch holding an
  image without lesion is still well defined. Smoothing 1e-5 (numerator and
  denominator) only guards 0/0.
* ``ce+dice``  -- ``0.5 * (ce + dice)``, the combination Zhao et al. train with.

The implementations are MONAI's (``DiceLoss`` / ``DiceCELoss`` with
``lambda_ce = lambda_dice = 0.5``); the tests check them against a direct
computation of the formulas above. MONAI is imported on first use because it
adds seconds to start-up.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import LOSSES
from ..errors import SaalError


class SegLoss(nn.Module):
    """Adapts a MONAI-style loss (``(B, 1, H, W)`` targets) to ``(B, H, W)`` class maps.

    The logits are cast to float32 so that under mixed precision the softmax and
    the Dice sums are not computed in half precision.
    """

    def __init__(self, name: str, inner: nn.Module):
        super().__init__()
        self.name = name
        self.inner = inner

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.inner(logits.float(), target.unsqueeze(1))


class _CrossEntropy(nn.Module):
    """Cross-entropy that accepts the ``(B, 1, H, W)`` target the MONAI losses take."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, target[:, 0])


def make_loss(name: str) -> SegLoss:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    from monai.losses import DiceCELoss, DiceLoss

    dice_options = dict(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    if name == "ce":
        inner: nn.Module = _CrossEntropy()
    elif name == "dice":
        inner = DiceLoss(**dice_options)
    elif name == "ce+dice":
        inner = DiceCELoss(**dice_options, lambda_dice=0.5, lambda_ce=0.5)
    else:
        raise SaalError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return SegLoss(name, inner)
