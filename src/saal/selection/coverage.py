"""How a selection covers the pool's sub-populations, when the pool's groups are known.

A cold-start selection is judged by the segmentation it leads to, but one cause
is visible before any training: a rare, hard sub-population (dark skin,
vascular lesions, ...) that gets *no* annotated image is one the model never
learns. On a pool whose groups are known (the embedded synthetic dataset tags
every image, :attr:`saal.data.dataset.LesionData.groups`), these functions count
what a selection took from each group and compare it with uniform random
sampling, whose chance of missing a group entirely is known exactly (the
hypergeometric distribution), so a strategy's figure can be read against
chance without simulating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.special import gammaln

from saal.errors import SelectionError
from saal.selection.base import check_indices

EXPECTED_UNIFORM = "uniform expectation"


def _encode_groups(groups: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Group names (most frequent first, ties by name), each image's group code, pool counts."""
    if groups is None or isinstance(groups, str):
        raise SelectionError("groups must list one group name per pool image (this pool has no group tags)")
    labels = np.asarray([str(g) for g in groups])
    if labels.size == 0:
        raise SelectionError("groups must be a non-empty list with one group name per pool image")
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.lexsort((names, -counts))  # most frequent first, then by name
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return [str(n) for n in names[order]], rank[inverse], counts[order]


def group_coverage(groups: Sequence[str], selected: Sequence[int] | np.ndarray) -> dict[str, dict]:
    """Per group: what the pool holds and what ``selected`` (pool row indices) took from it.

    Returns ``{group: {"pool": count, "pool_share": fraction, "selected": count,
    "selected_share": fraction, "hit": selected >= 1}}``, groups ordered by
    decreasing pool count (ties by name). Shares of an empty selection are 0.
    Indices out of range or listed twice are a :class:`SelectionError`.
    """
    names, codes, pool_counts = _encode_groups(groups)
    idx = check_indices(selected, codes.size, "selected")
    picked = np.bincount(codes[idx], minlength=len(names))
    n_sel = max(idx.size, 1)
    return {
        name: {
            "pool": int(pool_counts[g]),
            "pool_share": float(pool_counts[g] / codes.size),
            "selected": int(picked[g]),
            "selected_share": float(picked[g] / n_sel) if idx.size else 0.0,
            "hit": bool(picked[g] >= 1),
        }
        for g, name in enumerate(names)
    }


def hit_probability(pool_size: int, group_size: int | np.ndarray, budget: int | np.ndarray) -> np.ndarray:
    """P(at least one of ``group_size`` items among ``budget`` drawn uniformly without replacement).

    ``1 - C(N - K, b) / C(N, b)``, evaluated with log-gamma so that it is exact
    to float precision for any pool size (no overflowing binomials, no
    simulation); broadcasts over ``group_size`` and ``budget``.
    """
    n = int(pool_size)
    k = np.asarray(group_size, dtype=np.int64)
    b = np.asarray(budget, dtype=np.int64)
    if n < 1:
        raise SelectionError(f"pool size must be >= 1, got {pool_size}")
    if ((k < 0) | (k > n)).any():
        raise SelectionError(f"group size must be between 0 and the pool size {n}, got {k[(k < 0) | (k > n)][0]}")
    if ((b < 0) | (b > n)).any():
        raise SelectionError(f"budget must be between 0 and the pool size {n}, got {b[(b < 0) | (b > n)][0]}")
    k, b = np.broadcast_arrays(k, b)
    rest = n - k
    certain = b > rest  # fewer non-group items than draws: the group cannot be missed
    r, bb = np.where(certain, n, rest).astype(np.float64), b.astype(np.float64)  # placeholder keeps gammaln finite
    log_miss = gammaln(r + 1) - gammaln(r - bb + 1) - gammaln(n + 1.0) + gammaln(n - bb + 1)
    return np.where(certain, 1.0, 0.0 - np.expm1(log_miss))  # 0 - x: no "-0.0" for a group never hit


@dataclass(frozen=True)
class CoverageRow:
    """Coverage of one strategy at one budget, averaged over seeds.

    ``groups_hit``: mean number of groups with at least one selected image
    (``groups_hit_std``: its standard deviation over seeds); ``hit_rate[g]``:
    fraction of seeds whose selection holds at least one image of ``g``;
    ``selected_share[g]``: mean fraction of the selection drawn from ``g``. The
    row named :data:`EXPECTED_UNIFORM` holds the exact expectations of uniform
    random sampling instead (``n_seeds`` 0, std ``nan``, shares equal to the pool's).
    """

    strategy: str
    budget: int
    n_seeds: int
    groups_hit: float
    groups_hit_std: float
    hit_rate: dict[str, float]
    selected_share: dict[str, float]


