"""The stages as one-call functions on a run directory: what the ``saal`` commands run.

``select_images`` (cold start) -> ``train_model`` -> ``query_next`` ->
``import_annotations`` -> ``train_model`` ... is the human-in-the-loop cycle;
``run_all`` is the whole pipeline with the data's own masks standing in for the
annotator. Each function opens nothing itself: it takes a
:class:`~saal.workspace.Workspace` (see :func:`saal.workspace.open_workspace`)
and leaves its results as plain files in the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .active import LoopConfig, LoopDir, export_batch, import_batch, read_manifest, run_simulated
from .active.loop import make_heuristic, plot_curve, query_ids, train_and_evaluate
from .errors import SaalError
from .io import load_state, read_json, write_json
from .segmentation import SegConfig
from .selection import get_strategy, read_selection_manifest, write_selection_manifest
from .workspace import Workspace, pool_features, ssl_weights

SELECTION_FILE = "selection.csv"
SELECTION_DIR = "selection"
ACTIVE_DIR = "active"
ANNOTATE_DIR = "annotate"
PENDING_FILE = "pending.json"


# ------------------------------------------------------------------------------ cold start
@dataclass
class SelectResult:
    manifest: Path
    ids: list[str]  # every selected id, rank order
    new_ids: list[str]  # those this call added
    sheet: Path
    pool_map: Path


def select_images(ws: Workspace, budget: int, *, strategy: str = "saal", weights: str | os.PathLike | None = None,
                  n_clusters: int | None = None, progress: bool = True) -> SelectResult:
    """Choose ``budget`` pool images to annotate first and write ``selection.csv`` plus pictures.

    No labels are used. A larger budget later extends the existing selection
    (its first rows never change); a different strategy needs a new run.
    """
    from .selection.figures import contact_sheet_by_cluster, pool_map

    if budget < 1 or budget > len(ws.pool):
        raise SaalError(f"--budget must be between 1 and the pool size {len(ws.pool)}, got {budget}")
    manifest = ws.path(SELECTION_FILE)
    prior: list[int] = []
    if manifest.is_file():
        rows = read_selection_manifest(manifest)
        if rows and rows[0].strategy != strategy:
            raise SaalError(f"{manifest} was made by the {rows[0].strategy} strategy; use a new run directory to try "
                            f"{strategy}")
        if len(rows) > budget:
            raise SaalError(f"{manifest} already selects {len(rows)} images, more than --budget {budget}")
        prior = ws.pool.index_of([r.image_id for r in rows]).tolist()
    features = pool_features(ws, weights, progress=progress)
    params = {"n_clusters": n_clusters or ws.preset.n_clusters} if strategy == "saal" else {}
    selection = get_strategy(strategy, **params).select(features, budget, already_selected=prior, seed=ws.seed)
    write_selection_manifest(manifest, selection, ws.pool.ids, ws.pool.sources)
    ids = [ws.pool.ids[i] for i in selection.indices]
    sheet = contact_sheet_by_cluster(ws.path(SELECTION_DIR, "selected_by_cluster.png"), ws.pool.images,
                                     selection, ws.pool.ids)
    pmap = pool_map(ws.path(SELECTION_DIR, "pool_map.png"), features, selection, seed=ws.seed)
    return SelectResult(manifest, ids, ids[len(prior):], sheet, pmap)


def selection_plan(ws: Workspace) -> list[str]:
    """The ids of ``selection.csv`` in rank order (SaalError if there is none yet)."""
    manifest = ws.path(SELECTION_FILE)
    if not manifest.is_file():
        raise SaalError(f"{manifest} not found: choose the first images with 'saal select --budget B' first")
    return [r.image_id for r in read_selection_manifest(manifest)]


# ------------------------------------------------------------------------------ training
def seg_config(ws: Workspace, **overrides: Any) -> SegConfig:
    """The preset's segmentation settings for this run's images (channels), with ``overrides``."""
    return SegConfig.from_preset(ws.preset, in_channels=ws.pool.channels,
                                 **{k: v for k, v in overrides.items() if v is not None})


def ssl_state(ws: Workspace, init: str, *, progress: bool = True) -> dict | None:
    """The self-supervised weights for ``init == 'ssl'`` (pretraining first if needed), else None."""
    return load_state(ssl_weights(ws, progress=progress)) if init == "ssl" else None


def _loop(ws: Workspace) -> LoopDir:
    return LoopDir(ws.path(ACTIVE_DIR))


def train_model(ws: Workspace, *, init: str = "ssl", finetune: str = "restart", steps: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Train on every image labeled so far, evaluate on the test split (when it has masks), record the round."""
    loop = _loop(ws)
    active = loop.load_active(ws.pool.ids)
    if active.n_labeled == 0:
        raise SaalError("no image is labeled yet: 'saal query' exports the first batch to annotate, "
                        "'saal annotate import DIR' adds the masks")
    round = max(active.round_of(k) or 0 for k in active.labeled_ids)
    strategy = _plan_strategy(ws)
    config = LoopConfig(budgets=(active.n_labeled,), seg=seg_config(ws, steps=steps), cold_start=strategy,
                        query=_last_query(loop), init=init, finetune=finetune, n_clusters=ws.preset.n_clusters,
                        seed=ws.seed)
    _, record = train_and_evaluate(loop, active, ws.pool, ws.test, config=config, round=round,
                                   ssl_state=ssl_state(ws, init, progress=progress), progress=progress)
    plot_curve(loop)
    return record


