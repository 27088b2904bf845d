"""The units of work of an experiment: one cell at one seed, and what every one of them shares.

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
from .locks import LOCKS_DIR
from .matrix import FULL_CELL, Cell


@dataclass(frozen=True)
class Task:
    """One cell at one seed."""

    cell: Cell
    seed: int

    @property
    def label(self) -> str:
        return f"{self.cell.name} seed {self.seed}"

    def directory(self, out_dir: Path) -> Path:
        return task_dir(out_dir, self.cell, self.seed)

    def lock_path(self, out_dir: Path) -> Path:
        return out_dir / LOCKS_DIR / f"{self.cell.name}-seed{self.seed}.lock"


def plan_tasks(cells: Sequence[Cell], seeds: Sequence[int]) -> list[Task]:
    """Seed-major order, the full-supervision reference after each seed's cells.

    Seed-major means a partial run already holds complete comparisons (every cell at seed 0)
    rather than many seeds of the first cells only.
    """
    return [Task(cell, seed) for seed in seeds for cell in (*cells, FULL_CELL)]


@dataclass
class Shared:
    """What every cell reuses: the data split, the SSL weights and the pool features."""

    out_dir: Path
    preset: Preset
    pool: LesionData
    test: LesionData
    features: np.ndarray
    ssl_state: Mapping[str, Any]


def loop_config(task: Task, shared: Shared) -> LoopConfig:
    """The active-learning loop settings of one task (the full reference labels the whole pool at once)."""
    options: dict[str, Any] = dict(seed=task.seed, init=task.cell.init)
    if task.cell.is_full:
        options.update(budgets=(len(shared.pool),), cold_start="random", query="random")
    else:
        options.update(cold_start=task.cell.cold_start, query=task.cell.query)
    return LoopConfig.from_preset(shared.preset, in_channels=shared.pool.channels, **options)
