"""Pictures of a selection, for a human to judge it before paying for annotations.

* :func:`contact_sheet_by_cluster` -- the chosen images, one labelled row per
  cluster (nearest-to-centre first for ``saal``), so one sees what each cluster
  stands for and whether the picks cover the variety of the pool;
* :func:`pool_map` -- a 2-D PCA map of the whole pool with the chosen images
  highlighted, coloured by cluster when the strategy made clusters.

Both render headless (Agg canvas, no global backend switch) and write the PNG
atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from saal.errors import SelectionError
from saal.io import atomic_write_bytes
from saal.selection.base import Selection


def _save(fig: Figure, png: str | Path, dpi: int) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(png, buf.getvalue())


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (S, S, C) -> uint8 (size, size, 3)."""
    img = image[..., 0] if image.shape[-1] == 1 else image
    pil = Image.fromarray(np.ascontiguousarray(img)).convert("RGB")
    return np.asarray(pil.resize((size, size), Image.BILINEAR))


def _groups(selection: Selection, per_row: int, max_rows: int) -> list[tuple[str, np.ndarray]]:
    """(label, positions in the selection) per sheet row."""
    pos = np.arange(len(selection))
    clusters = selection.cluster
    if (clusters >= 0).any():
        rows = []
        for c in np.unique(clusters):
            mine = pos[clusters == c]
            name = f"cluster {c}" if c >= 0 else "no cluster"
            shown = f" (showing {per_row} of {mine.size})" if mine.size > per_row else f" ({mine.size})"
            rows.append((name + shown, mine[:per_row]))
        return rows
    return [(f"ranks {s + 1}-{min(s + per_row, pos.size)}", pos[s:s + per_row])
            for s in range(0, min(pos.size, per_row * max_rows), per_row)]


def contact_sheet_by_cluster(png: str | Path, images: np.ndarray, selection: Selection, ids: Sequence[str],
                             *, per_row: int = 10, thumb: int = 96, max_rows: int = 20, dpi: int = 100) -> Path:
    """The chosen images grouped by cluster, one labelled row per cluster (in selection order).

    Strategies without clusters get rows of ``per_row`` images in rank order
    (at most ``max_rows`` rows).
    """
    if images.ndim != 4 or images.shape[0] != len(ids):
        raise SelectionError(f"{png}: images must be (N, S, S, C) aligned with {len(ids)} ids, got {images.shape}")
    if len(selection) == 0:
        raise SelectionError(f"{png}: nothing selected, no contact sheet to draw")
    rows = _groups(selection, per_row, max_rows)
    ncols = max(p.size for _, p in rows)
    fig = Figure(figsize=(1.25 * ncols + 1.8, 1.45 * len(rows) + 0.6))
    fig.suptitle(f"{selection.strategy}: {len(selection)} selected images")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, positions) in enumerate(rows):
        for col in range(ncols):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= positions.size:
                ax.set_axis_off()
                continue
            p = int(positions[col])
            i = int(selection.indices[p])
            ax.imshow(_thumbnail(images[i], thumb))
            ax.set_title(f"#{p + 1} {ids[i]}", fontsize=6)
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_axis_on()
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return _save(fig, png, dpi)


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
    return _save(fig, png, dpi)