def _plan_strategy(ws: Workspace) -> str:
    manifest = ws.path(SELECTION_FILE)
    rows = read_selection_manifest(manifest) if manifest.is_file() else []
    return rows[0].strategy if rows else "none"


def _last_query(loop: LoopDir) -> str:
    pending = loop.file(PENDING_FILE)
    return read_json(pending).get("strategy", "none") if pending.is_file() else "none"


# ------------------------------------------------------------------------------ querying
@dataclass
class QueryResult:
    round: int
    ids: list[str]
    batch_dir: Path | None  # the folder for annotators; None when the oracle labeled them at once


def query_next(ws: Workspace, *, k: int | None = None, strategy: str | None = None, oracle: bool = False,
               progress: bool = True) -> QueryResult:
    """Pick the next images to annotate and export them for annotators (or label them from the data's masks).

    The first batch is the cold-start plan (``selection.csv``); later ones are
    chosen by ``strategy`` (default: the preset's) with the newest model, which
    must have been trained on the current labeled set.
    """
    loop = _loop(ws)
    active = loop.load_active(ws.pool.ids)
    pending_file = loop.file(PENDING_FILE)
    if pending_file.is_file():
        pending = read_json(pending_file)
        waiting = [i for i in pending["ids"] if i not in set(active.labeled_ids)]
        if waiting:
            raise SaalError(f"round {pending['round']} still waits for {len(waiting)} mask(s): annotate "
                            f"{pending['batch_dir']} and run 'saal annotate import {pending['batch_dir']}'")
    strategy = strategy or ws.preset.query
    if active.n_labeled == 0:
        round, plan = 0, selection_plan(ws)
        ids = plan if k is None else plan[:k]
    else:
        round = max(active.round_of(i) or 0 for i in active.labeled_ids) + 1
        k = k or _next_increment(ws.preset.budgets, active.n_labeled)
        heuristic = make_heuristic(strategy, n_clusters=ws.preset.n_clusters, seed=ws.seed)
        model = None
        if heuristic.needs_predictions:
            loaded = loop.load_model("latest")
            if loaded is None or loaded[1]["n_labeled"] != active.n_labeled:
                raise SaalError(f"the {strategy} query needs a model trained on the {active.n_labeled} labeled "
                                "images: run 'saal train' first")
            model = loaded[0]
        features = pool_features(ws, progress=progress) if heuristic.needs_features else None
        ids = query_ids(model, active, ws.pool, k, heuristic=heuristic, features=features,
                        mc_samples=8, seed=ws.seed * 1000 + round)
    if oracle:
        if ws.pool.masks is None:
            raise SaalError("--oracle needs data with masks; export the batch for annotators instead")
        active.label(ids, round=round, source="cold-start" if round == 0 else "oracle")
        loop.save_active(active)
        write_json(pending_file, {"round": round, "ids": ids, "strategy": strategy, "batch_dir": ""})
        return QueryResult(round, ids, None)
    batch_dir = export_batch(ws.path(ANNOTATE_DIR, f"round_{round}"), ids, ws.pool, round=round)
    write_json(pending_file, {"round": round, "ids": ids, "strategy": strategy, "batch_dir": str(batch_dir)})
    return QueryResult(round, ids, batch_dir)


def _next_increment(budgets: tuple[int, ...], n_labeled: int) -> int:
    """How many to query next: up to the preset's next budget, else the schedule's last step."""
    for b in budgets:
        if b > n_labeled:
            return b - n_labeled
    return budgets[-1] - budgets[-2] if len(budgets) > 1 else budgets[-1]


