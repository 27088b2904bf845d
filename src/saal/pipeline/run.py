"""``saal run``: the whole pipeline on data with masks, the masks standing in for the annotator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..active import run_simulated
from ..config import check_options
from ..errors import SaalError
from ..workspace import Workspace, run_lock
from .encoder import pool_features, ssl_state
from .report import write_run_report
from .rounds import ACTIVE_DIR, run_loop_config
from .select import run_plan, select_images


@dataclass
class RunResult:
    run_dir: Path
    rounds: list[dict[str, Any]]
    report: Path | None


def describe_run(ws: Workspace, *, cold_start: str | None = None, query: str | None = None,
                 init: str | None = None, train: str | None = None) -> str:
    """One line that says what a run will do: how many images the pool and test split hold, and the method.

    The pool is the user's whole folder minus the test split; printing its size first means nobody has to
    guess whether a preset capped it. Options left None are what the run will use: its selection plan's
    cold start when it has one, else the preset's.
    """
    p = ws.preset
    plan = run_plan(ws)
    test = len(ws.test) if ws.test is not None else 0
    cold_start = cold_start or (plan.cold_start if plan else p.cold_start)
    return (f"pool: {len(ws.pool)} images to choose from, test: {test} ({p.name} preset, {p.image_size} px; "
            f"{p.ssl_objective} pretraining, {cold_start} cold start, {init or p.init} init, "
            f"{query or p.query} queries, {train or p.seg_train} training)")


def run_all(ws: Workspace, *, cold_start: str | None = None, query: str | None = None, init: str | None = None,
            train: str | None = None, reduction: str | None = None, finetune: str = "restart",
            progress: bool = True) -> RunResult:
    """Pretrain -> select -> train -> active-learning rounds -> evaluate -> report, on the data's masks.

    The budgets, and the cold start, query, init, uncertainty reduction and training mode left None, are the
    preset's (the cold start: the run's selection plan's when it has one); the cold start is written to
    ``selection.csv`` first and the loop reads it, as a human team would.
    """
    check_options(cold_start=cold_start, query=query, init=init, seg_train=train, query_reduction=reduction,
                  finetune=finetune)
    if not ws.labeled_data or ws.test is None:
        raise SaalError("'saal run' simulates the annotator with the data's masks, but this data has none; "
                        "use 'saal select' and then 'saal query' / 'saal annotate import' / 'saal train'")
    budgets = tuple(b for b in ws.preset.budgets if b <= len(ws.pool))
    if not budgets:
        raise SaalError(f"the pool of {len(ws.pool)} images is smaller than the first budget {ws.preset.budgets[0]}")
    with run_lock(ws.run_dir):
        selected = select_images(ws, budgets[0], cold_start=cold_start, progress=progress)
        config = run_loop_config(ws, budgets=budgets, query=query, init=init, finetune=finetune, train=train,
                                 reduction=reduction)
        features = pool_features(ws, run_plan(ws).weights, progress=progress)
        rounds = run_simulated(ws.path(ACTIVE_DIR), ws.pool, ws.test, config=config, features=features,
                               ssl_state=ssl_state(ws, config.init, progress=progress), plan=selected.ids,
                               progress=progress)
        report = write_run_report(ws, config)
    return RunResult(ws.run_dir, rounds, report)
