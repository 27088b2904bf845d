"""The units of work of an experiment: one cell at one replicate, and what every one of them shares.

A replicate is a pretraining seed and a seed (selection, queries and training).
Kept apart from the runner so that the report (which retrains one cell's first
round for its pictures) and the runner both read the same definitions without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..active.loop import LoopConfig
from ..config import Preset
from ..data.dataset import LesionData
from .collect import task_dir
from ..locks import LOCKS_DIR
from .matrix import FULL_CELL, Cell


@dataclass(frozen=True)
class Task:
    """One cell at one replicate: pretraining seed ``ssl_seed`` and seed ``seed``.

    ``own_pretraining`` marks the run directory's own pretraining (its seed is the run's
    seed): those tasks keep the folder names of a single-pretraining experiment.
    """

    cell: Cell
    seed: int
    ssl_seed: int = 0
    own_pretraining: bool = True

    @property
    def replicate_label(self) -> str:
        """``seed 3``, or ``seed 3, pretraining seed 1`` for another pretraining run."""
        return f"seed {self.seed}" + ("" if self.own_pretraining else f", pretraining seed {self.ssl_seed}")

    @property
    def label(self) -> str:
        return f"{self.cell.name} {self.replicate_label}"

    @property
    def key(self) -> str:
        """``seed<k>``, or ``ssl<s>-seed<k>`` for another pretraining: folder and lock names."""
        return f"seed{self.seed}" if self.own_pretraining else f"ssl{self.ssl_seed}-seed{self.seed}"

    def directory(self, out_dir: Path) -> Path:
        return task_dir(out_dir, self.cell, self.key)

    def lock_path(self, out_dir: Path) -> Path:
        return out_dir / LOCKS_DIR / f"{self.cell.name}-{self.key}.lock"


def plan_tasks(cells: Sequence[Cell], seeds: Sequence[int], ssl_seeds: Sequence[int] = (0,), *,
               run_seed: int | None = None, full_seeds: int | None = None) -> list[Task]:
    """Seed-major order, every pretraining within a seed, the full-supervision reference after each.

    Seed-major means a partial run already holds complete comparisons (every cell at seed 0, on every
    pretraining) rather than many seeds of the first cells only. ``run_seed`` is the run directory's
    pretraining seed (default: the first of ``ssl_seeds``); ``full_seeds`` limits the reference to the
    first that many seeds of each pretraining (default: all).
    """
    own = ssl_seeds[0] if run_seed is None else run_seed
    limit = len(seeds) if full_seeds is None else full_seeds
    return [Task(cell, seed, ssl_seed, ssl_seed == own)
            for i, seed in enumerate(seeds) for ssl_seed in ssl_seeds
            for cell in ((*cells, FULL_CELL) if i < limit else cells)]


@dataclass(frozen=True)
class Encoder:
    """One self-supervised pretraining run: its weights and the pool features of its encoder."""

    ssl_seed: int
    features: np.ndarray
    state: Mapping[str, Any]


@dataclass
class Shared:
    """What every cell reuses: the data split and, per pretraining seed, the SSL weights and pool features."""

    out_dir: Path
    preset: Preset
    pool: LesionData
    test: LesionData
    run_seed: int  # the run directory's seed: the pretraining kept in its own ssl/ and features/
    encoders: dict[int, Encoder]

    def task(self, cell: Cell, replicate: tuple[int, int]) -> Task:
        """The task of ``cell`` at replicate ``(ssl_seed, seed)``."""
        ssl_seed, seed = replicate
        return Task(cell, seed, ssl_seed, ssl_seed == self.run_seed)


def loop_config(task: Task, shared: Shared) -> LoopConfig:
    """The active-learning loop settings of one task (the full reference labels the whole pool at once)."""
    options: dict[str, Any] = dict(seed=task.seed, init=task.cell.init, train=task.cell.train)
    if task.cell.is_full:
        options.update(budgets=(len(shared.pool),), cold_start="random", query="random")
    else:
        options.update(cold_start=task.cell.cold_start, query=task.cell.query)
    return LoopConfig.from_preset(shared.preset, in_channels=shared.pool.channels, **options)
