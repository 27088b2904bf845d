"""The human-in-the-loop cycle on a run directory: train -> query -> (annotators draw) -> import -> train ...

Every function takes a :class:`~saal.workspace.Workspace` and leaves its results
as plain files in ``RUN/active/`` (the loop directory, see
:mod:`saal.active.loop`) and ``RUN/annotate/round_N/`` (the batches for annotators).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..active import LoopConfig, LoopDir, export_batch, read_manifest
from ..active.annotate import Preannotations, format_writer, import_annotations_from, is_batch_folder, preannotate
from ..active.loop import loop_query, plot_curve, query_ids, train_and_evaluate
from ..errors import SaalError
from ..io import read_json, write_json
from ..workspace import Workspace
from .encoder import pool_features, ssl_state
from .select import plan_cold_start, selection_plan

ACTIVE_DIR = "active"
ANNOTATE_DIR = "annotate"
PENDING_FILE = "pending.json"


def loop_dir(ws: Workspace) -> LoopDir:
    """The run's active-learning folder (``RUN/active``)."""
    return LoopDir(ws.path(ACTIVE_DIR))


def run_loop_config(ws: Workspace, **options: Any) -> LoopConfig:
    """The loop settings of this run: its preset, its images' channels, its seed unless ``options`` give one."""
    return LoopConfig.from_preset(ws.preset, in_channels=ws.pool.channels, **{"seed": ws.seed, **options})


