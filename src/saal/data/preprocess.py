"""Decoding a scanned dataset into the fixed-size arrays every stage trains on.

As in the paper (and CEAL before it) each image is resized as a whole frame to
a square -- the aspect ratio is not kept -- optionally converted to grayscale,
and its mask is resized the same way and binarised at half intensity. Files are
decoded by a small thread pool (PIL releases the GIL while decoding) but the
arrays are filled in the items' order, so the result never depends on timing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError, SaalError
from .imageio import DEFAULT_MAX_PIXELS, read_image, read_mask
from .layouts import Item, Problem


@dataclass(frozen=True)
class Preprocessing:
    """Everything that decides the arrays' content (and so the cache key)."""

    image_size: int = 64
    grayscale: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if int(self.image_size) < 8:
            raise SaalError(f"image_size must be at least 8 pixels, got {self.image_size}")
        if int(self.max_pixels) < 1:
            raise SaalError(f"max_pixels must be positive, got {self.max_pixels}")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Decoded:
    images: np.ndarray  # (N, S, S, C) uint8, N = len(kept)
    masks: np.ndarray | None  # (N, S, S) uint8 {0, 1}
    kept: list[int]  # positions in the item list that decoded
    original_sizes: list[tuple[int, int]]  # (width, height) of each kept image
    problems: list[Problem]
    transparent_masks: list[str]  # kept masks with transparent pixels, read by imageio's alpha rule


def _decode_one(item: Item, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], bool]:
    image, size = read_image(item.image, size=prep.image_size, grayscale=prep.grayscale,
                             max_pixels=prep.max_pixels)
    mask, transparent = None, False
    if item.mask is not None:
        mask, transparent = read_mask(item.mask, size=prep.image_size, image_size=size, image_path=item.image,
                                      max_pixels=prep.max_pixels)
    return image, mask, size, transparent


def _safe(item: Item, prep: Preprocessing):
    try:
        return _decode_one(item, prep)
    except DataError as err:
        return err


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def decode_items(items: Sequence[Item], prep: Preprocessing, *, labeled: bool, skip_bad: bool = False,
                 workers: int | None = None, progress: bool = True) -> Decoded:
    """Decode every item; the first bad file raises unless ``skip_bad``, which lists it instead."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    n, s, c = len(items), prep.image_size, prep.channels
    images = np.empty((n, s, s, c), dtype=np.uint8)
    masks = np.empty((n, s, s), dtype=np.uint8) if labeled else None
    kept: list[int] = []
    sizes: list[tuple[int, int]] = []
    problems: list[Problem] = []
    transparent_masks: list[str] = []
    bar = Progress(TextColumn("decoding images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True, disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        task = bar.add_task("decode", total=n)
        futures = [pool.submit(_safe, item, prep) for item in items]
        try:
            for i in range(n):
                result = futures[i].result()
                futures[i] = None  # let the decoded arrays go once copied
                if isinstance(result, DataError):
                    if not skip_bad:
                        raise result
                    problems.append((result.path or str(items[i].image), result.reason))
                else:
                    image, mask, size, transparent = result
                    images[len(kept)] = image
                    if masks is not None:
                        masks[len(kept)] = mask
                    if transparent:
                        transparent_masks.append(str(items[i].mask))
                    kept.append(i)
                    sizes.append(size)
                bar.advance(task)
        except BaseException:  # a bad file or Ctrl-C: do not decode the rest before stopping
            for f in futures:
                if f is not None:
                    f.cancel()
            raise
    if len(kept) < n:
        images = images[: len(kept)].copy()
        masks = None if masks is None else masks[: len(kept)].copy()
    return Decoded(images, masks, kept, sizes, problems, transparent_masks)
