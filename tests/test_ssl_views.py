"""Contrastive views and the NT-Xent loss: deterministic per seed, image-only, the paper's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saal.errors import SaalError
from saal.ssl.contrastive import ProjectionHead, nt_xent
from saal.ssl.views import ViewConfig, random_view, two_views


def images(n: int = 6, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def test_views_are_deterministic_per_seed_and_differ_between_seeds():
    x = images()
    a = two_views(x, torch.Generator().manual_seed(3))
    b = two_views(x, torch.Generator().manual_seed(3))
    c = two_views(x, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # the two views of an image differ
    for v in a:
        assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1


def test_views_take_images_only_and_leave_them_unchanged():
    x = images(channels=1)
    before = x.clone()
    random_view(x, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # a new tensor: the input (and any mask beside it) is never touched
    with pytest.raises(ValueError, match="float images"):
        random_view(torch.zeros(2, 8, 8, dtype=torch.uint8), torch.Generator())


def test_view_without_crop_jitter_or_blur_is_a_symmetry_of_the_square():
    square = ViewConfig(crop_scale=(1.0, 1.0), jitter_prob=0.0, blur_prob=0.0)
    x = images(n=16, channels=1, size=8)
    out = random_view(x, torch.Generator().manual_seed(1), ViewConfig(**{**square.__dict__}))
    # the aspect-ratio draw can still crop a little: compare the pixel multiset of unclipped images loosely
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.08)


def test_blur_and_jitter_change_the_image_statistics():
    x = images(n=64, channels=3, size=32)
    plain = ViewConfig(crop_scale=(1.0, 1.0), jitter_prob=0.0, blur_prob=0.0)
    blurred = ViewConfig(crop_scale=(1.0, 1.0), jitter_prob=0.0, blur_prob=1.0, blur_sigma=(1.5, 1.5))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert random_view(x, g(), blurred).std() < 0.8 * random_view(x, g(), plain).std()  # noise is smoothed


def test_bad_view_options_are_one_line_errors():
    with pytest.raises(SaalError, match="crop_scale"):
        ViewConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(SaalError, match="jitter"):
        ViewConfig(jitter=1.5)


def test_nt_xent_matches_the_formula():
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / 0.5).numpy()
    expected = []
    for i in range(8):
        j = (i + 4) % 8
        others = [sim[i, k] for k in range(8) if k != i]
        expected.append(-sim[i, j] + math.log(sum(math.exp(v) for v in others)))
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(np.mean(expected), rel=1e-5)
    same = torch.randn(16, 8)
    assert nt_xent(same, same, 0.05).item() < 0.01  # identical pairs are found at once
    with pytest.raises(ValueError, match="projections"):
        nt_xent(torch.randn(3, 8), torch.randn(4, 8))


def test_projection_head_pools_the_bottleneck():
    head = ProjectionHead(16, out_dim=8)
    assert head(torch.randn(5, 16, 2, 2)).shape == (5, 8)