def train_model(ws: Workspace, *, init: str | None = None, finetune: str = "restart", steps: int | None = None,
                train: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train on every image labeled so far, evaluate on the test split (when it has masks), record the round.

    ``init`` (default: the preset's) says where the network starts: ``ssl`` or ``scratch``; ``train``
    (default: the preset's) whether the pool's unlabeled images join in: ``supervised`` or ``semi``.
    """
    init = init or ws.preset.init
    loop = loop_dir(ws)
    active = loop.load_active(ws.pool.ids)
    if active.n_labeled == 0:
        raise SaalError("no image is labeled yet: 'saal query' exports the first batch to annotate, "
                        "'saal annotate import DIR' adds the masks")
    round = max(active.round_of(k) or 0 for k in active.labeled_ids)
    config = run_loop_config(ws, budgets=(active.n_labeled,), steps=steps, cold_start=plan_cold_start(ws),
                             query=_last_query(loop), init=init, finetune=finetune, train=train)
    _, record = train_and_evaluate(loop, active, ws.pool, ws.test, config=config, round=round,
                                   ssl_state=ssl_state(ws, init, progress=progress), progress=progress)
    plot_curve(loop, title=f"{config.cold_start} cold start, {init} init: Dice after each round")
    return record


def _last_query(loop: LoopDir) -> str:
    pending = loop.file(PENDING_FILE)
    if not pending.is_file():
        return "none"
    record = read_json(pending)
    return record.get("query", record.get("strategy", "none"))  # "strategy": written before 0.2


@dataclass
class QueryResult:
    round: int
    ids: list[str]
    batch_dir: Path | None  # the folder for annotators; None when the oracle labeled them at once


def query_next(ws: Workspace, *, k: int | None = None, query: str | None = None, oracle: bool = False,
               format: str = "folder", document_root: str | os.PathLike | None = None,
               image_url: str | None = None, progress: bool = True) -> QueryResult:
    """Pick the next images to annotate and export them for annotators (or label them from the data's masks).

    The first batch is the cold-start plan (``selection.csv``); later ones are
    chosen by ``query`` (default: the preset's) with the newest model, which
    must have been trained on the current labeled set. The batch is exported as
    ``format`` (``folder``, ``labelstudio``, ``cvat``), with that model's masks
    as pre-annotations; Label Studio finds the images under ``document_root``
    (default: the run directory) or at ``image_url``.
    """
    loop = loop_dir(ws)
    active = loop.load_active(ws.pool.ids)
    pending_file = loop.file(PENDING_FILE)
    if pending_file.is_file():
        pending = read_json(pending_file)
        waiting = [i for i in pending["ids"] if i not in set(active.labeled_ids)]
        if waiting:
            raise SaalError(f"round {pending['round']} still waits for {len(waiting)} mask(s): annotate "
                            f"{pending['batch_dir']} and run 'saal annotate import {pending['batch_dir']}'")
    config = run_loop_config(ws, query=query)
    round = _next_round(active)
    batch_dir = ws.path(ANNOTATE_DIR, f"round_{round}")
    writer = None if oracle else format_writer(format, batch_dir, document_root=document_root or ws.run_dir,
                                               image_url=image_url)
    model = _current_model(loop, active.n_labeled)
    if active.n_labeled == 0:
        plan = selection_plan(ws)
        ids = plan if k is None else plan[:k]
    else:
        k = k or _next_increment(ws.preset.budgets, active.n_labeled)
        chooser = loop_query(config)
        if chooser.needs_predictions and model is None:
            raise SaalError(f"the {config.query} query needs a model trained on the {active.n_labeled} labeled "
                            "images: run 'saal train' first")
        features = pool_features(ws, progress=progress) if chooser.needs_features else None
        ids = query_ids(model if chooser.needs_predictions else None, active, ws.pool, k, query=chooser,
                        features=features, mc_samples=config.mc_samples, seed=config.round_seed(round))
    record = {"round": round, "ids": ids, "query": config.query}
    if oracle:
        if ws.pool.masks is None:
            raise SaalError("--oracle needs data with masks; export the batch for annotators instead")
        active.label(ids, round=round, source="cold-start" if round == 0 else "oracle")
        loop.save_active(active)
        write_json(pending_file, {**record, "batch_dir": ""})
        return QueryResult(round, ids, None)
    proposals = _proposals(model, ws, ids, round) if model is not None else None
    batch_dir = export_batch(batch_dir, ids, ws.pool, round=round, preannotations=proposals,
                             writers=[writer] if writer else [])
    write_json(pending_file, {**record, "batch_dir": str(batch_dir)})
    return QueryResult(round, ids, batch_dir)


def _next_round(active) -> int:
    """The round the next batch belongs to: 0 before any label, else one after the newest labeled round."""
    return max((active.round_of(i) or 0 for i in active.labeled_ids), default=-1) + 1


def _current_model(loop: LoopDir, n_labeled: int):
    """The newest model when it was trained on exactly the current labeled set, else None."""
    if n_labeled == 0:
        return None
    loaded = loop.load_model("latest")
    return loaded[0] if loaded is not None and loaded[1]["n_labeled"] == n_labeled else None


def _proposals(model, ws: Workspace, ids: list[str], round: int) -> Preannotations:
    """The model's masks and uncertainty for the batch; named after the round whose labels trained it."""
    return preannotate(model, ws.pool, ids, model_version=f"saal round {round - 1} ({ws.run_dir.name})")


def _next_increment(budgets: tuple[int, ...], n_labeled: int) -> int:
    """How many to query next: up to the preset's next budget, else the schedule's last step."""
    for b in budgets:
        if b > n_labeled:
            return b - n_labeled
    return budgets[-1] - budgets[-2] if len(budgets) > 1 else budgets[-1]


def import_annotations(ws: Workspace, source: str | os.PathLike, *,
                       batch: str | os.PathLike | None = None) -> list[str]:
    """Add the masks annotators made for an exported batch to the labeled set; returns the ids added.

    ``source`` is the batch folder (PNG masks in its ``masks/``) or an export
    of the batch's tasks from Label Studio (JSON) or CVAT (Segmentation mask
    zip); for an export, ``batch`` is the batch folder (default: the batch the
    run waits for). Every mask is checked (one per queried image, binary, the
    image's size) before anything is recorded; importing the same batch twice
    adds nothing.
    """
    loop = loop_dir(ws)
    active = loop.load_active(ws.pool.ids)
    export = None
    if batch is None and is_batch_folder(source):
        batch = source
    else:
        export = source
        batch = batch or _pending_batch(loop)
    rows = read_manifest(batch)
    rounds = {int(r["round"]) for r in rows}
    if len(rounds) != 1:
        raise SaalError(f"{batch}: the manifest mixes rounds {sorted(rounds)}")
    unknown = [r["image_id"] for r in rows if r["image_id"] not in set(ws.pool.ids)]
    if unknown:
        raise SaalError(f"{batch}: {len(unknown)} image(s) are not in this run's pool (first: {unknown[0]})")
    masks = import_annotations_from(batch, image_size=ws.pool.image_size, export=export)
    labeled = set(active.labeled_ids)
    new = [i for i in masks if i not in labeled]
    for i in new:
        loop.save_label(i, masks[i])
    if new:
        active.label(new, round=rounds.pop(), source="annotator")
        loop.save_active(active)
    return new


def _pending_batch(loop: LoopDir) -> str:
    pending = loop.file(PENDING_FILE)
    record = read_json(pending) if pending.is_file() else {}
    if not record.get("batch_dir"):
        raise SaalError("no exported batch waits for masks in this run: name the batch folder with --batch")
    return record["batch_dir"]
