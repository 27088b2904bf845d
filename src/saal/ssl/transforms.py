"""Models Genesis image damage, vectorised over a batch.

Models Genesis (Zhou et al., MICCAI 2019; MedIA 2021) pretrains a network to
*restore* images that went through a random chain of damage; the chain below
follows the paper and SAAL's probabilities (Zhao et al., EMBC 2022):

1. flips (p = 0.4): up to three rounds of a horizontal or vertical flip, each
   round taken with probability p. Applied to the clean image, so the target
   is flipped too: flips are augmentation, not damage.
2. local pixel shuffling (p = 0.5): pixels are permuted within small blocks
   (sides drawn from 1 ... 1/10 of the image side). The reference shuffles
   thousands of overlapping windows one after the other; here the blocks are a
   random *tiling* of the image (random row cuts x random column cuts, every
   block side uniform in [1, S/10]), so every pixel is shuffled within a block
   of the reference's size distribution, all blocks of a batch are shuffled by
   a single sort, and the result is an exact permutation of each image's pixels.
3. non-linear intensity (p = 0.9): a monotonic cubic Bezier curve through
   (0, 0) and (1, 1) with two random control points remaps the intensities;
   half of the time the curve is reversed into a decreasing one.
4. painting (p = 0.9): in-painting (share 0.2) fills 1-5 random boxes of side
   S/6 ... S/3 with uniform noise; out-painting (share 0.8) replaces everything
   *outside* 1-5 random boxes of side 3S/7 ... 4S/7 with uniform noise.

Every function takes float images ``(N, C, H, W)`` in [0, 1] (``C`` = 1 or 3)
and an explicit :class:`torch.Generator` on the images' device: the same seed
gives the same output. Each image draws its own "apply or not"; ``p = 0`` is the
identity. Inputs are never modified in place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import SaalError

FLIP_ROUNDS = 3  # the reference flips up to three times, each round with probability p
PAINT_BOXES = 5  # at most this many boxes per painted image
PAINT_CONTINUE = 0.95  # chance of drawing one more box (the reference's geometric count)
CURVE_POINTS = 1024  # t samples of the Bezier curve and entries of the look-up table
CPU_CHUNK_PIXELS = 1 << 18  # pixels per chunk of a CPU batch (see corrupt)


@dataclass(frozen=True)
class GenesisConfig:
    """Probabilities of the Models Genesis damage chain (SAAL's values by default)."""

    flip_prob: float = 0.4
    shuffle_prob: float = 0.5
    shuffle_block_fraction: float = 0.1  # largest block side / image side
    nonlinear_prob: float = 0.9
    paint_prob: float = 0.9
    inpaint_prob: float = 0.2  # share of painted images in-painted; the rest are out-painted

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not 0.0 <= float(value) <= 1.0:
                raise SaalError(f"genesis option {name}={value!r} must lie in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


def _check(images: torch.Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected float images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def _randint(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in [low, high] (inclusive, element-wise bounds)."""
    u = _rand(low.shape, generator, low.device)
    return low + (u * (high - low + 1).to(u.dtype)).long().clamp_max(high - low)


def _chosen(n: int, p: float, generator: torch.Generator, device) -> torch.Tensor:
    """Indices of the images that undergo a transform of probability ``p``."""
    return (_rand(n, generator, device) < p).nonzero().squeeze(1)


def _apply_to(images: torch.Tensor, idx: torch.Tensor, damaged: torch.Tensor) -> torch.Tensor:
    if idx.numel() == images.shape[0]:
        return damaged
    out = images.clone()
    out[idx] = damaged
    return out


# ----------------------------------------------------------------------------- flips


def random_flip(images: torch.Tensor, generator: torch.Generator, p: float = 0.4) -> torch.Tensor:
    """Up to three rounds of a random horizontal/vertical flip, each round with probability ``p``.

    Rounds continue only while the draws succeed (as in the reference), so
    ``p`` is the chance of at least one round; two flips along the same axis
    cancel, so images end up unflipped, flipped one way or both ways.
    """
    _check(images)
    n, dev = images.shape[0], images.device
    rounds = (_rand((n, FLIP_ROUNDS), generator, dev) < p).long().cumprod(1).bool()
    vertical = _rand((n, FLIP_ROUNDS), generator, dev) < 0.5
    flip_v = (rounds & vertical).sum(1) % 2
    flip_h = (rounds & ~vertical).sum(1) % 2
    kind = flip_v + 2 * flip_h  # 0: none, 1: vertical, 2: horizontal, 3: both
    if not bool(kind.any()):
        return images
    out = images.clone()
    for k, dims in ((1, (-2,)), (2, (-1,)), (3, (-2, -1))):
        idx = (kind == k).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = images[idx].flip(dims)
    return out


# ----------------------------------------------------------------------------- pixel shuffling


def _tiling(n: int, size: int, block: int, generator: torch.Generator, device):
    """Random cuts of ``size`` into segments of length 1..block, for ``n`` images.

    Returns, per image and position, the segment index, its start and its length
    (the last segment is cut at the border).
    """
    lengths = torch.randint(1, block + 1, (n, size), generator=generator, device=device)
    ends = lengths.cumsum(1)
    pos = torch.arange(size, device=device).expand(n, size).contiguous()
    seg = torch.searchsorted(ends, pos, right=True)
    start = (ends - lengths).gather(1, seg)
    length = torch.minimum(lengths.gather(1, seg), size - start)
    return seg, start, length


def _shuffle_tiles(x: torch.Tensor, generator: torch.Generator, block: int) -> torch.Tensor:
    """Permute the pixels (all channels together) within the tiles of a random tiling.

    One sort over the whole batch: the key of a pixel is its tile (numbered by
    image, then row band, then column band) in the high bits and random bits
    below, so the sorted order lists every tile's pixels contiguously and in
    random order. A pixel's slot in that order is known in closed form
    (``slot``), and the pixel takes the value of the pixel sorted into its slot.
    Keys are int32 whenever they fit, which sorts several times faster than int64.
    """
    n, c, h, w = x.shape
    dev = x.device
    rseg, y0, th = (t.int() for t in _tiling(n, h, block, generator, dev))  # (n, h)
    cseg, x0, tw = (t.int() for t in _tiling(n, w, block, generator, dev))  # (n, w)
    ys = torch.arange(h, device=dev, dtype=torch.int32)
    xs = torch.arange(w, device=dev, dtype=torch.int32)
    hw = h * w
    img = torch.arange(n, device=dev, dtype=torch.int32)[:, None, None]
    # Bands above take y0 * w slots; tiles to the left in the band take th * x0;
    # inside its tile the pixel is at row (y - y0) of width tw, column (x - x0).
    row_part = (img * hw + (y0 * w)[:, :, None]) + (ys - y0)[:, :, None] * tw[:, None, :]
    slot = row_part + (th[:, :, None] * x0[:, None, :] + (xs - x0)[:, None, :])  # flat over the batch
    n_rows, n_cols = int(rseg[:, -1].max()) + 1, int(cseg[:, -1].max()) + 1
    tile_bits = int(n * n_rows * n_cols - 1).bit_length()
    dtype, rbits = (torch.int32, 31 - tile_bits) if tile_bits <= 15 else (torch.int64, min(40, 62 - tile_bits))
    # Tile number (image, row band, column band), increasing in slot order, shifted above the random bits.
    row_key = ((img[:, :, 0] * n_rows + rseg) * n_cols).to(dtype) << rbits  # (n, h)
    col_key = cseg.to(dtype) << rbits  # (n, w)
    keys = torch.randint(0, 1 << rbits, (n, h, w), generator=generator, device=dev, dtype=dtype)
    keys += row_key[:, :, None] + col_key[:, None, :]
    # order[j]: the pixel (flat over the batch) sorted into slot j; the stable sort is the faster one on CPU
    order = torch.sort(keys.view(-1), stable=True).indices
    src = order.index_select(0, slot.view(-1))  # index_select: several times faster than order[slot] on CPU
    pixels = x.permute(0, 2, 3, 1).reshape(n * hw, c)  # a view when c == 1
    return pixels.index_select(0, src).view(n, h, w, c).permute(0, 3, 1, 2).contiguous()


def local_pixel_shuffle(images: torch.Tensor, generator: torch.Generator, p: float = 0.5,
                        block_fraction: float = 0.1) -> torch.Tensor:
    """Shuffle pixels within small random blocks (sides up to ``block_fraction`` of the image).

    The network must recover local texture and edges from the image's own,
    locally displaced values: the histogram of each image is unchanged.
    """
    _check(images)
    idx = _chosen(images.shape[0], p, generator, images.device)
    if idx.numel() == 0:
        return images
    block = max(1, int(block_fraction * min(images.shape[-2:])))
    return _apply_to(images, idx, _shuffle_tiles(images[idx], generator, block))


# ----------------------------------------------------------------------------- intensity curve


def _bezier_luts(m: int, generator: torch.Generator, device) -> torch.Tensor:
    """Per-image look-up tables (m, CURVE_POINTS) of random monotonic Bezier curves on [0, 1]."""
    ctrl = _rand((m, 4), generator, device)
    decreasing = _rand(m, generator, device) < 0.5
    t = torch.linspace(0.0, 1.0, CURVE_POINTS, device=device)
    b1, b2, b3 = 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
    bx = ctrl[:, :1] * b1 + ctrl[:, 1:2] * b2 + b3
    by = ctrl[:, 2:3] * b1 + ctrl[:, 3:] * b2 + b3
    # Sorting makes the mapping monotonic whatever the control points (as the reference does).
    xs = bx.sort(1).values.contiguous()
    ys = by.sort(1).values
    ys = torch.where(decreasing[:, None], ys.flip(1), ys)
    # Resample y(x) on a uniform x grid so that applying it is an O(1) lookup per pixel.
    u = t.expand(m, CURVE_POINTS).contiguous()
    hi = torch.searchsorted(xs, u, right=True).clamp(1, CURVE_POINTS - 1)
    x_lo, x_hi = xs.gather(1, hi - 1), xs.gather(1, hi)
    y_lo, y_hi = ys.gather(1, hi - 1), ys.gather(1, hi)
    frac = ((u - x_lo) / (x_hi - x_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    return y_lo + frac * (y_hi - y_lo)


def _apply_luts(x: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Nearest-entry lookup: one gather per pixel.

    The table's 1024 entries are four times finer than the 256 levels of an 8-bit image, so the
    nearest entry is within ~1e-3 of the curve (a quarter of a grey level); interpolating between
    entries cost five times as much for no visible difference.
    """
    m = x.shape[0]
    pos = x.reshape(m, -1).mul(CURVE_POINTS - 1).add_(0.5).long().clamp_(0, CURVE_POINTS - 1)
    return luts.gather(1, pos).view_as(x)


def nonlinear_intensity(images: torch.Tensor, generator: torch.Generator, p: float = 0.9) -> torch.Tensor:
    """Remap intensities through a random monotonic Bezier curve (decreasing half the time).

    Restoring the original intensities teaches the network what tissue looks
    like regardless of contrast. All channels of an image share one curve.
    """
    _check(images)
    idx = _chosen(images.shape[0], p, generator, images.device)
    if idx.numel() == 0:
        return images
    x = images[idx]
    luts = _bezier_luts(x.shape[0], generator, images.device).to(x.dtype)
    return _apply_to(images, idx, _apply_luts(x, luts))


# ----------------------------------------------------------------------------- painting


def _box_axis(m: int, size: int, lo: torch.Tensor, hi: torch.Tensor, generator: torch.Generator):
    """(m, K, size) membership of each coordinate in each box along one axis."""
    dev = lo.device
    lo = lo[:, None].expand(m, PAINT_BOXES)
    hi = hi[:, None].expand(m, PAINT_BOXES)
    length = _randint(lo, hi, generator)
    start = _randint(torch.zeros_like(length), size - length, generator)
    coord = torch.arange(size, device=dev)
    return (coord >= start[..., None]) & (coord < (start + length)[..., None])


def _paint(x: torch.Tensor, generator: torch.Generator, inpaint_prob: float) -> torch.Tensor:
    m, c, h, w = x.shape
    dev = x.device
    outpaint = _rand(m, generator, dev) >= inpaint_prob
    more = _rand((m, PAINT_BOXES), generator, dev) < PAINT_CONTINUE
    more[:, 0] |= outpaint  # out-painting always keeps at least one box
    active = more.long().cumprod(1).to(x.dtype)

    def bounds(size: int):
        lo = torch.where(outpaint, size - 4 * size // 7, max(1, size // 6))
        hi = torch.where(outpaint, size - 3 * size // 7, max(1, size // 3))
        return lo, hi

    rows = _box_axis(m, h, *bounds(h), generator).to(x.dtype)  # (m, K, h)
    cols = _box_axis(m, w, *bounds(w), generator).to(x.dtype)  # (m, K, w)
    # Union of boxes: count the boxes covering each pixel with one small batched matmul.
    inside = torch.bmm((rows * active[..., None]).transpose(1, 2), cols) > 0  # (m, h, w)
    noisy = (inside ^ outpaint[:, None, None])[:, None]
    noise = _rand(x.shape, generator, dev).to(x.dtype)
    return torch.where(noisy, noise, x)


def paint(images: torch.Tensor, generator: torch.Generator, p: float = 0.9,
          inpaint_prob: float = 0.2) -> torch.Tensor:
    """In-paint (noise inside random boxes) or out-paint (noise outside random boxes).

    In-painting asks for the missing content from the surroundings, out-painting
    for the surroundings from a few windows: local and global context.
    """
    _check(images)
    idx = _chosen(images.shape[0], p, generator, images.device)
    if idx.numel() == 0:
        return images
    return _apply_to(images, idx, _paint(images[idx], generator, inpaint_prob))


# ----------------------------------------------------------------------------- the chain


def _chain(images: torch.Tensor, generator: torch.Generator, config: GenesisConfig):
    targets = random_flip(images, generator, config.flip_prob)
    x = local_pixel_shuffle(targets, generator, config.shuffle_prob, config.shuffle_block_fraction)
    x = nonlinear_intensity(x, generator, config.nonlinear_prob)
    x = paint(x, generator, config.paint_prob, config.inpaint_prob)
    return x, targets


def corrupt(images: torch.Tensor, generator: torch.Generator,
            config: GenesisConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The Models Genesis pair for a batch: ``(damaged input, target)``.

    The target is the (possibly flipped) original; the input is the target after
    pixel shuffling, the intensity curve and painting, each drawn per image.
    On CPU the batch goes through the chain in chunks of about
    ``CPU_CHUNK_PIXELS`` pixels, whose temporaries stay in cache (measured
    1.15-1.4x faster than whole batches at 128-256 px); GPUs take it whole.
    """
    config = config or GenesisConfig()
    _check(images)
    if images.device.type == "cpu":
        per_chunk = max(1, CPU_CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
        if images.shape[0] > per_chunk:
            pairs = [_chain(chunk, generator, config) for chunk in images.split(per_chunk)]
            return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    return _chain(images, generator, config)
