"""Learning-curve figures: Dice against the number of labeled images.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot), so plotting
never touches global backend state or leaks figures, and PNGs are written atomically. The x axis is
log2 of the labeled-image count, the axis of the ALC in :mod:`saal.experiments.summary`.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..errors import SaalError
from ..io import atomic_write_bytes
from .summary import HIGHER_IS_BETTER, Results, budget_stats, full_supervision

_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD"}


def strategy_colors(strategies: Iterable[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per strategy, assigned in sorted label order.

    Sorting (rather than table order) gives a strategy the same colour in every figure drawn from
    the same set of strategies, whichever order the runner wrote them in.
    """
    names = sorted(set(strategies))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _scale(metric: str) -> float:
    return 100.0 if HIGHER_IS_BETTER[metric] else 1.0


def _axis_label(metric: str) -> str:
    return f"{_NAMES[metric]} (%)" if HIGHER_IS_BETTER[metric] else _NAMES[metric]


def _log2_budget_axis(ax: Axes, budgets: Sequence[int]) -> None:
    """Log2 x axis ticked at the budgets themselves (10, 20, 40, ... rather than powers of two)."""
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(b) for b in budgets))
    ax.set_xticks(ticks, labels=[str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) == 1:  # a single point has no extent on a log axis
        ax.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
    ax.set_xlabel("labeled images (log2 scale)")
    ax.grid(True, which="major", alpha=0.3)


def _save(fig: Figure, png: str | os.PathLike, dpi: int) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(png, buf.getvalue())


def plot_learning_curves(png: str | os.PathLike, results: Results, *, metric: str = "dice",
                         strategies: Sequence[str] | None = None, per_seed: bool = True,
                         title: str | None = None, dpi: int = 120) -> Path:
    """Mean curve with a ±std band per strategy, thin per-seed lines, full supervision dashed.

    ``strategies`` selects and orders the curves (default: all, in table order). Line style tells the
    initialisation apart: solid for SSL-pretrained, dash-dot for from-scratch.
    """
    if metric not in HIGHER_IS_BETTER:
        raise SaalError(f"metric {metric!r}: expected one of {', '.join(HIGHER_IS_BETTER)}")
    chosen = list(results.strategies if strategies is None else strategies)
    if not chosen:
        raise SaalError(f"{results.source}: no learning curve to plot")
    unknown = [s for s in chosen if s not in results.strategies]
    if unknown:
        raise SaalError(f"{results.source}: unknown strategy {', '.join(map(repr, unknown))} "
                        f"(have: {', '.join(results.strategies)})")
    colors = strategy_colors(results.strategies)
    scale = _scale(metric)
    stats = budget_stats(results, metric)
    n_entries = len(chosen) + 1
    ncol = min(3, max(1, math.ceil(n_entries / 6)))
    legend_rows = math.ceil(n_entries / ncol)
    fig = Figure(figsize=(8.0, 5.0 + 0.22 * legend_rows), layout="constrained")
    ax = fig.add_subplot()
    for strategy in chosen:
        color = colors[strategy]
        style = "-." if results.meta(strategy)[1] == "scratch" else "-"
        if per_seed:
            for budgets, values in results.curves(strategy, metric).values():
                ax.plot(budgets, values * scale, color=color, linestyle=style, linewidth=0.6, alpha=0.3)
        cells = [st for st in stats if st.strategy == strategy]
        b = np.array([st.n_labeled for st in cells])
        mean = np.array([st.mean for st in cells]) * scale
        std = np.nan_to_num(np.array([st.std for st in cells]) * scale)  # one seed: no band
        ax.fill_between(b, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        ax.plot(b, mean, color=color, linestyle=style, marker="o", markersize=4, linewidth=2, label=strategy)
    full = full_supervision(results, metric)
    if full is not None:
        ax.axhline(full.mean * scale, color="black", linestyle="--", linewidth=1.5,
                   label=f"full supervision ({full.n_labeled} labels)")
        if math.isfinite(full.std):
            ax.axhspan((full.mean - full.std) * scale, (full.mean + full.std) * scale, color="gray", alpha=0.12)
    _log2_budget_axis(ax, results.budgets)
    ax.set_ylabel(_axis_label(metric))
    ax.set_title(title or f"{_NAMES[metric]} vs labeled images (mean ± std over seeds)")
    fig.legend(loc="outside lower center", ncol=ncol, fontsize="small", frameon=False)
    return _save(fig, png, dpi)


def plot_single_run_curve(png: str | os.PathLike, rounds: Sequence[Mapping[str, float]], *,
                          title: str | None = None, full_dice: float | None = None, dpi: int = 120) -> Path:
    """One run's Dice after each AL round (``rounds``: dicts with ``n_labeled`` and ``dice``), values annotated."""
    if not rounds:
        raise SaalError(f"{png}: no rounds to plot")
    try:
        points = sorted((float(r["n_labeled"]), float(r["dice"])) for r in rounds)
    except KeyError as err:
        raise SaalError(f"{png}: every round needs 'n_labeled' and 'dice' (missing {err})") from None
    except (TypeError, ValueError) as err:
        raise SaalError(f"{png}: round values must be numbers ({err})") from None
    budgets = np.array([p[0] for p in points])
    dice = np.array([p[1] for p in points]) * 100.0
    if np.any(budgets < 1):
        raise SaalError(f"{png}: n_labeled must be >= 1 on a log2 axis")
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(budgets, dice, marker="o", linewidth=2, color=colormaps["tab10"](0), label="this run")
    for b, d in zip(budgets, dice):
        ax.annotate(f"{d:.1f}", (b, d), textcoords="offset points", xytext=(0, 6), ha="center", fontsize="small")
    if full_dice is not None:
        ax.axhline(full_dice * 100.0, color="black", linestyle="--", linewidth=1.5, label="full supervision")
    _log2_budget_axis(ax, budgets.astype(int).tolist())
    ax.margins(y=0.15)  # room for the value labels above the points
    ax.set_ylabel("Dice (%)")
    ax.set_title(title or "Dice after each active-learning round")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, png, dpi)