@dataclass(frozen=True)
class CoverageTable:
    """``rows`` for every strategy and budget (plus the uniform expectation per budget) and the pool's make-up."""

    groups: list[str]  # most frequent first
    pool_count: dict[str, int]
    pool_share: dict[str, float]
    rare: list[str]  # groups whose pool share is below the threshold
    rows: list[CoverageRow]

    def row(self, strategy: str, budget: int) -> CoverageRow:
        for r in self.rows:
            if r.strategy == strategy and r.budget == budget:
                return r
        raise KeyError((strategy, budget))


def coverage_table(groups: Sequence[str], selections: Mapping[str, Mapping[int, Sequence[Sequence[int]]]],
                   rare_below: float = 0.10) -> CoverageTable:
    """Aggregate coverage over seeds: ``selections[strategy][budget]`` lists one index list per seed.

    Each index list must hold exactly ``budget`` distinct pool rows. A group is
    *rare* when its pool share is below ``rare_below``. For every budget a row
    :data:`EXPECTED_UNIFORM` gives what uniform sampling without replacement
    achieves on average (exact hypergeometric figures), the line a strategy has
    to beat.
    """
    if not 0.0 < float(rare_below) <= 1.0:
        raise SelectionError(f"rare_below must be a share in (0, 1], got {rare_below}")
    names, codes, pool_counts = _encode_groups(groups)
    n, n_groups = codes.size, len(names)
    rows: list[CoverageRow] = []
    budgets: set[int] = set()
    for strategy, by_budget in selections.items():
        for budget, seed_lists in by_budget.items():
            budget = int(budget)
            if not 0 <= budget <= n:
                raise SelectionError(f"{strategy}: budget {budget} is outside 0..{n} (the pool size)")
            if len(seed_lists) == 0:
                raise SelectionError(f"{strategy}: no selection given for budget {budget}")
            picked = np.empty((len(seed_lists), n_groups), dtype=np.int64)
            for s, sel in enumerate(seed_lists):
                idx = check_indices(sel, n, f"{strategy} budget {budget} seed #{s}")
                if idx.size != budget:
                    raise SelectionError(
                        f"{strategy}: selection #{s} for budget {budget} holds {idx.size} items, not {budget}"
                    )
                picked[s] = np.bincount(codes[idx], minlength=n_groups)
            hit = picked >= 1
            share = picked / max(budget, 1)
            rows.append(CoverageRow(
                strategy=str(strategy), budget=budget, n_seeds=len(seed_lists),
                groups_hit=float(hit.sum(1).mean()), groups_hit_std=float(hit.sum(1).std()),
                hit_rate=dict(zip(names, hit.mean(0).tolist())),
                selected_share=dict(zip(names, share.mean(0).tolist())),
            ))
            budgets.add(budget)
    pool_share = pool_counts / n
    for budget in sorted(budgets):
        p = hit_probability(n, pool_counts, budget)
        rows.append(CoverageRow(
            strategy=EXPECTED_UNIFORM, budget=budget, n_seeds=0, groups_hit=float(p.sum()), groups_hit_std=float("nan"),
            hit_rate=dict(zip(names, p.tolist())), selected_share=dict(zip(names, pool_share.tolist())),
        ))
    return CoverageTable(
        groups=names,
        pool_count=dict(zip(names, pool_counts.tolist())),
        pool_share=dict(zip(names, pool_share.tolist())),
        rare=[g for g, s in zip(names, pool_share) if s < rare_below],
        rows=rows,
    )


@dataclass(frozen=True)
class HitRate:
    """How often selections of one budget hold at least one member of a sub-population.

    ``rate``: the fraction of ``n_selections`` that do; ``chance``: the same probability for a
    uniform random draw of ``budget`` images (exact, hypergeometric); ``mean_count`` /
    ``expected_count``: members per selection, observed and under uniform sampling.
    """

    budget: int
    n_selections: int
    rate: float
    chance: float
    mean_count: float
    expected_count: float


def hit_rate(selections: Sequence[Sequence[int]], members: np.ndarray) -> HitRate:
    """:class:`HitRate` of ``selections`` (pool row lists of one size) for the pool rows where ``members`` is True.

    Example: how often a 10-image cold start contains a melanoma, against how often 10 random images would.
    """
    members = np.asarray(members, dtype=bool)
    n = members.size
    if not selections:
        raise SelectionError("hit_rate needs at least one selection")
    picked = [check_indices(sel, n, f"selection #{i}") for i, sel in enumerate(selections)]
    budgets = {p.size for p in picked}
    if len(budgets) != 1:
        raise SelectionError(f"every selection must have the same size, got sizes {sorted(budgets)}")
    budget = budgets.pop()
    counts = np.array([members[p].sum() for p in picked])
    k = int(members.sum())
    return HitRate(budget=budget, n_selections=len(picked), rate=float((counts > 0).mean()),
                   chance=float(hit_probability(n, k, budget)), mean_count=float(counts.mean()),
                   expected_count=budget * k / n)
