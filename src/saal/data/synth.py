"""A synthetic dermoscopy dataset that ships in the package: the whole pipeline runs with zero downloads.

Each image is an RGB dermoscopy-like picture with one binary lesion mask. The
generator models what makes real archives (ISIC) hard: irregular, multi-lobed
borders, colour variegation and texture inside the lesion, skin tones from
light to dark, uneven illumination and the dark circular vignette of
dermoscopes, hairs, scale bars, gel bubbles, calibration stickers, lesions cut by
the image border and lesions barely darker than the skin. Above all it has
*sub-populations of very different frequency* (:data:`GROUPS`), from a 50%
majority of common round brown nevi down to 5% of red vascular lesions, which
look different and are segmented badly by a model that never saw them: exactly
the situation in which a cold-start selection that covers rare groups pays off.

Image ``i`` depends only on ``(seed, i)``, so ``generate(100)`` is a prefix of
``generate(1000)`` and ``start`` continues a sequence (see
:mod:`saal.data.synth_params`); rendering is vectorised over chunks of images
(:mod:`saal.data.synth_render`). ``docs/synthetic-data.md`` shows examples.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SaalError
from ..io import write_csv, write_json
from .synth_params import GROUP_NAMES, GROUPS, sample_params
from .synth_render import render

__all__ = ["GENERATOR_VERSION", "GROUPS", "MAX_SIZE", "MIN_SIZE", "SynthBatch", "generate", "isic_id",
           "write_isic_layout"]

# Bump whenever the same (seed, i, size) would render a different image.
GENERATOR_VERSION = "1.0"
MIN_SIZE, MAX_SIZE = 32, 512
ISIC_ID_BASE = 9_000_000  # far above real ISIC ids (ISIC_00xxxxx), so the two never collide
_MAX_IMAGES = 1_000_000   # keeps ids at 7 digits
_PIXELS_PER_CHUNK = 64 * 128 * 128  # bounds the working memory of one rendering pass (~100 MB)


@dataclass
class SynthBatch:
    """Generated images and what is known about each of them.

    ``attributes`` holds one array per measured property, indexed like the images:
    ``skin_tone`` (skin melanin density, 0 light .. 2 dark), ``lesion_area`` (mask
    fraction), ``touches_border``, ``contrast`` ((skin luma - lesion luma) / skin
    luma, over pixels free of hair and opaque objects), ``skin_luma``,
    ``lesion_rgb`` / ``skin_rgb`` (mean colours in [0, 1], shape (N, 3)),
    ``hair_coverage`` (mean hair coverage of the pixels), ``n_hairs``, ``n_bubbles``, and the
    flags ``vignette``, ``ruler``, ``sticker``.
    """

    images: np.ndarray  # uint8 (N, S, S, 3)
    masks: np.ndarray   # uint8 (N, S, S) in {0, 1}
    groups: list[str]
    attributes: dict[str, np.ndarray]
    start: int = 0      # index of the first image in the seed's sequence

    def __len__(self) -> int:
        return len(self.groups)


def _check(n: int, size: int, seed: int, start: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise SaalError(f"n: number of images must be a non-negative integer, got {n!r}")
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise SaalError(f"size: image size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SaalError(f"seed: must be a non-negative integer, got {seed!r}")
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise SaalError(f"start: must be a non-negative integer, got {start!r}")


def chunk_size(size: int) -> int:
    """Images rendered together at ``size``: 64 at 128 px, fewer for larger images."""
    return int(np.clip(_PIXELS_PER_CHUNK // (size * size), 1, 256))


def generate(n: int, size: int = 128, seed: int = 0, *, start: int = 0) -> SynthBatch:
    """Images ``start .. start+n-1`` of the sequence defined by ``seed``, rendered at ``size`` pixels."""
    _check(n, size, seed, start)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    groups: list[str] = []
    parts: list[dict[str, np.ndarray]] = []
    step = chunk_size(size)
    for lo in range(0, n, step):
        params = [sample_params(seed, start + i) for i in range(lo, min(n, lo + step))]
        images[lo:lo + len(params)], masks[lo:lo + len(params)], attrs = render(params, size)
        groups += [GROUP_NAMES[p.group] for p in params]
        parts.append(attrs)
    attributes = {k: np.concatenate([a[k] for a in parts]) for k in parts[0]} if parts else {}
    return SynthBatch(images=images, masks=masks, groups=groups, attributes=attributes, start=start)


def isic_id(index: int) -> str:
    """ISIC-style id of synthetic image ``index``: ``ISIC_9000000`` upwards."""
    return f"ISIC_{ISIC_ID_BASE + index:07d}"


def _encode(image: np.ndarray, fmt: str, **kwargs) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_isic_layout(out_dir: str | os.PathLike, n: int, size: int = 256, seed: int = 0,
                      progress: bool = True) -> dict[str, int]:
    """Write ``n`` synthetic pairs in the ISIC 2017 training layout; return the image count per group.

    Writes ``ISIC-2017_Training_Data/ISIC_90xxxxx.jpg`` (JPEG quality 95),
    ``ISIC-2017_Training_Part1_GroundTruth/ISIC_90xxxxx_segmentation.png`` (0/255),
    ``saal_synth_groups.csv`` (``image_id,group``) and ``saal_synth.json``
    (generator version, seed, n, size). Everything goes to a temporary folder
    beside ``out_dir`` that is renamed at the end, so a crash never leaves a half
    dataset under the final name; an existing non-empty ``out_dir`` is refused
    rather than touched.
    """
    _check(n, size, seed, 0)
    if n < 1 or n > _MAX_IMAGES:
        raise SaalError(f"n: number of images must be from 1 to {_MAX_IMAGES}, got {n}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SaalError(f"{out}: already exists and is not an empty folder; choose a new --out folder "
                        "(existing data is never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        counts = _write_pairs(tmp, n, size, seed, progress)
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace cannot replace a folder on every platform
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def _write_pairs(root: Path, n: int, size: int, seed: int, progress: bool) -> dict[str, int]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    image_dir = root / "ISIC-2017_Training_Data"
    mask_dir = root / "ISIC-2017_Training_Part1_GroundTruth"
    image_dir.mkdir()
    mask_dir.mkdir()
    rows: list[dict[str, str]] = []
    columns = (TextColumn("synthesising"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("synth", total=n)
        step = chunk_size(size)
        for lo in range(0, n, step):
            batch = generate(min(step, n - lo), size, seed, start=lo)
            for k, group in enumerate(batch.groups):
                name = isic_id(lo + k)
                # plain writes: the folder is private until the final rename, which is the atomic step
                (image_dir / f"{name}.jpg").write_bytes(_encode(batch.images[k], "JPEG", quality=95))
                (mask_dir / f"{name}_segmentation.png").write_bytes(_encode(batch.masks[k] * 255, "PNG"))
                rows.append({"image_id": name, "group": group})
            bar.advance(task, len(batch))
    write_csv(root / "saal_synth_groups.csv", rows, ["image_id", "group"])
    counts = Counter(r["group"] for r in rows)
    counts = {g: counts.get(g, 0) for g in GROUPS}
    write_json(root / "saal_synth.json", {"generator": "saal.data.synth", "version": GENERATOR_VERSION,
                                          "seed": seed, "n": n, "size": size, "group_counts": counts})
    return counts
