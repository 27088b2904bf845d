"""Two random views of every image, for the contrastive objective: batched on the images' device.

A contrastive network learns to give two views of one image the same feature and
views of other images different ones, so the views decide what the features
ignore. For dermoscopy (no canonical orientation, varying zoom, camera colour and
focus) a view is:

1. a **random resized crop** covering ``crop_scale`` of the image area (aspect
   ratio 3/4 ... 4/3), resampled to the full size: zoom and framing;
2. one of the 8 **flips / 90-degree rotations** of the square;
3. **colour jitter**, applied with probability ``jitter_prob``: brightness and
   contrast factors in ``1 ± jitter`` and, for RGB, saturation in ``1 ± jitter``;
4. a **Gaussian blur** with probability ``blur_prob``, sigma uniform in
   ``blur_sigma`` (in pixels at the image's size): focus.

Steps 1 and 2 are one affine map per image (one ``grid_sample`` for the batch),
step 4 one grouped convolution. Every draw comes from the ``generator`` argument,
so the same seed gives the same views. Only images go in: masks are never read or
changed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import SaalError

BLUR_KERNEL = 7  # taps of the blur kernel (enough for sigma <= 2 px)


@dataclass(frozen=True)
class ViewConfig:
    """How strongly two views of an image differ (see the module docstring)."""

    crop_scale: tuple[float, float] = (0.35, 1.0)
    jitter: float = 0.4
    jitter_prob: float = 0.8
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise SaalError(f"view option crop_scale={self.crop_scale!r} must satisfy 0 < low <= high <= 1")
        if not 0.0 <= self.jitter < 1.0:
            raise SaalError(f"view option jitter={self.jitter!r} must lie in [0, 1)")
        for name in ("jitter_prob", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SaalError(f"view option {name}={getattr(self, name)!r} must lie in [0, 1]")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise SaalError(f"view option blur_sigma={self.blur_sigma!r} must satisfy 0 < low <= high")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _crop_and_turn(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float]) -> torch.Tensor:
    """Random resized crop, then a random element of the square's symmetry group, as one affine resampling."""
    n, dev = x.shape[0], x.device
    area = _uniform(n, *scale, generator, dev)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), generator, dev)
    w = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    cx = (2 * torch.rand(n, generator=generator, device=dev) - 1) * (1 - w)  # centre, normalised coordinates
    cy = (2 * torch.rand(n, generator=generator, device=dev) - 1) * (1 - h)
    quarter = torch.randint(0, 4, (n,), generator=generator, device=dev).float() * (math.pi / 2)
    flip = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(quarter).round(), torch.sin(quarter).round()
    theta = torch.stack([torch.stack([w * cos * flip, -w * sin, cx], 1),
                         torch.stack([h * sin * flip, h * cos, cy], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _jitter(x: torch.Tensor, generator: torch.Generator, cfg: ViewConfig) -> torch.Tensor:
    n, c, dev = x.shape[0], x.shape[1], x.device
    on = (torch.rand(n, generator=generator, device=dev) < cfg.jitter_prob).to(x.dtype)
    shape = (n, 1, 1, 1)

    def factor() -> torch.Tensor:
        drawn = _uniform(n, 1 - cfg.jitter, 1 + cfg.jitter, generator, dev).to(x.dtype)
        return (1 + on * (drawn - 1)).view(shape)

    brightness, contrast, saturation = factor(), factor(), factor()
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    if c == 3:
        gray = x.mean(dim=1, keepdim=True)
        x = (x - gray) * saturation + gray
    return x.clamp(0.0, 1.0)


def _blur(x: torch.Tensor, generator: torch.Generator, cfg: ViewConfig) -> torch.Tensor:
    n, c, h, w = x.shape
    dev = x.device
    on = torch.rand(n, generator=generator, device=dev) < cfg.blur_prob
    sigma = _uniform(n, *cfg.blur_sigma, generator, dev)
    taps = torch.arange(BLUR_KERNEL, device=dev, dtype=x.dtype) - BLUR_KERNEL // 2
    kernel = torch.exp(-0.5 * (taps[None] / sigma[:, None].to(x.dtype)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    identity = (taps == 0).to(x.dtype).expand(n, -1)
    kernel = torch.where(on[:, None], kernel, identity).repeat_interleave(c, 0)  # (n * c, K)
    flat = x.reshape(1, n * c, h, w)
    pad = BLUR_KERNEL // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return flat.view(n, c, h, w)


def random_view(images: torch.Tensor, generator: torch.Generator, config: ViewConfig | None = None) -> torch.Tensor:
    """One random view of every image of a float ``(N, C, H, W)`` batch in [0, 1] (a new tensor)."""
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected float images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    cfg = config or ViewConfig()
    x = _crop_and_turn(images, generator, cfg.crop_scale)
    x = _jitter(x, generator, cfg)
    return _blur(x, generator, cfg)


def two_views(images: torch.Tensor, generator: torch.Generator,
              config: ViewConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of every image: the positive pairs of the contrastive loss."""
    return random_view(images, generator, config), random_view(images, generator, config)
