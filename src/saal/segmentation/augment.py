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
* ``strong`` -- what few-label segmentation work uses, so that ten masks look
  like many: ``flips``; one resampling that combines any rotation (+-45 degrees
  on top of the square's symmetries), a random resized view (scale x[0.75, 1.33]
  and aspect x[0.85, 1.18], both log-uniform, shift +-10 %) and an elastic
  distortion (a smooth random displacement field, about 2 % of the side); then,
  images only, gamma [0.7, 1.4], contrast x[0.75, 1.33], brightness +-0.1, for
  colour images saturation x[0.7, 1.3] and a white-balance gain of +-5 % per
  channel (dermatoscopes and cameras differ), a Gaussian blur (sigma 0.3-1 px)
  on a quarter of the images, and pixel noise (std up to 0.03).

All random numbers come from the ``generator`` argument (a CPU
``torch.Generator``), drawn once per batch (``(B, 7)`` uniforms; ``strong``
draws its own ``(B, 16)`` uniforms and its displacement fields), so the result
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
#: The ``strong`` policy's ranges (see the module docstring).
STRONG_ROTATION_DEG = 45.0
STRONG_SCALE = (0.75, 1.33)
STRONG_ASPECT = (0.85, 1.18)
STRONG_SHIFT = 0.1
STRONG_ELASTIC = 0.04  # std of the coarse displacements, in grid units ([-1, 1] spans the image)
ELASTIC_GRID = 4  # control points per side of the displacement field
STRONG_GAMMA = (0.7, 1.4)
STRONG_CONTRAST = (0.75, 1.33)
STRONG_BRIGHTNESS = 0.1
STRONG_SATURATION = (0.7, 1.3)
STRONG_GAIN = 0.05
BLUR_SHARE, BLUR_SIGMA = 0.25, (0.3, 1.0)
MAX_NOISE = 0.03


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


def _log_uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(low + u * (high - low))


def strong_geometry(images: torch.Tensor, masks: torch.Tensor, u: torch.Tensor,
                    displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation, resized view and elastic distortion as one resampling; ``u`` is ``(B, 5)`` uniforms and
    ``displacement`` ``(B, 2, G, G)`` standard normals (the coarse field, smoothed by bicubic upsampling)."""
    b, _, size, _ = images.shape
    angle = (2 * u[:, 0] - 1) * math.radians(STRONG_ROTATION_DEG)
    scale = _log_uniform(u[:, 1], STRONG_SCALE)
    aspect = _log_uniform(u[:, 2], STRONG_ASPECT).sqrt()
    sx, sy = 1 / (scale * aspect), aspect / scale  # output -> input: > 1 zooms out, < 1 zooms in
    cos, sin = torch.cos(angle), torch.sin(angle)
    shift = (2 * u[:, 3:5] - 1) * STRONG_SHIFT
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, shift[:, 0]], 1),
                         torch.stack([sin * sx, cos * sy, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), [b, 1, size, size], align_corners=False)
    field = F.interpolate(displacement.to(images.dtype) * STRONG_ELASTIC, size=(size, size), mode="bicubic",
                          align_corners=True)
    grid = grid + field.permute(0, 2, 3, 1)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    warped = F.grid_sample(masks.unsqueeze(1).to(images.dtype), grid, mode="nearest", padding_mode="reflection",
                           align_corners=False)
    return images.clamp_(0.0, 1.0), warped[:, 0].round().to(masks.dtype)


def strong_photometric(images: torch.Tensor, u: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gamma, contrast, brightness, saturation and white balance (colour), blur, noise; ``u`` is ``(B, 8)``
    uniforms (plus three per-channel gains in ``u[:, 5:8]``), ``noise`` standard normals shaped like ``images``."""
    b, c = images.shape[:2]
    shape = (-1, 1, 1, 1)
    images = images.clamp(1e-6, 1.0) ** _log_uniform(u[:, 0], STRONG_GAMMA).view(shape)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * _log_uniform(u[:, 1], STRONG_CONTRAST).view(shape) + mean
    images = images + ((2 * u[:, 2] - 1) * STRONG_BRIGHTNESS).view(shape)
    if c == 3:
        gray = images.mean(dim=1, keepdim=True)
        saturation = (STRONG_SATURATION[0] + u[:, 3] * (STRONG_SATURATION[1] - STRONG_SATURATION[0])).view(shape)
        images = (images - gray) * saturation + gray
        images = images * (1 + (2 * u[:, 5:8] - 1) * STRONG_GAIN).view(b, 3, 1, 1)
    images = _blur_some(images.clamp(0.0, 1.0), u[:, 4])
    return (images + noise * (u[:, 4] * MAX_NOISE).view(shape)).clamp_(0.0, 1.0)


def _blur_some(images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of its own sigma for the images whose ``u`` < :data:`BLUR_SHARE`; the others unchanged.

    Separable, 5 taps, as weighted sums of shifted copies (per-image weights): far cheaper on a CPU than a
    grouped convolution with one kernel per image.
    """
    chosen = torch.nonzero(u < BLUR_SHARE).flatten()
    if chosen.numel() == 0:
        return images
    sigma = BLUR_SIGMA[0] + (u[chosen] / BLUR_SHARE) * (BLUR_SIGMA[1] - BLUR_SIGMA[0])
    taps = torch.arange(-2, 3, dtype=images.dtype, device=images.device)
    weights = torch.exp(-0.5 * (taps / sigma.view(-1, 1)) ** 2)
    weights = (weights / weights.sum(dim=1, keepdim=True)).view(-1, 5, 1, 1, 1)
    x = images[chosen]
    h, w = x.shape[-2:]
    padded = F.pad(x, (2, 2, 0, 0), mode="reflect")
    x = sum(weights[:, k] * padded[..., k:k + w] for k in range(5))
    padded = F.pad(x, (0, 0, 2, 2), mode="reflect")
    x = sum(weights[:, k] * padded[..., k:k + h, :] for k in range(5))
    out = images.clone()
    out[chosen] = x
    return out


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
    if policy == "strong":
        b, size = images.shape[0], images.shape[-1]
        u = torch.rand(b, 16, generator=generator).to(images.device)
        displacement = torch.randn(b, 2, ELASTIC_GRID, ELASTIC_GRID, generator=generator).to(images.device)
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        images, masks = dihedral(images, masks, u[:, :3])
        images, masks = strong_geometry(images, masks, u[:, 3:8], displacement)
        return strong_photometric(images, u[:, 8:16], noise), masks
    u = torch.rand(images.shape[0], 7, generator=generator).to(images.device)
    images, masks = dihedral(images, masks, u[:, :3])
    if policy == "full":
        images, masks = small_affine(images, masks, u[:, 3:5])
        images = brightness_contrast(images, u[:, 5:7])
    return images, masks
