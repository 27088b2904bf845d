"""Semi-supervised training signal from the unlabeled pool: confidence-masked pseudo-labels.

The method is FixMatch (Sohn et al., NeurIPS 2020) carried over to segmentation
the way French et al. (BMVC 2020) and UniMatch (Yang et al., CVPR 2023) do it:
per pixel, the network's own prediction on a *weak* view of an unlabeled image
becomes the target of its prediction on a *strong* view, wherever it is
confident. We chose it over mean teacher and cross pseudo supervision because
it needs one network and no teacher copy: a round stays one model, one
optimiser and a seed, so it is deterministic and a killed round redone from
its seed gives the same model, as supervised training does.

One step on an unlabeled batch:

1. **weak view**: a random symmetry of the square (the supervised ``flips``
   policy), so that the pseudo-label and the strong view share one frame;
2. **pseudo-label**: a forward pass without gradient; the label of a pixel is
   its arg-max class, kept only where the softmax confidence reaches
   ``confidence`` (0.95, FixMatch's threshold);
3. **strong view**: the weak view with strong photometric changes (contrast,
   brightness, gamma, Gaussian noise) and CutMix: a box of half the image area
   from the next image of the batch is pasted in, and its pseudo-labels and
   confidence mask with it;
4. **loss**: cross-entropy of the strong view's prediction against the
   pseudo-labels, averaged over *all* pixels with the unconfident ones counting
   zero (FixMatch's normalisation: an unsure model gets a small signal, not a
   few amplified pixels).

The loss sees the unlabeled images and nothing else: no mask can leak into it.
Every random draw comes from the ``generator`` argument (CPU), one tensor per
batch, so no per-sample Python work happens in a step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .augment import dihedral_images

#: Strong photometric ranges: contrast factor, brightness shift, gamma exponent, noise standard deviation.
STRONG_CONTRAST = 0.4
STRONG_BRIGHTNESS = 0.2
STRONG_GAMMA = (0.7, 1.5)
STRONG_NOISE = 0.03
#: Share of the image a CutMix box covers.
CUTMIX_AREA = 0.5


def strong_photometric(images: torch.Tensor, u: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Contrast, brightness, gamma and noise per image; ``u`` is ``(B, 3)`` uniforms, ``noise`` standard normal."""
    shape = (-1, *([1] * (images.ndim - 1)))
    contrast = (1 + (2 * u[:, 0] - 1) * STRONG_CONTRAST).view(shape)
    brightness = ((2 * u[:, 1] - 1) * STRONG_BRIGHTNESS).view(shape)
    low, high = STRONG_GAMMA
    gamma = (low + u[:, 2] * (high - low)).view(shape)
    mean = images.mean(dim=tuple(range(1, images.ndim)), keepdim=True)
    out = ((images - mean) * contrast + mean + brightness).clamp(0.0, 1.0)
    return (out.clamp_min(1e-6).pow(gamma) + STRONG_NOISE * noise).clamp(0.0, 1.0)


def cutmix_boxes(batch: int, size: int, u: torch.Tensor) -> torch.Tensor:
    """``(B, S, S)`` booleans: one axis-aligned box of :data:`CUTMIX_AREA` of the image per sample.

    ``u`` is ``(B, 2)`` uniforms placing the box's corner; the box lies inside the image.
    """
    side = max(1, round(size * math.sqrt(CUTMIX_AREA)))
    top = (u[:, 0] * (size - side + 1)).long().clamp_max(size - side)
    left = (u[:, 1] * (size - side + 1)).long().clamp_max(size - side)
    coords = torch.arange(size, device=u.device)
    rows = (coords >= top[:, None]) & (coords < top[:, None] + side)
    cols = (coords >= left[:, None]) & (coords < left[:, None] + side)
    return rows[:, :, None] & cols[:, None, :]


def strong_view_and_targets(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                            generator: torch.Generator, confidence: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-3 of the module doc: the strong view of an unlabeled batch and its pseudo-labels.

    ``forward`` maps a float batch to 2-class logits (the model, under the caller's precision
    context); ``images`` is a float ``(B, C, S, S)`` unlabeled batch in [0, 1]. Returns
    ``(strong, targets)`` where ``targets`` is ``(B, S, S)`` long with ``-1`` on pixels below
    ``confidence``; the caller feeds ``strong`` through the network with gradients (together with
    the labeled batch, so BatchNorm sees one batch) and scores it with :func:`masked_cross_entropy`.
    """
    b, _, s, _ = images.shape
    u = torch.rand(b, 8, generator=generator).to(images.device)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    weak = dihedral_images(images, u[:, :3])
    with torch.no_grad():
        probs = forward(weak).float().softmax(dim=1)
    score, labels = probs.max(dim=1)
    targets = torch.where(score >= confidence, labels, torch.full_like(labels, -1))
    strong = strong_photometric(weak, u[:, 3:6], noise)
    box = cutmix_boxes(b, s, u[:, 6:8])
    strong = torch.where(box[:, None], strong.roll(1, dims=0), strong)
    targets = torch.where(box, targets.roll(1, dims=0), targets)
    return strong, targets


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every pixel, the ``-1`` (unconfident) ones contributing zero (FixMatch's mean)."""
    per_pixel = F.cross_entropy(logits.float(), targets.clamp_min(0), reduction="none")
    return (per_pixel * (targets >= 0)).mean()
