"""Looking at a dataset before training on it: what was found, what is wrong, what it looks like.

``inspect_dataset`` loads the folder the way training will (so the decoded
arrays land in the cache and the later run starts fast), always leaving bad
files out so that *every* problem is listed, not just the first. The report
says whether the data is usable as is: with problems it is usable only when
the user accepts skipping them (``skip_bad``). Problems include what training
would refuse later (file names that are not UTF-8, ids that cannot name an
annotation batch's files, images under the minimum side); masks with
transparent pixels, read by the loader's alpha rule, are listed as a warning.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import io as saal_io
from ..errors import DataError
from .imageio import DEFAULT_MAX_PIXELS
from .layouts import Problem
from .loader import LoadResult, load_dataset

MAX_LISTED = 20  # problems printed in full; the rest are counted


@dataclass
class MaskStats:
    fg_min: float
    fg_mean: float
    fg_max: float
    empty: int  # masks with no foreground after resizing
    border_share: float  # share of masks whose lesion touches the image border


def mask_stats(masks: np.ndarray) -> MaskStats:
    fg = masks.reshape(len(masks), -1).mean(axis=1)
    border = (masks[:, 0, :].any(axis=1) | masks[:, -1, :].any(axis=1)
              | masks[:, :, 0].any(axis=1) | masks[:, :, -1].any(axis=1))
    return MaskStats(float(fg.min()), float(fg.mean()), float(fg.max()), int((fg == 0).sum()),
                     float(border.mean()))


@dataclass
class InspectReport:
    result: LoadResult = field(repr=False)
    skip_bad: bool
    counts: dict[str, int]  # images per subset ("" = no subset)
    sizes: Counter  # (width, height) -> count, original sizes
    masks: MaskStats | None

    @property
    def problems(self) -> list[Problem]:
        return self.result.skipped

    @property
    def usable(self) -> bool:
        return not self.problems or self.skip_bad

    @property
    def reason(self) -> str:
        """One line saying why the data is not usable as is ('' when it is)."""
        if self.usable:
            return ""
        path, why = self.problems[0]
        return (f"{len(self.problems)} problem(s) found, first: {path}: {why}; fix them, or pass --skip-bad "
                f"to leave the {len(self.problems)} bad file(s) out")

    def format(self) -> str:
        r, data = self.result, self.result.data
        parts = ", ".join(f"{s or 'no subset'} {n}" for s, n in self.counts.items())
        lines = [f"dataset   {r.root}",
                 f"layout    {r.layout}: {r.layout_description}",
                 f"images    {len(data)} {'labeled' if data.labeled else 'unlabeled'} ({parts})",
                 f"sizes     {_sizes_text(self.sizes)}"]
        if self.masks is not None:
            m = self.masks
            lines.append(f"masks     foreground fraction min {m.fg_min:.3f} / mean {m.fg_mean:.3f} / max "
                         f"{m.fg_max:.3f}; {m.empty} empty; {100 * m.border_share:.1f}% touch the border "
                         f"(at {data.image_size}x{data.image_size})")
        cache = f"{'hit' if r.cache_hit else 'written'} at {r.cache_path}" if r.cache_path else "not used"
        lines.append(f"cache     {cache}")
        if self.problems:
            word = "skipped" if self.skip_bad else "must be fixed or skipped"
            lines.append(f"problems  {len(self.problems)} ({word}):")
            lines += [f"  - {p}: {why}" for p, why in self.problems[:MAX_LISTED]]
            if len(self.problems) > MAX_LISTED:
                lines.append(f"  ... and {len(self.problems) - MAX_LISTED} more")
        else:
            lines.append("problems  none")
        lines += [f"warning   {w}" for w in r.warnings]
        lines.append(f"status    {'usable' if self.usable else 'NOT usable as is'}")
        return "\n".join(lines)


def _sizes_text(sizes: Counter) -> str:
    """Distinct sizes: all of them when few, else smallest / median / largest by area and the commonest."""
    if len(sizes) <= 4:
        return ", ".join(f"{w}x{h} (x{n})" for (w, h), n in sorted(sizes.items(), key=lambda kv: kv[0][0] * kv[0][1]))
    flat = sorted((w * h, w, h) for (w, h), n in sizes.items() for _ in range(n))
    fmt = lambda t: f"{t[1]}x{t[2]}"  # noqa: E731
    common = ", ".join(f"{w}x{h} (x{n})" for (w, h), n in sizes.most_common(3))
    return (f"{len(sizes)} distinct; smallest {fmt(flat[0])}, median {fmt(flat[len(flat) // 2])}, largest "
            f"{fmt(flat[-1])}; most common {common}")


def inspect_dataset(path: str | os.PathLike, *, image_size: int = 128, skip_bad: bool = False,
                    cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                    max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True) -> InspectReport:
    """Load ``path`` in colour at ``image_size`` (bad files left out and listed) and summarise it."""
    result = load_dataset(path, image_size=image_size, grayscale=False, cache_dir=cache_dir, use_cache=use_cache,
                          skip_bad=True, max_pixels=max_pixels, progress=progress)
    data = result.data
    order = {"train": 0, "val": 1, "test": 2}
    counts = dict(sorted(Counter(data.subsets).items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))
    return InspectReport(result, skip_bad, counts, Counter(result.original_sizes),
                         mask_stats(np.asarray(data.masks)) if data.labeled else None)


def _outline(masks: np.ndarray) -> np.ndarray:
    """Boundary pixels of each mask: foreground with a background 4-neighbour."""
    m = masks.astype(bool)
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)), mode="edge")
    inner = p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    return m & ~inner


def contact_sheet(result: LoadResult, out: str | os.PathLike, *, n: int = 24, columns: int = 6,
                  seed: int = 0) -> Path:
    """Save a PNG grid of ``n`` seeded-random images with their mask outlines in red and ids below."""
    out = Path(out).expanduser()
    if out.resolve().is_relative_to(result.root.resolve()):
        raise DataError("is inside the data folder; saal never writes there: save the sheet elsewhere", out)
    data = result.data
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    tiles = np.asarray(data.images[pick])
    if tiles.shape[3] == 1:
        tiles = np.repeat(tiles, 3, axis=3)
    else:
        tiles = tiles.copy()
    if data.masks is not None:
        tiles[_outline(np.asarray(data.masks[pick]))] = (255, 0, 0)
    s, gap, label = data.image_size, 4, 12
    columns = min(columns, len(pick))
    rows = -(-len(pick) // columns)
    canvas = np.full((rows * (s + label + gap) + gap, columns * (s + gap) + gap, 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        y, x = gap + r * (s + label + gap), gap + c * (s + gap)
        canvas[y:y + s, x:x + s] = tile
    sheet = Image.fromarray(canvas)
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(pick):
        r, c = divmod(k, columns)
        draw.text((gap + c * (s + gap), gap + r * (s + label + gap) + s), data.ids[i][: s // 6], fill=(0, 0, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return saal_io.atomic_write_bytes(out, buf.getvalue())
