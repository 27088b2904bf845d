"""The results table of an experiment: what ``results.csv`` holds and how it is read back.

One row per (cell, pretraining seed, seed, active-learning round) with the
test-set means of Dice, IoU, HD95 and ASSD. A *cell* is one configuration of the
matrix (cold start x initialisation x query); its name, e.g. ``saal-ssl-entropy``,
labels its learning curve. The full-supervision reference is the cell
:data:`FULL_SUPERVISION`. A *replicate* is one ``(ssl_seed, seed)`` pair: the
self-supervised pretraining run the cell used, and the seed of its selection and
training. Replicates pair across cells: the same pair means the same pretraining,
the same random draws and the same training seeds. Everything here works on plain
rows and numpy arrays (pandas is not a dependency).

Files written before 0.2 call the ``cell`` column ``strategy`` and have no
``ssl_seed`` (one pretraining run, read as ``ssl_seed`` 0); they are read the same way.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import SaalError
from ..io import read_csv

#: The cell name of the full-supervision rows (the whole pool labeled).
FULL_SUPERVISION = "full"
#: The columns of ``results.csv``, in order.
COLUMNS = ("cold_start", "init", "query", "train", "cell", "ssl_seed", "seed", "round", "n_labeled", "dice", "iou",
           "hd95", "assd", "train_seconds")
#: Columns every results table must have.
REQUIRED_COLUMNS = ("cold_start", "init", "query", "cell", "seed", "round", "n_labeled", "dice")
#: Numeric columns that may be missing or empty (read as NaN): HD95 is undefined for an empty prediction.
OPTIONAL_COLUMNS = ("iou", "hd95", "assd", "train_seconds")
#: The old name of the ``cell`` column (results written before 0.2).
LEGACY_CELL_COLUMN = "strategy"
#: Whether a larger value of a metric is better; decides the "worst seed" and the win counts.
HIGHER_IS_BETTER = {"dice": True, "iou": True, "hd95": False, "assd": False}
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD"}

#: One replicate of a cell: ``(ssl_seed, seed)``.
Replicate = tuple[int, int]


def replicate_label(replicate: Replicate) -> str:
    """``"3/7"``: pretraining seed 3, seed 7."""
    return f"{replicate[0]}/{replicate[1]}"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of ``results.csv``: one cell, one seed, one AL round."""

    cold_start: str
    init: str
    query: str
    cell: str
    seed: int
    round: int
    n_labeled: int
    dice: float
    iou: float = math.nan
    hd95: float = math.nan
    assd: float = math.nan
    train_seconds: float = math.nan
    ssl_seed: int = 0
    train: str = "supervised"  # the training mode (results written before it existed are supervised)

    @property
    def replicate(self) -> Replicate:
        return self.ssl_seed, self.seed


def check_metric(metric: str) -> None:
    if metric not in HIGHER_IS_BETTER:
        raise SaalError(f"metric {metric!r}: expected one of {', '.join(HIGHER_IS_BETTER)}")


@dataclass(frozen=True)
class Results:
    """A validated results table; ``source`` names it in messages."""

    rows: tuple[Row, ...]
    source: str = "results"

    @property
    def cells(self) -> list[str]:
        """The cells with learning curves (all but full supervision), in order of first appearance."""
        return list(dict.fromkeys(r.cell for r in self.rows if r.cell != FULL_SUPERVISION))

    @property
    def full_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.cell == FULL_SUPERVISION)

    @property
    def budgets(self) -> list[int]:
        """Every budget (n_labeled) any cell reached, ascending; full supervision excluded."""
        return sorted({r.n_labeled for r in self.rows if r.cell != FULL_SUPERVISION})

    def meta(self, cell: str) -> tuple[str, str, str, str]:
        """``(cold_start, init, query, train)`` of a cell: the fields of a :class:`~saal.experiments.matrix.Cell`."""
        for r in self.rows:
            if r.cell == cell:
                return r.cold_start, r.init, r.query, r.train
        raise SaalError(f"{self.source}: no cell {cell!r} (have: {', '.join(self.cells)})")

    @property
    def ssl_seeds(self) -> list[int]:
        """The pretraining seeds of the table, ascending."""
        return sorted({r.ssl_seed for r in self.rows})

    def curves(self, cell: str, metric: str = "dice") -> dict[Replicate, tuple[np.ndarray, np.ndarray]]:
        """Per replicate ``(ssl_seed, seed)``, ``(budgets, values)`` sorted by budget."""
        check_metric(metric)
        by_replicate: dict[Replicate, list[tuple[int, float]]] = {}
        for r in self.rows:
            if r.cell == cell:
                by_replicate.setdefault(r.replicate, []).append((r.n_labeled, getattr(r, metric)))
        out = {}
        for key in sorted(by_replicate):
            pts = sorted(by_replicate[key])
            out[key] = (np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts], dtype=float))
        return out