def import_annotations(ws: Workspace, batch_dir: str | os.PathLike) -> list[str]:
    """Add the masks annotators drew for an exported batch to the labeled set; returns the ids added.

    Every mask is checked (one per queried image, binary, the image's size)
    before anything is recorded; importing the same batch twice adds nothing.
    """
    loop = _loop(ws)
    active = loop.load_active(ws.pool.ids)
    rows = read_manifest(batch_dir)
    rounds = {int(r["round"]) for r in rows}
    if len(rounds) != 1:
        raise SaalError(f"{batch_dir}: the manifest mixes rounds {sorted(rounds)}")
    unknown = [r["image_id"] for r in rows if r["image_id"] not in set(ws.pool.ids)]
    if unknown:
        raise SaalError(f"{batch_dir}: {len(unknown)} image(s) are not in this run's pool (first: {unknown[0]})")
    masks = import_batch(batch_dir, image_size=ws.pool.image_size)
    labeled = set(active.labeled_ids)
    new = [i for i in masks if i not in labeled]
    for i in new:
        loop.save_label(i, masks[i])
    if new:
        active.label(new, round=rounds.pop(), source="annotator")
        loop.save_active(active)
    return new


# ------------------------------------------------------------------------------ everything
@dataclass
class RunResult:
    run_dir: Path
    rounds: list[dict[str, Any]]
    report: Path | None


def run_all(ws: Workspace, *, cold_start: str = "saal", query: str | None = None, init: str = "ssl",
            finetune: str = "restart", progress: bool = True) -> RunResult:
    """Pretrain -> select -> train -> active-learning rounds -> evaluate -> report, on the data's masks.

    The budgets are the preset's; the cold start is written to
    ``selection.csv`` first and the loop reads it, as a human team would.
    """
    if not ws.labeled_data or ws.test is None:
        raise SaalError("'saal run' simulates the annotator with the data's masks, but this data has none; "
                        "use 'saal select' and then 'saal query' / 'saal annotate import' / 'saal train'")
    budgets = tuple(b for b in ws.preset.budgets if b <= len(ws.pool))
    if not budgets:
        raise SaalError(f"the pool of {len(ws.pool)} images is smaller than the first budget {ws.preset.budgets[0]}")
    selected = select_images(ws, budgets[0], strategy=cold_start, progress=progress)
    config = LoopConfig(budgets=budgets, seg=seg_config(ws), cold_start=cold_start, query=query or ws.preset.query,
                        init=init, finetune=finetune, n_clusters=ws.preset.n_clusters, seed=ws.seed,
                        save_models=False)
    features = pool_features(ws, progress=progress)
    rounds = run_simulated(ws.path(ACTIVE_DIR), ws.pool, ws.test, config=config, features=features,
                           ssl_state=ssl_state(ws, init, progress=progress), plan=selected.ids, progress=progress)
    return RunResult(ws.run_dir, rounds, write_run_report(ws, selected.sheet))


def write_run_report(ws: Workspace, sheet: Path | None) -> Path | None:
    """``report.html``: the rounds, the learning curve, the selection and the final model's best/worst cases."""
    from .experiments.report_html import write_html_report
    from .segmentation import evaluate, save_prediction_overlays

    loop = _loop(ws)
    rounds = loop.rounds()
    loaded = loop.load_model("latest")
    if not rounds or loaded is None or ws.test is None:
        return None
    lines = ["| round | labeled | Dice | IoU | HD95 (px) | train s |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rounds:
        lines.append(f"| {r['round']} | {r['n_labeled']} | {100 * r['dice']:.1f} | {100 * r['iou']:.1f} | "
                     f"{r['hd95']:.1f} | {r['train_seconds']:.0f} |")
    summary = (f"Run {ws.run_dir} on {ws.source} ({len(ws.pool)} pool / {len(ws.test)} test images, preset "
               f"{ws.preset.name}, seed {ws.seed}); Dice on the test images after each round.\n\n## Rounds\n\n"
               + "\n".join(lines) + "\n")
    result = evaluate(loaded[0], ws.test)
    dice = result.column("dice")
    order = np.argsort(-dice, kind="stable")
    pick = np.concatenate([order[:4], order[-4:]])
    overlays = save_prediction_overlays(ws.path("overlays_best_worst.png"), ws.test.images[pick],
                                        ws.test.masks[pick], result.predictions[pick],
                                        [ws.test.ids[i] for i in pick], dice[pick])
    curve = loop.file("learning_curve.png")
    return write_html_report(ws.path("report.html"), summary_md=summary,
                             learning_curves_png=curve if curve.is_file() else None,
                             selection_sheets=[("cold start", sheet)] if sheet else [],
                             overlays=[("final model: 4 best and 4 worst test images", overlays)],
                             title="saal run report")
