"""Models Genesis transforms: invariants of every damage, determinism, both channel counts."""

from __future__ import annotations

import pytest
import torch

from saal.errors import SaalError
from saal.ssl.transforms import (
    GenesisConfig,
    corrupt,
    local_pixel_shuffle,
    nonlinear_intensity,
    paint,
    random_flip,
)

S = 32
ONLY = dict(flip_prob=0.0, shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=0.0)



def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, c: int = 1, seed: int = 0) -> torch.Tensor:
    """Random images with distinct values, so that every pixel can be traced."""
    return torch.rand(n, c, S, S, generator=gen(100 + seed))


ALL = {
    "flip": lambda x, g, p: random_flip(x, g, p),
    "shuffle": lambda x, g, p: local_pixel_shuffle(x, g, p),
    "nonlinear": lambda x, g, p: nonlinear_intensity(x, g, p),
    "paint": lambda x, g, p: paint(x, g, p),
}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("c", [1, 3])
def test_shape_range_and_input_untouched(name, c):
    x = images(c=c)
    before = x.clone()
    y = ALL[name](x, gen(), 1.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", sorted(ALL))
def test_probability_zero_is_identity(name):
    x = images(c=3)
    assert torch.equal(ALL[name](x, gen(), 0.0), x)
    inputs, targets = corrupt(x, gen(), GenesisConfig(**ONLY))
    assert torch.equal(inputs, x) and torch.equal(targets, x)


@pytest.mark.parametrize("name", sorted(ALL))
def test_probability_is_per_image(name):
    x = images(n=64)
    y = ALL[name](x, gen(), 0.5)
    changed = (y != x).flatten(1).any(1)
    assert 5 < int(changed.sum()) < 59  # some images damaged, some left alone


def test_same_seed_same_output_other_seed_other_output():
    x = images(c=3)
    a = corrupt(x, gen(7))
    b = corrupt(x, gen(7))
    c = corrupt(x, gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def _flip_variants(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)]


@pytest.mark.parametrize("c", [1, 3])
def test_flips_reach_the_target_too(c):
    x = images(n=32, c=c)
    inputs, targets = corrupt(x, gen(), GenesisConfig(**{**ONLY, "flip_prob": 0.7}))
    assert torch.equal(inputs, targets)
    kinds = set()
    for i in range(len(x)):
        match = [k for k, v in enumerate(_flip_variants(x[i])) if torch.equal(v, targets[i])]
        assert match, f"target {i} is not a flip of its original"
        kinds.add(match[0])
    assert kinds == {0, 1, 2, 3}  # none, horizontal, vertical and both all occur

    # In the full chain the target is still only a flip of the original.
    inputs, targets = corrupt(x, gen(1), GenesisConfig(flip_prob=1.0))
    for i in range(len(x)):
        assert any(torch.equal(v, targets[i]) for v in _flip_variants(x[i]))


@pytest.mark.parametrize("c", [1, 3])
def test_pixel_shuffle_permutes_whole_pixels_locally(c):
    x = images(n=6, c=c)
    y = local_pixel_shuffle(x, gen(), 1.0, block_fraction=0.1)
    block = int(0.1 * S)
    # The same values per image and channel (a permutation) ...
    assert torch.equal(x.flatten(2).sort(-1).values, y.flatten(2).sort(-1).values)
    assert float((y != x).float().mean()) > 0.3
    for i in range(len(x)):
        # ... moving whole pixels (all channels together) by less than a block.
        src = {round(float(v), 7): k for k, v in enumerate(x[i, 0].flatten())}
        pos = torch.tensor([src[round(float(v), 7)] for v in y[i, 0].flatten()])
        assert torch.equal(x[i].flatten(1)[:, pos], y[i].flatten(1))
        dy = (pos // S - torch.arange(S * S) // S).abs()
        dx = (pos % S - torch.arange(S * S) % S).abs()
        assert int(dy.max()) < block and int(dx.max()) < block


def test_nonlinear_curve_is_monotonic_shared_by_channels_and_fixes_the_ends():
    x = images(n=32, c=3)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    y = nonlinear_intensity(x, gen(), 1.0)
    directions = set()
    for i in range(len(x)):
        order = x[i].flatten().argsort()
        diffs = y[i].flatten()[order].diff()
        increasing = bool((diffs >= -1e-6).all())
        assert increasing or bool((diffs <= 1e-6).all()), f"image {i}: curve is not monotonic"
        directions.add(increasing)
        lo, hi = (0.0, 1.0) if increasing else (1.0, 0.0)
        assert torch.allclose(y[i, :, 0, 0], torch.full((3,), lo), atol=1e-5)
        assert torch.allclose(y[i, :, 0, 1], torch.full((3,), hi), atol=1e-5)
    assert directions == {True, False}  # reversed half of the time


def _has_full_window(mask: torch.Tensor, side: int) -> bool:
    """Whether ``mask`` (H, W) contains an all-True side x side square (integral image)."""
    ii = torch.nn.functional.pad(mask.long().cumsum(0).cumsum(1), (1, 0, 1, 0))
    sums = ii[side:, side:] - ii[:-side, side:] - ii[side:, :-side] + ii[:-side, :-side]
    return bool((sums == side * side).any())


@pytest.mark.parametrize("c", [1, 3])
def test_out_painting_keeps_the_inside_of_boxes(c):
    x = images(n=16, c=c)
    y = paint(x, gen(), 1.0, inpaint_prob=0.0)
    for i in range(len(x)):
        kept = (y[i] == x[i]).all(0)
        assert kept.any() and not kept.all()
        assert _has_full_window(kept, S - 4 * S // 7)  # at least one whole box survives


@pytest.mark.parametrize("c", [1, 3])
def test_in_painting_fills_a_few_small_boxes(c):
    x = images(n=16, c=c)
    y = paint(x, gen(), 1.0, inpaint_prob=1.0)
    painted = (y != x).any(1)
    assert painted.flatten(1).any(1).float().mean() > 0.5  # almost every image gets a box (p = 0.95)
    for i in range(len(x)):
        area = float(painted[i].float().sum())
        assert area <= 5 * (S // 3) ** 2
        if area:
            assert _has_full_window(painted[i], S // 6)  # a painted region is a whole box


def test_config_rejects_bad_probabilities():
    with pytest.raises(SaalError, match="paint_prob"):
        GenesisConfig(paint_prob=1.5)


def test_rejects_non_image_input():
    with pytest.raises(ValueError):
        corrupt(torch.rand(S, S), gen())


def test_cpu_chunks_keep_the_pairs_consistent(monkeypatch):
    import saal.ssl.transforms as transforms

    monkeypatch.setattr(transforms, "CPU_CHUNK_PIXELS", 3 * S * S)  # chunks of 3 images
    x = images(n=8, c=3)
    inputs, targets = corrupt(x, gen(2), GenesisConfig(flip_prob=0.7, shuffle_prob=1.0))
    again = corrupt(x, gen(2), GenesisConfig(flip_prob=0.7, shuffle_prob=1.0))
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])
    assert inputs.shape == x.shape and float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0
    for i in range(len(x)):
        assert any(torch.equal(v, targets[i]) for v in _flip_variants(x[i]))
        assert not torch.equal(inputs[i], targets[i])
    # Each chunk draws its own damage: no two chunks repeat the same pattern.
    assert not torch.equal(inputs[:3] - targets[:3], inputs[3:6] - targets[3:6])
