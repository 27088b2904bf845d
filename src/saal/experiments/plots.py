"""The experiment's learning-curve figure: Dice against the number of labeled images, every cell.

Drawn from a :class:`~saal.experiments.results.Results` table on the shared
figure helpers of :mod:`saal.render.figures` (log2 budget axis, atomic PNG).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..errors import SaalError
from ..render.figures import log2_budget_axis, save_figure
from .results import HIGHER_IS_BETTER, METRIC_NAMES, Results
from .stats import budget_stats, full_supervision


def cell_colors(cells: Iterable[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per cell, assigned in sorted name order.

    Sorting (rather than table order) gives a cell the same colour in every figure drawn from
    the same set of cells, whichever order the runner wrote them in.
    """
    names = sorted(set(cells))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_learning_curves(png: str | os.PathLike, results: Results, *, metric: str = "dice",
                         cells: Sequence[str] | None = None, per_seed: bool = True,
                         title: str | None = None, dpi: int = 120) -> Path:
    """Mean curve with a ±std band per cell, thin per-seed lines, full supervision dashed.

    ``cells`` selects and orders the curves (default: all, in table order). Line style tells the
    initialisation apart: solid for SSL-pretrained, dash-dot for from-scratch.
    """
    if metric not in HIGHER_IS_BETTER:
        raise SaalError(f"metric {metric!r}: expected one of {', '.join(HIGHER_IS_BETTER)}")
    chosen = list(results.cells if cells is None else cells)
    if not chosen:
        raise SaalError(f"{results.source}: no learning curve to plot")
    unknown = [c for c in chosen if c not in results.cells]
    if unknown:
        raise SaalError(f"{results.source}: unknown cell {', '.join(map(repr, unknown))} "
                        f"(have: {', '.join(results.cells)})")
    colors = cell_colors(results.cells)
    scale = 100.0 if HIGHER_IS_BETTER[metric] else 1.0
    stats = budget_stats(results, metric)
    n_entries = len(chosen) + 1
    ncol = min(3, max(1, math.ceil(n_entries / 6)))
    legend_rows = math.ceil(n_entries / ncol)
    fig = Figure(figsize=(8.0, 5.0 + 0.22 * legend_rows), layout="constrained")
    ax = fig.add_subplot()
    for cell in chosen:
        color = colors[cell]
        _, init, _, train = results.meta(cell)
        style = "-." if init == "scratch" else "-"
        marker = "s" if train == "semi" else "o"  # semi-supervised curves: square markers (and "-semi" names)
        if per_seed:
            for budgets, values in results.curves(cell, metric).values():
                ax.plot(budgets, values * scale, color=color, linestyle=style, linewidth=0.6, alpha=0.3)
        mine = [st for st in stats if st.cell == cell]
        b = np.array([st.n_labeled for st in mine])
        mean = np.array([st.mean for st in mine]) * scale
        std = np.nan_to_num(np.array([st.std for st in mine]) * scale)  # one seed: no band
        ax.fill_between(b, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        ax.plot(b, mean, color=color, linestyle=style, marker=marker, markersize=4, linewidth=2, label=cell)
    full = full_supervision(results, metric)
    if full is not None:
        ax.axhline(full.mean * scale, color="black", linestyle="--", linewidth=1.5,
                   label=f"full supervision ({full.n_labeled} labels)")
        if math.isfinite(full.std):
            ax.axhspan((full.mean - full.std) * scale, (full.mean + full.std) * scale, color="gray", alpha=0.12)
    log2_budget_axis(ax, results.budgets)
    ax.set_ylabel(f"{METRIC_NAMES[metric]} (%)" if HIGHER_IS_BETTER[metric] else METRIC_NAMES[metric])
    ax.set_title(title or f"{METRIC_NAMES[metric]} vs labeled images (mean ± std over seeds)")
    fig.legend(loc="outside lower center", ncol=ncol, fontsize="small", frameon=False)
    return save_figure(fig, png, dpi)
