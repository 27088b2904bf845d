"""Headless figures: a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot), written atomically.

Plotting never touches global backend state or leaks figures, and a crash while
saving leaves the previous PNG in place.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from PIL import Image

from ..errors import SaalError
from ..io import atomic_write_bytes


def save_figure(fig: Figure, png: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(png, buf.getvalue())


def log2_budget_axis(ax: Axes, budgets: Sequence[int]) -> None:
    """Log2 x axis ticked at the budgets themselves (10, 20, 40, ... rather than powers of two).

    Budgets roughly double from round to round, so a log axis gives every round
    the same width and the small budgets, where selection matters, stay readable.
    """
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(b) for b in budgets))
    ax.set_xticks(ticks, labels=[str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) == 1:  # a single point has no extent on a log axis
        ax.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
    ax.set_xlabel("labeled images (log2 scale)")
    ax.grid(True, which="major", alpha=0.3)


def score_ylim(values_pct: Sequence[float]) -> tuple[float, float]:
    """A Dice/IoU axis that starts at 50 % (or lower, in steps of 10, when a value is lower) and ends at 100 %.

    A fixed, wide range shows a two-point difference as the small thing it is;
    an axis fitted to the data (88-96) would make seed noise look like a trend.
    """
    finite = [v for v in values_pct if math.isfinite(v)]
    low = min(finite, default=50.0)
    return (min(50.0, 10.0 * math.floor(low / 10.0)), 100.0)


def plot_round_curve(png: str | os.PathLike, rounds: Sequence[Mapping[str, float]], *, title: str,
                     dpi: int = 110) -> Path:
    """One run's test Dice and HD95 after each active-learning round, values written at the points.

    ``rounds`` are dicts with ``n_labeled``, ``dice`` (a fraction) and, when
    known, ``hd95`` (pixels); rounds without a Dice are left out.
    """
    try:
        points = sorted((int(r["n_labeled"]), float(r["dice"]), float(r.get("hd95", math.nan)))
                        for r in rounds if r.get("dice") is not None)
    except (KeyError, TypeError, ValueError) as err:
        raise SaalError(f"{png}: every round needs numeric 'n_labeled' and 'dice' ({err})") from None
    if not points:
        raise SaalError(f"{png}: no round with a test Dice to plot")
    budgets = np.array([p[0] for p in points])
    if np.any(budgets < 1):
        raise SaalError(f"{png}: n_labeled must be >= 1 on a log2 axis")
    dice = np.array([p[1] for p in points]) * 100.0
    hd95 = np.array([p[2] for p in points])
    has_hd = bool(np.isfinite(hd95).any())
    fig = Figure(figsize=(9.0 if has_hd else 5.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 2 if has_hd else 1, squeeze=False)[0]
    color = colormaps["tab10"](0)
    panels = [(axes[0], dice, "Dice (%)", "{:.1f}")]
    if has_hd:
        panels.append((axes[1], hd95, "HD95 (px, lower is better)", "{:.1f}"))
    for ax, values, label, fmt in panels:
        ax.plot(budgets, values, marker="o", linewidth=2, color=color)
        for b, v in zip(budgets, values):
            if math.isfinite(v):
                ax.annotate(fmt.format(v), (b, v), textcoords="offset points", xytext=(0, 7), ha="center",
                            fontsize="small")
        log2_budget_axis(ax, budgets.tolist())
        ax.set_ylabel(label)
    axes[0].set_ylim(*score_ylim(dice.tolist()))
    if has_hd:
        top = float(np.nanmax(hd95))
        axes[1].set_ylim(0.0, top * 1.25 if top > 0 else 1.0)
    fig.suptitle(title, fontsize="medium")
    return save_figure(fig, png, dpi)


def image_grid(png: str | os.PathLike, rows: Sequence[Sequence[np.ndarray]], *, column_titles: Sequence[str],
               row_titles: Sequence[str] = (), cell_inches: float = 1.6, dpi: int = 100) -> Path:
    """A grid of uint8 images (``(S, S)``, ``(S, S, 1)`` or ``(S, S, 3)``) with a title above every column."""
    if not rows or any(len(r) != len(column_titles) for r in rows):
        raise ValueError(f"{png}: every row needs one image per column title ({len(column_titles)})")
    n_rows, n_cols = len(rows), len(column_titles)
    fig = Figure(figsize=(cell_inches * n_cols + (1.2 if row_titles else 0.2), cell_inches * n_rows + 0.4),
                 layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            pixels = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
            ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
        if row_titles:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
    return save_figure(fig, png, dpi)


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(S, S, C)`` (C = 1 or 3) -> uint8 ``(size, size, 3)`` RGB, bilinear."""
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    pil = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    return np.asarray(pil.resize((size, size), Image.BILINEAR))
