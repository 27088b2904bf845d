"""Cold start: the first images to annotate, chosen without labels and written as a plan (``selection.csv``).

The plan is a file on purpose (as in COLosSAL): annotators work from it, and the
training stage reads it, so a selection can be inspected, edited or replaced
before anything is trained. ``selection/plan.json`` beside it records how it was
made (cold start, k of the clustering, the weights of the features): every later
stage continues with those, not with the preset's, so the ``cold-start-rule``
query extends the run's own selection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import check_options
from ..data.thumbnails import colour_thumbnails
from ..errors import SaalError
from ..io import read_json, write_json
from ..selection import make_cold_start, read_selection_manifest, write_selection_manifest
from ..selection.figures import pool_map, selection_sheet
from ..workspace import Workspace, run_lock
from .encoder import pool_features

SELECTION_FILE = "selection.csv"
SELECTION_DIR = "selection"
PLAN_FILE = "plan.json"
#: Side in pixels of the colour pictures of chosen images (sheets and reports).
THUMBNAIL_PX = 128


@dataclass(frozen=True)
class Plan:
    """How the run's selection was made: what the later stages continue."""

    cold_start: str
    n_clusters: int
    weights: str | None  # the weights file of the features when not the run's own pretraining

    def to_dict(self) -> dict:
        return {"cold_start": self.cold_start, "n_clusters": self.n_clusters, "weights": self.weights}


@dataclass
class SelectResult:
    manifest: Path
    ids: list[str]  # every selected id, rank order
    new_ids: list[str]  # those this call added
    sheet: Path
    pool_map: Path


def run_plan(ws: Workspace) -> Plan | None:
    """The plan of the run's ``selection.csv`` (None when there is none yet).

    A selection made before ``plan.json`` existed reads its cold start from the manifest and the
    preset's k.
    """
    manifest = ws.path(SELECTION_FILE)
    if not manifest.is_file():
        return None
    plan_file = ws.path(SELECTION_DIR, PLAN_FILE)
    if plan_file.is_file():
        recorded = read_json(plan_file)
        try:
            plan = Plan(str(recorded["cold_start"]), int(recorded["n_clusters"]), recorded.get("weights"))
            check_options(cold_start=plan.cold_start, n_clusters=plan.n_clusters)
        except (KeyError, TypeError, ValueError, SaalError) as exc:
            raise SaalError(f"{plan_file}: not a selection plan ({exc}); delete the selection to choose again") \
                from None
        return plan
    rows = read_selection_manifest(manifest)
    if not rows:
        raise SaalError(f"{manifest} lists no image; delete it to choose again")
    return Plan(rows[0].strategy, ws.preset.n_clusters, None)


def select_images(ws: Workspace, budget: int, *, cold_start: str | None = None,
                  weights: str | os.PathLike | None = None, n_clusters: int | None = None,
                  progress: bool = True) -> SelectResult:
    """Choose ``budget`` pool images to annotate first and write ``selection.csv`` plus pictures.

    No labels are used. ``cold_start`` and ``n_clusters`` default to the run's plan when it has one,
    else to the preset's. A larger budget later extends the existing selection (its first rows never
    change); a different cold start, k or weights needs a new run.
    """
    check_options(budget=budget, cold_start=cold_start, n_clusters=n_clusters)
    if budget > len(ws.pool):
        raise SaalError(f"--budget must be between 1 and the pool size {len(ws.pool)}, got {budget}")
    with run_lock(ws.run_dir):
        held = run_plan(ws)
        weights = None if weights is None else str(Path(weights).resolve())
        plan = Plan(cold_start or (held.cold_start if held else ws.preset.cold_start),
                    n_clusters or (held.n_clusters if held else ws.preset.n_clusters),
                    weights if weights is not None else (held.weights if held else None))
        manifest = ws.path(SELECTION_FILE)
        prior: list[int] = []
        if held is not None:
            if plan != held:
                made = ", ".join(f"{k}={v!r}" for k, v in held.to_dict().items() if plan.to_dict()[k] != v)
                raise SaalError(f"{manifest} was made with {made}; use a new run directory to choose otherwise")
            rows = read_selection_manifest(manifest)
            if len(rows) > budget:
                raise SaalError(f"{manifest} already selects {len(rows)} images, more than --budget {budget}")
            prior = ws.pool.index_of([r.image_id for r in rows]).tolist()
        features = pool_features(ws, plan.weights, progress=progress)
        strategy = make_cold_start(plan.cold_start, n_clusters=plan.n_clusters)
        selection = strategy.select(features, budget, already_selected=prior, seed=ws.seed)
        write_json(ws.path(SELECTION_DIR, PLAN_FILE), plan.to_dict())  # first: the manifest is what counts
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
