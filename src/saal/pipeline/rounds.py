"""The human-in-the-loop cycle on a run directory: train -> query -> (annotators draw) -> import -> train ...

Every function takes a :class:`~saal.workspace.Workspace` and leaves its results
as plain files in ``RUN/active/`` (the loop directory, see
:mod:`saal.active.loop`) and ``RUN/annotate/round_N/`` (the batches for annotators).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..active import LoopConfig, LoopDir, export_batch, read_manifest
from ..active.annotate import (FORMATS, Preannotations, format_writer, import_annotations_from, is_batch_folder,
                               preannotate)
from ..active.annotate.folder import PREDICTIONS
from ..active.effort import preannotation_effort
from ..active.loop import loop_query, plot_curve, query_ids, train_and_evaluate
from ..active.pool import ActiveSet
from ..config import check_options
from ..data.imageio import resize_mask
from ..errors import DataError, SaalError, name_some
from ..io import append_jsonl, atomic_write_bytes, read_json, write_json
from ..progress import say
from ..workspace import Workspace, run_lock
from .encoder import pool_features, ssl_state
from .select import run_plan, selection_plan

ACTIVE_DIR = "active"
ANNOTATE_DIR = "annotate"
PENDING_FILE = "pending.json"
#: Masks replaced with ``--replace`` are kept here (``<id>.<n>.png``), listed in ``replaced.jsonl``.
REPLACED_DIR = "replaced"


def loop_dir(ws: Workspace) -> LoopDir:
    """The run's active-learning folder (``RUN/active``)."""
    return LoopDir(ws.path(ACTIVE_DIR))


def run_loop_config(ws: Workspace, **options: Any) -> LoopConfig:
    """The loop settings of this run: its preset, its images' channels, its seed, and its selection plan.

    The cold start and k of the clustering are the plan's (``saal select``'s) when the run has one, so the
    ``cold-start-rule`` query continues the selection that was made, not the preset's; ``options`` (None
    ignored) override any of them.
    """
    plan = run_plan(ws)
    held = {} if plan is None else {"cold_start": plan.cold_start, "n_clusters": plan.n_clusters}
    options = {k: v for k, v in options.items() if v is not None}
    return LoopConfig.from_preset(ws.preset, in_channels=ws.pool.channels, **{"seed": ws.seed, **held, **options})


