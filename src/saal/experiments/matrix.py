"""The experiment matrix: which (cold start, initialisation, query) configurations to compare.

The default reproduces the paper's comparison, random vs SAAL (cluster) cold start, each with and
without the self-supervised initialisation, and adds TypiClust and k-center, stronger label-free
cold starts from the literature, with SSL initialisation only (the initialisation question is
answered by the first four). Every configuration then runs the preset's query in the
active-learning rounds. A full-supervision reference (the whole pool labeled, SSL initialisation)
runs once per seed beside the matrix.

A :class:`Cell` is one configuration; its :attr:`Cell.name` (``saal-ssl-entropy``) names its folder
under ``cells/`` and its curve in ``results.csv``, so it must stay stable across releases: a rerun
finds its finished work by that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ..config import COLD_STARTS, INITS, QUERIES, TRAIN_MODES, Preset
from ..errors import SaalError
from .results import FULL_SUPERVISION

#: Cold starts of the default matrix, in report order (the preset's own cold start is added when missing).
DEFAULT_COLD_STARTS = ("random", "saal", "typiclust", "kcenter")


@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix; seeds repeat it."""

    cold_start: str
    init: str
    query: str
    train: str = "supervised"

    @property
    def name(self) -> str:
        """Folder and curve label: ``<cold_start>-<init>-<query>``, ``...-semi`` when semi-supervised, or ``full``.

        Supervised cells keep the names they had before training modes existed, so old runs still resume.
        """
        if self.is_full:
            return FULL_SUPERVISION
        return f"{self.cold_start}-{self.init}-{self.query}" + ("" if self.train == "supervised" else f"-{self.train}")

    @property
    def is_full(self) -> bool:
        return self.cold_start == FULL_SUPERVISION


#: The full-supervision reference: every pool image labeled, SSL initialisation, no queries.
FULL_CELL = Cell(FULL_SUPERVISION, "ssl", "none")


def _parse_names(values: str | Iterable[str] | None, option: str) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (None stays None); empties and repeats are errors."""
    if values is None:
        return None
    items = values.split(",") if isinstance(values, str) else list(values)
    names = [str(v).strip() for v in items]
    if not names or any(not n for n in names):
        raise SaalError(f"{option}: expected a comma-separated list of names, got {values!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SaalError(f"{option}: {repeated[0]!r} is listed twice")
    return names


def _check_known(names: Sequence[str], known: Iterable[str], option: str, what: str) -> None:
    known = list(known)
    for name in names:
        if name not in known:
            raise SaalError(f"{option}: unknown {what} {name!r}; choose from {', '.join(known)}")


def build_matrix(preset: Preset, *, cold_starts: str | Iterable[str] | None = None,
                 inits: str | Iterable[str] | None = None,
                 queries: str | Iterable[str] | None = None,
                 trains: str | Iterable[str] | None = None) -> list[Cell]:
    """The cells to run (without the full-supervision reference), in report order.

    ``cold_starts`` chooses the cold starts (default :data:`DEFAULT_COLD_STARTS` and the preset's
    cold start), ``inits`` the initialisations of every cold start (default: both for random, SAAL
    and the preset's cold start, the paper's 2 x 2; SSL only for the others), ``queries`` the
    active-learning queries (default: the preset's), ``trains`` the training modes every one of
    them runs with (default: the preset's; ``supervised,semi`` compares both). Each accepts a
    list or a comma-separated string; names are checked against the registries of
    :mod:`saal.selection` and :mod:`saal.active.queries`.
    """
    cold_starts = _parse_names(cold_starts, "--cold-starts") or list(dict.fromkeys(
        [*DEFAULT_COLD_STARTS, preset.cold_start]))
    if FULL_SUPERVISION in cold_starts:
        raise SaalError(f"--cold-starts: {FULL_SUPERVISION!r} is not a cold start; the full-supervision "
                        "reference is always part of the matrix")
    _check_known(cold_starts, COLD_STARTS, "--cold-starts", "cold start")
    chosen_inits = _parse_names(inits, "--inits")
    if chosen_inits is not None:
        _check_known(chosen_inits, INITS, "--inits", "initialisation")
    chosen_queries = _parse_names(queries, "--queries") or [preset.query]
    _check_known(chosen_queries, QUERIES, "--queries", "query")
    chosen_trains = _parse_names(trains, "--train") or [preset.seg_train]
    _check_known(chosen_trains, TRAIN_MODES, "--train", "training mode")
    cells = []
    for cold_start in cold_starts:
        both = cold_start in ("random", "saal", preset.cold_start)
        cell_inits = chosen_inits or (list(INITS) if both else ["ssl"])
        cells += [Cell(cold_start, init, query, train) for init in cell_inits for query in chosen_queries
                  for train in chosen_trains]
    return cells


def resolve_seeds(seeds: int | Iterable[int] | None, preset: Preset) -> list[int]:
    """``None`` -> the preset's seed count; ``N`` -> ``0 .. N-1``; a list -> those seeds."""
    if seeds is None:
        seeds = preset.seeds
    if isinstance(seeds, int):
        if seeds < 1:
            raise SaalError(f"--seeds: need at least 1 seed, got {seeds}")
        return list(range(seeds))
    chosen = [int(s) for s in seeds]
    if not chosen or any(s < 0 for s in chosen) or len(set(chosen)) != len(chosen):
        raise SaalError(f"--seeds: expected distinct seeds >= 0, got {chosen}")
    return chosen
