"""The contract every cold-start strategy shares, and the bookkeeping behind it.

A strategy answers one question: *given feature vectors of an unlabeled pool,
which ``budget`` images should be annotated?* Every strategy subclasses
:class:`ColdStartStrategy` and implements only :meth:`ColdStartStrategy._extend`
(pick ``n_new`` more items given the ones already chosen); the base class owns
everything that must be identical across strategies, so that they can be
compared fairly and chained safely:

* input checks (one-line :class:`~saal.errors.SelectionError` messages),
* the *total budget* semantics: ``budget`` is the number of items wanted after
  the call; ``already_selected`` items are kept first, in their order, and the
  new ones are appended (so a later, larger call extends an earlier one),
* the guarantees on the result: exactly ``budget`` distinct in-range indices.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from saal.errors import SelectionError


@dataclass(frozen=True, eq=False)
class Selection:
    """The ordered answer of a strategy.

    ``indices[i]`` is the pool row chosen at rank ``i + 1``; ``cluster[i]`` its
    cluster (``-1`` for strategies without clusters) and ``distance[i]`` the
    strategy's own distance for it (to its cluster centre for clustering
    strategies, to the nearest earlier-selected item for k-center; ``nan`` where
    meaningless). The first ``n_prior`` entries are the ``already_selected``
    items the call was given. ``pool_clusters``/``centres`` describe the
    clustering of the whole pool when the strategy made one; ``info`` holds
    strategy-specific figures (covering radius, delta, ...).
    """

    strategy: str
    indices: np.ndarray
    cluster: np.ndarray
    distance: np.ndarray
    n_prior: int = 0
    pool_clusters: np.ndarray | None = None
    centres: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def new_indices(self) -> np.ndarray:
        """The items this call added (after the ``already_selected`` prefix)."""
        return self.indices[self.n_prior:]


@dataclass
class Extension:
    """What a strategy's :meth:`~ColdStartStrategy._extend` returns.

    ``cluster``/``distance`` cover the prior items *and* the new ones, in the
    final order; ``None`` means "no clusters" / "no meaningful distance".
    """

    new: np.ndarray
    cluster: np.ndarray | None = None
    distance: np.ndarray | None = None
    pool_clusters: np.ndarray | None = None
    centres: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def check_features(features: Any) -> np.ndarray:
    """A finite, non-empty ``(N, D)`` float array (float32 kept, others -> float64)."""
    x = np.asarray(features)
    if x.ndim != 2:
        raise SelectionError(f"features must be a 2-D (images x dimensions) array, got shape {x.shape}")
    if x.shape[0] == 0:
        raise SelectionError("the pool is empty: there are no feature rows to select from")
    if x.shape[1] == 0:
        raise SelectionError("features have 0 dimensions")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise SelectionError(f"features must be real numbers, got dtype {x.dtype}")
    if x.dtype != np.float32:
        x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise SelectionError(
            f"features contain NaN or infinite values in {rows.size} row(s), first at row {rows[0]}"
        )
    return np.ascontiguousarray(x)


def check_budget(budget: Any, n: int) -> int:
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, np.integer)):
        raise SelectionError(f"budget must be a whole number, got {budget!r}")
    budget = int(budget)
    if budget < 0:
        raise SelectionError(f"budget must be >= 0, got {budget}")
    if budget > n:
        raise SelectionError(f"budget {budget} exceeds the pool size {n}")
    return budget


def check_indices(indices: Sequence[int] | np.ndarray | None, n: int, what: str) -> np.ndarray:
    """``indices`` as int64, each a distinct row of a pool of ``n`` (one-line SelectionError otherwise)."""
    idx = np.asarray(indices if indices is not None else [])
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise SelectionError(f"{what} must be a flat list of integer pool indices")
    idx = idx.astype(np.int64)
    out = (idx < 0) | (idx >= n)
    if out.any():
        raise SelectionError(f"{what} index {idx[out][0]} is outside the pool (0..{n - 1})")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise SelectionError(f"{what} lists index {uniq[counts > 1][0]} more than once")
    return idx


def check_prior(already_selected: Sequence[int] | np.ndarray, n: int, budget: int) -> np.ndarray:
    prior = check_indices(already_selected, n, "already_selected")
    if prior.size > budget:
        raise SelectionError(
            f"budget {budget} is smaller than the {prior.size} already-selected items (budget is the total wanted)"
        )
    return prior


class ColdStartStrategy(ABC):
    """Base class: validates, delegates the choice to :meth:`_extend`, checks the result.

    Subclasses set ``name`` and implement :meth:`_extend`; they must be
    deterministic for a given ``seed`` and must never return an item of
    ``prior`` or the same item twice (the base class verifies both).
    """

    name: ClassVar[str] = ""

    def select(self, features: Any, budget: int, already_selected: Sequence[int] | np.ndarray = (),
               seed: int = 0) -> Selection:
        """Choose items until ``budget`` are selected in total (see module docstring)."""
        x = check_features(features)
        n = x.shape[0]
        budget = check_budget(budget, n)
        prior = check_prior(already_selected, n, budget)
        if budget == 0:
            empty = np.zeros(0, dtype=np.int64)
            return Selection(self.name, empty, empty.copy(), np.zeros(0), 0)
        ext = self._extend(x, prior, budget - prior.size, int(seed))
        new = np.asarray(ext.new, dtype=np.int64).reshape(-1)
        indices = np.concatenate([prior, new])
        self._check_result(indices, prior.size, budget, n)
        cluster = np.full(budget, -1, np.int64) if ext.cluster is None else np.asarray(ext.cluster, np.int64)
        distance = np.full(budget, np.nan) if ext.distance is None else np.asarray(ext.distance, np.float64)
        if cluster.shape != (budget,) or distance.shape != (budget,):
            raise RuntimeError(f"strategy {self.name!r} returned cluster/distance of the wrong length")
        return Selection(self.name, indices, cluster, distance, int(prior.size),
                         ext.pool_clusters, ext.centres, dict(ext.info))

    def _check_result(self, indices: np.ndarray, n_prior: int, budget: int, n: int) -> None:
        # A violation here is a bug in the strategy, not a user error.
        if indices.size != budget:
            raise RuntimeError(f"strategy {self.name!r} returned {indices.size} items for budget {budget}")
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise RuntimeError(f"strategy {self.name!r} returned an index outside the pool")
        if np.unique(indices).size != indices.size:
            raise RuntimeError(f"strategy {self.name!r} returned a duplicate or an already-selected item")

    @abstractmethod
    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        """Pick ``n_new`` (>= 0) items not in ``prior`` from the finite features ``x``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"
