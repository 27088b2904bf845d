"""Gather every finished cell of an experiment directory into ``results.csv``.

A cell (one configuration, one seed) is finished when its folder holds ``done.json``: the runner
writes it, atomically, only after the active-learning loop returned every round, so its presence
is the one test of "never recompute this". The file repeats the loop's round records and the
settings they were made with, so collecting needs nothing else from the cell folder.

Collection takes every finished cell under ``cells/``, not only those the current command asked
for: separate invocations (``--cold-starts random`` on one machine, ``--cold-starts saal`` on
another) then add up to one table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..io import read_json, write_csv, write_json
from .matrix import Cell
from .results import COLUMNS, FULL_SUPERVISION

CELLS_DIR = "cells"
DONE_FILE = "done.json"
RESULTS_FILE = "results.csv"


def task_dir(out_dir: str | os.PathLike, cell: Cell, key: str) -> Path:
    """The loop folder of one cell at one replicate: ``cells/<cell>/<key>`` (``seed<k>`` or ``ssl<s>-seed<k>``)."""
    return Path(out_dir) / CELLS_DIR / cell.name / key


@dataclass(frozen=True)
class FinishedCell:
    """The content of one ``done.json`` (``ssl_seed`` None: written before pretraining seeds were recorded)."""

    cell: Cell
    seed: int
    config: dict[str, Any]
    records: list[dict[str, Any]]
    ssl_seed: int | None = None


def read_done(directory: str | os.PathLike) -> FinishedCell | None:
    """The finished cell in ``directory``; None when it is not finished (or its marker is damaged)."""
    path = Path(directory) / DONE_FILE
    try:
        done = read_json(path)
        cell = Cell(**done["cell"])
        records = list(done["records"])
        if not records or any("round" not in r or "n_labeled" not in r for r in records):
            return None
        ssl_seed = done.get("ssl_seed")
        return FinishedCell(cell, int(done["seed"]), dict(done["config"]), records,
                            None if ssl_seed is None else int(ssl_seed))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _number(value: Any) -> Any:
    """A CSV cell for a metric: empty for missing or non-finite (HD95 of an empty prediction)."""
    if value is None:
        return ""
    value = float(value)
    return value if math.isfinite(value) else ""


def result_rows(finished: FinishedCell, run_seed: int = 0) -> list[dict[str, Any]]:
    """The ``results.csv`` rows of one finished cell: one per round, labelled by the cell.

    A cell finished before pretraining seeds were recorded used the run's own pretraining (``run_seed``).
    """
    cell = finished.cell
    ssl_seed = run_seed if finished.ssl_seed is None else finished.ssl_seed
    rows = []
    for record in sorted(finished.records, key=lambda r: r["round"]):
        rows.append({
            "cold_start": cell.cold_start, "init": cell.init, "query": cell.query, "train": cell.train,
            "cell": cell.name,
            "ssl_seed": ssl_seed, "seed": finished.seed, "round": int(record["round"]),
            "n_labeled": int(record["n_labeled"]),
            **{m: _number(record.get(m)) for m in ("dice", "iou", "hd95", "assd", "train_seconds")},
        })
    return rows


def finished_cells(out_dir: str | os.PathLike) -> list[FinishedCell]:
    """Every finished cell under ``out_dir/cells``, in folder order."""
    root = Path(out_dir) / CELLS_DIR
    if not root.is_dir():
        return []
    found = []
    for directory in sorted(p for p in root.glob("*/*seed*") if p.is_dir()):
        finished = read_done(directory)
        if finished is not None:
            found.append(finished)
    return found


def collect_results(out_dir: str | os.PathLike, order: Sequence[Cell] = (),
                    run_seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """Write ``out_dir/results.csv`` from every finished cell; returns its path and rows.

    Rows come in ``order`` of cells first (the matrix as requested), then any other finished
    cells by name, full supervision last; within a cell by pretraining seed, seed and round.
    ``run_seed`` is the run directory's own pretraining seed (see :func:`result_rows`).
    """
    rank = {c.name: i for i, c in enumerate(order)}

    def key(f: FinishedCell) -> tuple:
        ssl_seed = run_seed if f.ssl_seed is None else f.ssl_seed
        return (f.cell.name == FULL_SUPERVISION, rank.get(f.cell.name, len(rank)), f.cell.name, ssl_seed, f.seed)

    rows = [row for finished in sorted(finished_cells(out_dir), key=key)
            for row in result_rows(finished, run_seed)]
    path = write_csv(Path(out_dir) / RESULTS_FILE, rows, COLUMNS)
    return path, rows


def write_done(directory: str | os.PathLike, cell: Cell, seed: int, ssl_seed: int, config: dict[str, Any],
               records: list[dict[str, Any]]) -> Path:
    """Mark a cell finished (atomically), with its replicate, settings and round records."""
    return write_json(Path(directory) / DONE_FILE, {"cell": {"cold_start": cell.cold_start, "init": cell.init,
                                                             "query": cell.query, "train": cell.train},
                                                    "seed": seed, "ssl_seed": ssl_seed,
                                                    "config": json.loads(json.dumps(config)), "records": records})