def load_results(path: str | os.PathLike) -> Results:
    """Read and validate a ``results.csv`` written by the experiment runner."""
    path = Path(path)
    if not path.is_file():
        raise SaalError(f"{path}: results file not found")
    try:
        records = read_csv(path)
    except (UnicodeDecodeError, csv.Error) as err:
        raise SaalError(f"{path}: not a readable CSV file ({err})") from None
    return results_from_rows(records, source=str(path), first_line=2)


def results_from_rows(records: Iterable[Mapping[str, Any]], *, source: str = "results",
                      first_line: int = 1) -> Results:
    """Validate dict rows (e.g. straight from the runner) into :class:`Results`.

    ``first_line`` is the line number of the first record in messages (2 for a CSV with a header).
    Raises :class:`SaalError` naming the line and column of the first bad value, a duplicated
    (cell, ssl_seed, seed, n_labeled), or a cell name used for two different configurations.
    """
    records = [_with_cell_column(r) for r in records]
    if not records:
        raise SaalError(f"{source}: no result rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in records[0]]
    if missing:
        raise SaalError(f"{source}: missing column(s) {', '.join(missing)} (required: {', '.join(REQUIRED_COLUMNS)})")
    rows = [_parse_row(rec, f"{source}, line {first_line + i}") for i, rec in enumerate(records)]
    seen: dict[tuple[str, int, int, int], int] = {}
    config: dict[str, tuple[str, str, str, str]] = {}
    for i, r in enumerate(rows):
        key = (r.cell, r.ssl_seed, r.seed, r.n_labeled)
        if key in seen:
            raise SaalError(f"{source}, line {first_line + i}: cell {r.cell!r}, ssl_seed {r.ssl_seed}, seed {r.seed}, "
                            f"n_labeled {r.n_labeled} already on line {seen[key]}")
        seen[key] = first_line + i
        meta = (r.cold_start, r.init, r.query, r.train)
        if config.setdefault(r.cell, meta) != meta:
            raise SaalError(f"{source}, line {first_line + i}: cell name {r.cell!r} is used for "
                            f"{'/'.join(config[r.cell])} and {'/'.join(meta)}; names must be unique")
    return Results(tuple(rows), source)


def _with_cell_column(record: Mapping[str, Any]) -> Mapping[str, Any]:
    if "cell" not in record and LEGACY_CELL_COLUMN in record:
        return {**record, "cell": record[LEGACY_CELL_COLUMN]}
    return record


def _parse_row(rec: Mapping[str, Any], where: str) -> Row:
    text = {c: str(rec[c]).strip() for c in ("cold_start", "init", "query", "cell")}
    if not text["cell"]:
        raise SaalError(f"{where}: empty cell name")
    text["train"] = str(rec.get("train") or "").strip() or "supervised"
    ints = {c: _as_int(rec[c], c, where) for c in ("seed", "round", "n_labeled")}
    raw_ssl = rec.get("ssl_seed")
    ints["ssl_seed"] = 0 if raw_ssl is None or str(raw_ssl).strip() == "" else _as_int(raw_ssl, "ssl_seed", where)
    if ints["n_labeled"] < 1:
        raise SaalError(f"{where}: column 'n_labeled' must be >= 1, got {ints['n_labeled']}")
    floats = {"dice": _as_float(rec["dice"], "dice", where)}
    for c in OPTIONAL_COLUMNS:
        raw = rec.get(c)
        floats[c] = math.nan if raw is None or str(raw).strip() == "" else _as_float(raw, c, where)
    for c in ("dice", "iou"):
        v = floats[c]
        if (c == "dice" and not math.isfinite(v)) or (math.isfinite(v) and not 0.0 <= v <= 1.0):
            raise SaalError(f"{where}: column {c!r} must be a fraction in [0, 1], got {rec[c]!r}")
    return Row(**text, **ints, **floats)


def _as_int(raw: Any, column: str, where: str) -> int:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SaalError(f"{where}: column {column!r} is not a number: {raw!r}") from None
    if not value.is_integer():
        raise SaalError(f"{where}: column {column!r} must be a whole number, got {raw!r}")
    return int(value)


def _as_float(raw: Any, column: str, where: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise SaalError(f"{where}: column {column!r} is not a number: {raw!r}") from None
