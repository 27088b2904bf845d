"""Pictures of a selection, for a human to judge it before paying for annotations.

* :func:`selection_sheet` -- the chosen images in rank order as a grid, each
  titled with its rank, id, cluster and the strategy's distance, framed in its
  cluster's colour, so one sees what each cluster stands for and whether the
  picks cover the variety of the pool. Callers pass the images as the annotator
  will see them (:func:`saal.data.thumbnails.colour_thumbnails`);
* :func:`pool_map` -- a 2-D PCA map of the whole pool with the chosen images
  highlighted, coloured by cluster when the strategy made clusters.

Both render headless (Agg canvas, no global backend switch) and write the PNG
atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from saal.errors import SelectionError
from saal.render.figures import save_figure, thumbnail
from saal.selection.base import Selection


def selection_sheet(png: str | Path, images: np.ndarray, selection: Selection, ids: Sequence[str], *,
                    columns: int = 8, thumb: int = 128, dpi: int = 100) -> Path:
    """The chosen images as a grid in rank order (``images[j]`` is the image of rank ``j + 1``).

    ``ids`` are the pool's ids (row-aligned with the selection's indices).
    """
    if images.ndim != 4 or images.shape[0] != len(selection):
        raise SelectionError(f"{png}: need one (S, S, C) image per selected item ({len(selection)}), "
                             f"got {images.shape}")
    if len(selection) == 0:
        raise SelectionError(f"{png}: nothing selected, no sheet to draw")
    n = len(selection)
    ncols = min(columns, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(1.55 * ncols, 1.85 * nrows + 0.4), layout="constrained")
    clustered = bool((selection.cluster >= 0).any())
    title = f"{selection.strategy}: {n} selected images in rank order"
    fig.suptitle(title + (" (frame colour: cluster)" if clustered else ""), fontsize=10)
    cmap = colormaps["tab10" if int(selection.cluster.max(initial=0)) < 10 else "tab20"]
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for rank, ax in enumerate(axes.flat[:n]):
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(thumbnail(images[rank], thumb))
        c = int(selection.cluster[rank])
        d = float(selection.distance[rank])
        caption = f"#{rank + 1} {ids[int(selection.indices[rank])]}"
        details = ([f"cluster {c}"] if c >= 0 else []) + ([f"d {d:.3g}"] if math.isfinite(d) else [])
        ax.set_title(caption + ("\n" + ", ".join(details) if details else ""), fontsize=6.5)
        for spine in ax.spines.values():
            spine.set_visible(clustered)
            spine.set_color(cmap(c % cmap.N) if c >= 0 else "0.5")
            spine.set_linewidth(3)
    return save_figure(fig, png, dpi)


def pool_map(png: str | Path, features: np.ndarray, selection: Selection, clusters: np.ndarray | None = None,
             *, seed: int = 0, max_points: int = 20_000, dpi: int = 120) -> Path:
    """2-D PCA map of the pool (at most ``max_points`` drawn) with the selection highlighted.

    ``clusters`` (one label per pool item) defaults to the selection's own
    clustering; without either, the pool is grey.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise SelectionError(f"{png}: need (N >= 2, D) features for a pool map, got shape {x.shape}")
    if clusters is None:
        clusters = selection.pool_clusters
    if clusters is not None and len(clusters) != x.shape[0]:
        raise SelectionError(f"{png}: {len(clusters)} cluster labels for {x.shape[0]} pool items")
    n_comp = min(2, x.shape[1])
    xy = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    if n_comp == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(x.shape[0])])
    shown = np.arange(x.shape[0])
    if shown.size > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(shown, max_points, replace=False))
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    chosen = selection.indices
    if clusters is not None:
        cmap = "tab10" if int(np.max(clusters)) < 10 else "tab20"
        labels = np.asarray(clusters)
        ax.scatter(xy[shown, 0], xy[shown, 1], c=labels[shown], cmap=cmap, s=4, alpha=0.35, linewidths=0,
                   vmin=0, vmax=max(int(labels.max()), 1), label=f"pool ({x.shape[0]})")
        ax.scatter(xy[chosen, 0], xy[chosen, 1], c=labels[chosen], cmap=cmap, s=60, marker="*",
                   edgecolors="black", linewidths=0.6, vmin=0, vmax=max(int(labels.max()), 1),
                   label=f"selected ({chosen.size})")
    else:
        ax.scatter(xy[shown, 0], xy[shown, 1], c="0.6", s=4, alpha=0.4, linewidths=0, label=f"pool ({x.shape[0]})")
        ax.scatter(xy[chosen, 0], xy[chosen, 1], c="crimson", s=60, marker="*", edgecolors="black",
                   linewidths=0.6, label=f"selected ({chosen.size})")
    if chosen.size <= 30:
        for rank, i in enumerate(chosen, start=1):
            ax.annotate(str(rank), xy[i], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"{selection.strategy}: {chosen.size} of {x.shape[0]} images")
    ax.legend(loc="best", fontsize=8, markerscale=1.0)
    fig.tight_layout()
    return save_figure(fig, png, dpi)
