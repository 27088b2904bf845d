"""Cold start: the first images to annotate, chosen without labels and written as a plan (``selection.csv``).

The plan is a file on purpose (as in COLosSAL): annotators work from it, and the
training stage reads it, so a selection can be inspected, edited or replaced
before anything is trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.thumbnails import colour_thumbnails
from ..errors import SaalError
from ..selection import make_cold_start, read_selection_manifest, write_selection_manifest
from ..selection.figures import pool_map, selection_sheet
from ..workspace import Workspace
from .encoder import pool_features

SELECTION_FILE = "selection.csv"
SELECTION_DIR = "selection"
#: Side in pixels of the colour pictures of chosen images (sheets and reports).
THUMBNAIL_PX = 128


@dataclass
class SelectResult:
    manifest: Path
    ids: list[str]  # every selected id, rank order
    new_ids: list[str]  # those this call added
    sheet: Path
    pool_map: Path


def select_images(ws: Workspace, budget: int, *, cold_start: str | None = None,
                  weights: str | os.PathLike | None = None, n_clusters: int | None = None,
                  progress: bool = True) -> SelectResult:
    """Choose ``budget`` pool images to annotate first and write ``selection.csv`` plus pictures.

    No labels are used. ``cold_start`` defaults to the preset's. A larger budget
    later extends the existing selection (its first rows never change); a
    different cold start needs a new run.
    """
    cold_start = cold_start or ws.preset.cold_start
    if budget < 1 or budget > len(ws.pool):
        raise SaalError(f"--budget must be between 1 and the pool size {len(ws.pool)}, got {budget}")
    manifest = ws.path(SELECTION_FILE)
    prior: list[int] = []
    if manifest.is_file():
        rows = read_selection_manifest(manifest)
        if rows and rows[0].strategy != cold_start:
            raise SaalError(f"{manifest} was made by the {rows[0].strategy} cold start; use a new run directory "
                            f"to try {cold_start}")
        if len(rows) > budget:
            raise SaalError(f"{manifest} already selects {len(rows)} images, more than --budget {budget}")
        prior = ws.pool.index_of([r.image_id for r in rows]).tolist()
    features = pool_features(ws, weights, progress=progress)
    strategy = make_cold_start(cold_start, n_clusters=n_clusters or ws.preset.n_clusters)
    selection = strategy.select(features, budget, already_selected=prior, seed=ws.seed)
    write_selection_manifest(manifest, selection, ws.pool.ids, ws.pool.sources)
    ids = [ws.pool.ids[i] for i in selection.indices]
    sheet = selection_sheet(ws.path(SELECTION_DIR, "selected.png"),
                            colour_thumbnails(ws.pool, selection.indices, THUMBNAIL_PX), selection, ws.pool.ids)
    pmap = pool_map(ws.path(SELECTION_DIR, "pool_map.png"), features, selection, seed=ws.seed)
    return SelectResult(manifest, ids, ids[len(prior):], sheet, pmap)


def selection_plan(ws: Workspace) -> list[str]:
    """The ids of ``selection.csv`` in rank order (SaalError if there is none yet)."""
    manifest = ws.path(SELECTION_FILE)
    if not manifest.is_file():
        raise SaalError(f"{manifest} not found: choose the first images with 'saal select --budget B' first")
    return [r.image_id for r in read_selection_manifest(manifest)]


def plan_cold_start(ws: Workspace) -> str:
    """The cold start that made ``selection.csv`` ("none" when there is no plan)."""
    manifest = ws.path(SELECTION_FILE)
    rows = read_selection_manifest(manifest) if manifest.is_file() else []
    return rows[0].strategy if rows else "none"