def train_model(ws: Workspace, *, init: str | None = None, finetune: str = "restart", steps: int | None = None,
                train: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train on every image labeled so far, evaluate on the test split (when it has masks), record the round.

    ``init`` (default: the preset's) says where the network starts: ``ssl`` or ``scratch``; ``train``
    (default: the preset's) whether the pool's unlabeled images join in: ``supervised`` or ``semi``;
    ``finetune`` whether it starts from ``init`` (``restart``) or from the previous round's model
    (``continue``).
    """
    check_options(init=init, finetune=finetune, seg_steps=steps, seg_train=train)
    with run_lock(ws.run_dir):
        loop = loop_dir(ws)
        active = loop.load_active(ws.pool.ids)
        if active.n_labeled == 0:
            raise SaalError("no image is labeled yet: 'saal query' exports the first batch to annotate, "
                            "'saal annotate import DIR' adds the masks")
        config = run_loop_config(ws, budgets=(active.n_labeled,), steps=steps, query=_last_query(loop),
                                 init=init, finetune=finetune, train=train)
        _, record = train_and_evaluate(loop, active, ws.pool, ws.test, config=config, round=newest_round(active),
                                       ssl_state=ssl_state(ws, config.init, progress=progress), progress=progress)
        effort = _imported_effort(ws, loop, active, record["round"])
        if effort:
            record = {**record, **effort}
            loop.save_record(record)
        plot_curve(loop, title=f"{config.cold_start} cold start, {config.init} init: Dice after each round")
    return record


def _imported_effort(ws: Workspace, loop: LoopDir, active: ActiveSet, round: int) -> dict[str, Any]:
    """How much of its batch's pre-annotations (``predictions/``) round ``round``'s imported masks changed.

    Compared at the training size, as the simulated loop measures it (:mod:`saal.active.effort`); ``{}`` when the
    batch went out without proposals (the cold start, or no model yet).
    """
    folder = ws.path(ANNOTATE_DIR, f"round_{round}", PREDICTIONS)
    ids = [k for k in active.labeled_ids if active.round_of(k) == round and active.source_of(k) == "annotator"
           and (folder / f"{k}.png").is_file()]
    if not ids:
        return {}
    proposed = []
    for k in ids:
        try:
            with Image.open(folder / f"{k}.png") as im:
                proposed.append(resize_mask(np.asarray(im.convert("L")) >= 128, ws.pool.image_size))
        except (OSError, SyntaxError, ValueError):
            return {}  # a damaged proposal file: no effort figure, the training itself stands
    return preannotation_effort(np.stack(proposed), np.stack([loop.read_label(k) for k in ids]))


def _last_query(loop: LoopDir) -> str | None:
    """The query that chose the newest batch (None before any: the preset's is recorded)."""
    pending = loop.file(PENDING_FILE)
    if not pending.is_file():
        return None
    record = read_json(pending)
    return record.get("query", record.get("strategy"))  # "strategy": written before 0.2


@dataclass
class QueryResult:
    round: int
    ids: list[str]
    batch_dir: Path | None  # the folder for annotators; None when the oracle labeled them at once


def query_next(ws: Workspace, *, k: int | None = None, query: str | None = None, reduction: str | None = None,
               oracle: bool = False, format: str = "folder", document_root: str | os.PathLike | None = None,
               image_url: str | None = None, progress: bool = True) -> QueryResult:
    """Pick the next images to annotate and export them for annotators (or label them from the data's masks).

    The first batch is the cold-start plan (``selection.csv``); later ones are
    chosen by ``query`` (default: the preset's; ``cold-start-rule`` continues the
    plan's cold start with the plan's k) with the newest model, which must have
    been trained on the current labeled set when the query reads predictions
    (scored per image by ``reduction``, default: the preset's). The
    batch is exported as ``format`` (``folder``, ``labelstudio``, ``cvat``), with
    that model's masks as pre-annotations; Label Studio finds the images under
    ``document_root`` (default: the run directory) or at ``image_url``.
    """
    check_options(query=query, query_reduction=reduction, k=k)
    if format not in FORMATS:
        raise SaalError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if oracle and ws.pool.masks is None:
        raise SaalError("--oracle needs data with masks; export the batch for annotators instead")
    with run_lock(ws.run_dir):
        loop = loop_dir(ws)
        active = loop.load_active(ws.pool.ids)
        pending = pending_batch(ws, loop)
        if pending is not None:
            waiting = [i for i in pending["ids"] if i not in set(active.labeled_ids)]
            if waiting:
                folder = pending["batch_dir"]
                raise SaalError(f"round {pending['round']} still waits for {len(waiting)} mask(s): annotate {folder} "
                                f"and run 'saal annotate import {folder}'")
        config = run_loop_config(ws, query=query, reduction=reduction)
        round = newest_round(active) + 1
        batch_dir = ws.path(ANNOTATE_DIR, f"round_{round}")
        writer = None if oracle else format_writer(format, batch_dir, document_root=document_root or ws.run_dir,
                                                   image_url=image_url)
        model = _current_model(loop, active)
        if active.n_labeled == 0:
            plan = selection_plan(ws)
            ids = plan if k is None else plan[:k]
        else:
            k = k or next_increment(ws.preset.budgets, active.n_labeled)
            chooser = loop_query(config, active.n_labeled)
            if chooser.needs_predictions and model is None:
                raise SaalError(f"the {config.query} query needs a model trained on the {active.n_labeled} labeled "
                                "images: run 'saal train' first")
            if model is None and not oracle:
                say(f"no model is trained on the {active.n_labeled} labeled images yet: the batch goes out "
                    "without pre-annotations ('saal train' first to get them)")
            plan = run_plan(ws)
            features = (pool_features(ws, plan.weights if plan else None, progress=progress)
                        if chooser.needs_features else None)
            ids = query_ids(model if chooser.needs_predictions else None, active, ws.pool, k, query=chooser,
                            features=features, mc_samples=config.mc_samples, seed=config.round_seed(round))
        record = {"round": round, "ids": ids, "query": config.query}
        if oracle:
            active.label(ids, round=round, source="cold-start" if round == 0 else "oracle")
            loop.save_active(active)
            write_json(loop.file(PENDING_FILE), {**record, "batch_dir": ""})
            return QueryResult(round, ids, None)
        proposals = _proposals(model, ws, ids, round, config) if model is not None else None
        batch_dir = export_batch(batch_dir, ids, ws.pool, round=round, preannotations=proposals,
                                 writers=[writer] if writer else [])
        # relative to the run: a run folder moved elsewhere still finds its batch
        write_json(loop.file(PENDING_FILE), {**record, "batch_dir": batch_dir.relative_to(ws.run_dir).as_posix()})
    return QueryResult(round, ids, batch_dir)


def newest_round(active: ActiveSet) -> int:
    """The round of the newest labeled batch (-1 before any label)."""
    return max((active.round_of(i) or 0 for i in active.labeled_ids), default=-1)


def pending_batch(ws: Workspace, loop: LoopDir) -> dict[str, Any] | None:
    """The newest exported batch (``pending.json``) with ``batch_dir`` as a path (None before any)."""
    path = loop.file(PENDING_FILE)
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("ids"), list) or "round" not in record:
        raise DataError("not a record of the exported batch; delete it only if no batch waits for masks", path)
    folder = Path(record.get("batch_dir") or "")
    if record.get("batch_dir") and not folder.is_absolute():
        folder = ws.run_dir / folder
    elif record.get("batch_dir") and not folder.is_dir():  # written before 0.2 as an absolute path: moved run
        folder = ws.path(ANNOTATE_DIR, f"round_{record['round']}")
    return {**record, "batch_dir": folder if record.get("batch_dir") else None}


def _current_model(loop: LoopDir, active: ActiveSet):
    """The newest model when it was trained on exactly the current labeled set and its round is recorded.

    A model without its round record means a training was killed between saving the model and recording
    its evaluation: the round must be trained again before anything is queried from it.
    """
    if active.n_labeled == 0:
        return None
    loaded = loop.load_model("latest")
    if loaded is None or sorted(loaded[1].get("labeled_ids", [])) != sorted(active.labeled_ids):
        return None
    round = newest_round(active)
    if not any(r.get("round") == round and r.get("n_labeled") == active.n_labeled for r in loop.rounds()):
        raise SaalError(f"the training of round {round} ({active.n_labeled} labels) stopped before it was recorded "
                        "(killed?): run 'saal train' again, it redoes the round")
    return loaded[0]


def _proposals(model, ws: Workspace, ids: list[str], round: int, config: LoopConfig) -> Preannotations:
    """The model's masks and uncertainty for the batch, made as the run evaluates (TTA, lesion prior); named
    after the round whose labels trained it."""
    return preannotate(model, ws.pool, ids, model_version=f"saal round {round - 1} ({ws.run_dir.name})",
                       prior=config.seg.prior, threshold=config.seg.threshold, tta=config.seg.tta)


def next_increment(budgets: tuple[int, ...], n_labeled: int) -> int:
    """How many to query next: up to the preset's next budget, else the schedule's last step."""
    for b in budgets:
        if b > n_labeled:
            return b - n_labeled
    return budgets[-1] - budgets[-2] if len(budgets) > 1 else budgets[-1]


@dataclass
class ImportResult:
    """What an import recorded: the ids newly labeled, those whose masks ``replace`` changed, and those whose
    imported mask differs from the recorded one but was left alone (no ``replace``)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)


def import_annotations(ws: Workspace, source: str | os.PathLike, *, batch: str | os.PathLike | None = None,
                       replace: bool = False) -> ImportResult:
    """Add the masks annotators made for an exported batch to the labeled set.

    ``source`` is the batch folder (PNG masks in its ``masks/``) or an export
    of the batch's tasks from Label Studio (JSON) or CVAT (Segmentation mask
    zip); for an export, ``batch`` is the batch folder (default: the batch the
    run waits for). The batch must be one this run exported: the one it waits
    for, or an earlier one (importing it again adds nothing). Every mask is
    checked (one per queried image, binary, the image's size) before anything is
    recorded. ``replace`` records corrected masks of an earlier batch instead,
    keeping the replaced files in ``active/labels/replaced/``.
    """
    source = Path(source)
    if not source.exists():
        raise DataError("not found (expected an annotation batch folder or a Label Studio / CVAT export)", source)
    export = None
    if is_batch_folder(source):
        if batch is not None and Path(batch).resolve() != source.resolve():
            raise SaalError(f"{source} is a batch folder itself; --batch only names the batch of an export")
        batch = source
    else:
        export = source
    with run_lock(ws.run_dir):
        loop = loop_dir(ws)
        active = loop.load_active(ws.pool.ids)
        if batch is None:
            pending = pending_batch(ws, loop)
            if pending is None or pending["batch_dir"] is None:
                raise SaalError(f"{source}: no exported batch of this run waits for masks; name the batch folder "
                                "the export belongs to with --batch")
            batch = pending["batch_dir"]
        rows = read_manifest(batch)
        round = _batch_round(batch, rows)
        ids = [r["image_id"] for r in rows]
        _check_batch_of_run(ws, loop, active, Path(batch), round, ids)
        masks = import_annotations_from(batch, image_size=ws.pool.image_size, export=export)
        return _record_masks(loop, active, round, {i: masks[i] for i in ids}, replace=replace)


def import_mask(ws: Workspace, image_id: str, decode: Callable[[tuple[int, int]], np.ndarray]) -> ImportResult:
    """Record one annotator's mask of one image: what :func:`import_annotations` does for a batch, image by image.

    The path of the ML backend (:mod:`saal.serve`), which learns each annotation as it is submitted.
    ``decode(size)`` returns the mask, uint8 {0, 1} or bool of shape (height, width), at ``size`` = (width,
    height), the image's size in its batch's manifest; it may raise a DataError, and it runs before anything
    is written, so a refused mask leaves the run as it was. The image must be one of the batch the run waits
    for, or one whose mask was imported before, which is then replaced when it differs (the old file kept, as
    ``--replace`` keeps it). The mask is brought to the training size and written exactly as a batch's are.
    """
    with run_lock(ws.run_dir):
        loop = loop_dir(ws)
        active = loop.load_active(ws.pool.ids)
        batch, round = _batch_of_image(ws, loop, active, image_id)
        row = next((r for r in read_manifest(batch) if r["image_id"] == image_id), None)
        if row is None:
            raise DataError(f"the manifest does not list image {image_id}; the batch folder was changed by hand",
                            Path(batch) / "manifest.csv")
        try:
            size = (int(row["width"]), int(row["height"]))
        except ValueError:
            raise DataError(f"the manifest's size of {image_id} is not a width and height",
                            Path(batch) / "manifest.csv") from None
        mask = np.asarray(decode(size))
        if mask.shape != (size[1], size[0]) or ((mask != 0) & (mask != 1)).any():
            raise SaalError(f"the mask of {image_id} must be {size[0]}x{size[1]} (width x height) with values 0 and "
                            f"1; got shape {mask.shape}")
        return _record_masks(loop, active, round, {image_id: resize_mask(mask, ws.pool.image_size)}, replace=True)


def _batch_of_image(ws: Workspace, loop: LoopDir, active: ActiveSet, image_id: str) -> tuple[Path, int]:
    """The batch folder and round an annotation of ``image_id`` belongs to; SaalError when it belongs to none."""
    if image_id not in set(ws.pool.ids):
        raise SaalError(f"image {image_id} is not in this run's pool")
    pending = pending_batch(ws, loop)
    labeled = image_id in set(active.labeled_ids)
    if labeled and active.source_of(image_id) != "annotator":
        raise SaalError(f"image {image_id} was labeled from the data's own masks (round "
                        f"{active.round_of(image_id)}); only imported masks can be replaced")
    if pending is not None and pending["batch_dir"] is not None and image_id in pending["ids"]:
        return pending["batch_dir"], int(pending["round"])
    if labeled:
        return ws.path(ANNOTATE_DIR, f"round_{active.round_of(image_id)}"), int(active.round_of(image_id))
    if pending is None:
        raise SaalError(f"image {image_id}: no batch of this run waits for masks yet")
    waiting = [i for i in pending["ids"] if i not in set(active.labeled_ids)]
    if not waiting:
        raise SaalError(f"image {image_id} is not in a batch of this run: round {pending['round']} is complete and "
                        "the next batch is not chosen yet")
    raise SaalError(f"image {image_id} is not in the batch the run waits for (round {pending['round']}: "
                    f"{len(waiting)} images still to annotate, first {waiting[0]})")


def _record_masks(loop: LoopDir, active: ActiveSet, round: int, masks: dict[str, np.ndarray], *,
                  replace: bool) -> ImportResult:
    """Record checked masks (training size) of round ``round``'s images: the new ones labeled, the changed ones of
    images labeled before replaced (``replace``) or reported. Each mask file is written before the labeled set
    names it, so a crash between the two loses nothing that was recorded and counts nothing twice."""
    labeled = set(active.labeled_ids)
    result = ImportResult(added=[i for i in masks if i not in labeled])
    before = {i: m for i, m in masks.items() if i in labeled and active.source_of(i) == "annotator"}
    changed = [i for i, m in before.items() if not np.array_equal(loop.read_label(i), m.astype(bool))]
    if replace:
        result.replaced = _replace_masks(loop, active, {i: m for i, m in masks.items() if i in labeled}, changed)
    else:
        result.differing = changed
    for i in result.added:
        loop.save_label(i, masks[i])
    if result.added:
        active.label(result.added, round=round, source="annotator")
        loop.save_active(active)
    return result


def _batch_round(batch: str | os.PathLike, rows: list[dict[str, str]]) -> int:
    """The one round a batch's manifest names (DataError for an empty manifest or mixed / bad rounds)."""
    where = Path(batch) / "manifest.csv"
    if not rows:
        raise DataError("the manifest lists no images", where)
    found = {r["round"] for r in rows}
    if len(found) != 1:
        raise DataError(f"the manifest mixes rounds {name_some(sorted(found))}", where)
    text = found.pop()
    if not text.isdigit():
        raise DataError(f"the manifest's round {text!r} is not a round number", where)
    return int(text)


def _check_batch_of_run(ws: Workspace, loop: LoopDir, active: ActiveSet, batch: Path, round: int,
                        ids: list[str]) -> None:
    """Refuse a batch this run did not export: another run's, a hand-made one, a stale copy."""
    unknown = [i for i in ids if i not in set(ws.pool.ids)]
    if unknown:
        raise SaalError(f"{batch}: {len(unknown)} image(s) are not in this run's pool (first: {unknown[0]})")
    pending = pending_batch(ws, loop)
    if pending is not None and int(pending["round"]) == round and sorted(pending["ids"]) == sorted(ids):
        return
    if all(i in set(active.labeled_ids) and active.round_of(i) == round for i in ids):
        return  # an earlier batch of this run, imported already
    waits = (f"it waits for round {pending['round']} ({len(pending['ids'])} images, {pending['batch_dir']})"
             if pending is not None else "it has exported no batch")
    raise SaalError(f"{batch} (round {round}, {len(ids)} images) is not a batch this run asked for: {waits}; "
                    "import each batch into the run that exported it")


def _replace_masks(loop: LoopDir, active: ActiveSet, masks: dict[str, np.ndarray], changed: list[str]) -> list[str]:
    """Record the ``changed`` masks among ``masks`` (already labeled ids), keeping each replaced file.

    The old file is copied to the history first and the new mask then replaces it atomically, so a crash
    at any moment leaves a recorded mask for every image (a rerun of the import finishes the job).
    """
    simulated = [i for i in masks if active.source_of(i) != "annotator"]
    if simulated:
        raise SaalError(f"--replace: {name_some(simulated)} were labeled from the data's own masks, not imported; "
                        "only imported masks can be replaced")
    history = loop.file("labels", REPLACED_DIR)
    for i in changed:
        kept = history / f"{i}.{len(list(history.glob(f'{i}.*.png')))}.png"
        atomic_write_bytes(kept, loop.label_path(i).read_bytes())
        loop.save_label(i, masks[i])
        append_jsonl(history / "replaced.jsonl", [{"image_id": i, "round": active.round_of(i),
                                                   "kept_as": kept.name}])
    return changed
