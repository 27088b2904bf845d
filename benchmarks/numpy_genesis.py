"""Per-sample NumPy Models Genesis damage: the plain baseline for ``bench_ssl.py``.

The same transforms and distributions as :mod:`saal.ssl.transforms`, written
the straightforward way the reference implementation is written: one image at
a time, a Python loop over the blocks of the pixel shuffling, a loop over the
painted boxes, ``np.interp`` per image for the intensity curve. It exists only
to measure what vectorising over the batch buys; the library never uses it.
Images are float ``(C, H, W)`` arrays in [0, 1].
"""

from __future__ import annotations

import numpy as np

CURVE_POINTS = 1024
PAINT_BOXES = 5
PAINT_CONTINUE = 0.95


def flip(image: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    for _ in range(3):
        if rng.random() >= p:
            break
        image = np.flip(image, axis=1 + int(rng.integers(2)))
    return np.ascontiguousarray(image)


def _cuts(size: int, block: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts, start = [], 0
    while start < size:
        length = int(rng.integers(1, block + 1))
        cuts.append((start, min(start + length, size)))
        start += length
    return cuts


def local_pixel_shuffle(image: np.ndarray, rng: np.random.Generator, p: float,
                        block_fraction: float = 0.1) -> np.ndarray:
    if rng.random() >= p:
        return image
    c, h, w = image.shape
    block = max(1, int(block_fraction * min(h, w)))
    out = image.copy()
    for y0, y1 in _cuts(h, block, rng):
        for x0, x1 in _cuts(w, block, rng):
            window = image[:, y0:y1, x0:x1].reshape(c, -1)
            perm = rng.permutation(window.shape[1])
            out[:, y0:y1, x0:x1] = window[:, perm].reshape(c, y1 - y0, x1 - x0)
    return out


def nonlinear_intensity(image: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    if rng.random() >= p:
        return image
    (p1x, p1y, p2x, p2y), decreasing = rng.random(4), rng.random() < 0.5
    t = np.linspace(0.0, 1.0, CURVE_POINTS)
    b1, b2, b3 = 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
    xs = np.sort(p1x * b1 + p2x * b2 + b3)
    ys = np.sort(p1y * b1 + p2y * b2 + b3)
    if decreasing:
        ys = ys[::-1]
    return np.interp(image, xs, ys).astype(image.dtype)


def paint(image: np.ndarray, rng: np.random.Generator, p: float, inpaint_prob: float) -> np.ndarray:
    if rng.random() >= p:
        return image
    c, h, w = image.shape
    outpaint = rng.random() >= inpaint_prob
    if outpaint:
        out = rng.random(image.shape).astype(image.dtype)
        lo_h, hi_h, lo_w, hi_w = h - 4 * h // 7, h - 3 * h // 7, w - 4 * w // 7, w - 3 * w // 7
    else:
        out = image.copy()
        lo_h, hi_h, lo_w, hi_w = max(1, h // 6), max(1, h // 3), max(1, w // 6), max(1, w // 3)
    for k in range(PAINT_BOXES):
        if not (outpaint and k == 0) and rng.random() >= PAINT_CONTINUE:
            break
        bh, bw = int(rng.integers(lo_h, hi_h + 1)), int(rng.integers(lo_w, hi_w + 1))
        y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        if outpaint:
            out[:, y0:y0 + bh, x0:x0 + bw] = image[:, y0:y0 + bh, x0:x0 + bw]
        else:
            out[:, y0:y0 + bh, x0:x0 + bw] = rng.random((c, bh, bw))
    return out


def corrupt(image: np.ndarray, rng: np.random.Generator, flip_prob=0.4, shuffle_prob=0.5, nonlinear_prob=0.9,
            paint_prob=0.9, inpaint_prob=0.2) -> tuple[np.ndarray, np.ndarray]:
    """(damaged input, target) for one image, as the reference's generate_pair does per sample."""
    target = flip(image, rng, flip_prob)
    x = local_pixel_shuffle(target, rng, shuffle_prob)
    x = nonlinear_intensity(x, rng, nonlinear_prob)
    x = paint(x, rng, paint_prob, inpaint_prob)
    return x, target
