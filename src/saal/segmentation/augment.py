"""Light, batched training augmentation applied identically to images and masks.

Dermoscopy has no canonical orientation, so the 8 flips/90-degree rotations of
the square (the dihedral group) are label-preserving; a small rotation/zoom and
a mild brightness/contrast change mimic framing and lighting differences.

Policies (``SegConfig.augment``):

* ``none``  -- no augmentation;
* ``flips`` -- a uniformly random element of the dihedral group per image
  (optional transpose, then optional horizontal and vertical flip);
* ``full``  -- ``flips``, then a random rotation in +-15 degrees and zoom in
  [0.9, 1.1] (bilinear for images, nearest for masks, reflection at the border
  so no black corners appear), then contrast x[0.9, 1.1] around the image mean
  and brightness +-0.05 (images only, clipped to [0, 1]).

All random numbers come from the ``generator`` argument (a CPU
``torch.Generator``), one draw of shape ``(B, 7)`` per batch, so the result
depends only on the generator state, whatever device the tensors live on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import AUGMENTATIONS
from ..errors import SaalError

MAX_ROTATION_DEG = 15.0
MAX_ZOOM = 0.1
MAX_CONTRAST = 0.1
MAX_BRIGHTNESS = 0.05


def check_policy(policy: str) -> str:
    if policy not in AUGMENTATIONS:
        raise SaalError(f"unknown augmentation {policy!r}; choose one of {', '.join(AUGMENTATIONS)}")
    return policy


def _per_sample(flag: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where the per-sample ``flag`` is set, else ``b`` (flag broadcast over the other dims)."""
    return torch.where(flag.view(-1, *([1] * (a.ndim - 1))), a, b)


def dihedral_images(images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One of the 8 square symmetries per sample of a ``(B, ..., S, S)`` batch; ``u`` is ``(B, 3)`` uniforms."""
    transpose, hflip, vflip = (u[:, k] < 0.5 for k in range(3))
    images = _per_sample(transpose, images.transpose(-1, -2), images)
    images = _per_sample(hflip, images.flip(-1), images)
    return _per_sample(vflip, images.flip(-2), images)


def dihedral(images: torch.Tensor, masks: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same symmetry per sample (:func:`dihedral_images`) applied to images and their masks."""
    return dihedral_images(images, u), dihedral_images(masks, u)


def small_affine(images: torch.Tensor, masks: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation and zoom about the centre; ``u`` is ``(B, 2)`` uniforms in [0, 1)."""
    angle = (2 * u[:, 0] - 1) * math.radians(MAX_ROTATION_DEG)
    zoom = 1 + (2 * u[:, 1] - 1) * MAX_ZOOM
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    warped = F.grid_sample(masks.unsqueeze(1).to(images.dtype), grid, mode="nearest",
                           padding_mode="reflection", align_corners=False)
    return images, warped[:, 0].round().to(masks.dtype)


def brightness_contrast(images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Contrast around each image's mean, then a brightness shift; ``u`` is ``(B, 2)`` uniforms."""
    shape = (-1, *([1] * (images.ndim - 1)))
    contrast = (1 + (2 * u[:, 0] - 1) * MAX_CONTRAST).view(shape).to(images.dtype)
    brightness = ((2 * u[:, 1] - 1) * MAX_BRIGHTNESS).view(shape).to(images.dtype)
    mean = images.mean(dim=tuple(range(1, images.ndim)), keepdim=True)
    return ((images - mean) * contrast + mean + brightness).clamp_(0.0, 1.0)


def augment_batch(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator,
                  policy: str = "full") -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: images float ``(B, C, S, S)`` in [0, 1], masks integer ``(B, S, S)``.

    Returns new tensors; the inputs are not modified. ``policy`` is one of
    :data:`AUGMENTATIONS` (see module doc).
    """
    check_policy(policy)
    if policy == "none":
        return images, masks
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"augmentation needs square images, got {tuple(images.shape[-2:])}")
    u = torch.rand(images.shape[0], 7, generator=generator).to(images.device)
    images, masks = dihedral(images, masks, u[:, :3])
    if policy == "full":
        images, masks = small_affine(images, masks, u[:, 3:5])
        images = brightness_contrast(images, u[:, 5:7])
    return images, masks
