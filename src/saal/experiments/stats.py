"""Statistics of an experiment's results: the numbers behind a claim like
"a self-supervised cold start beats random selection at 10 labels".

Choices, stated once:

* Statistics run over *replicates*, ``(ssl_seed, seed)`` pairs (see :mod:`.results`): with one pretraining run
  these are the seeds. ``std`` is the sample standard deviation (``ddof=1``); it is NaN for a single replicate.
* The area under the learning curve (ALC) is the trapezoidal area of Dice over **log2(n_labeled)**.
  Budgets double from round to round (10, 20, 40, 80), so on a linear axis the largest budget would
  dominate the area and the cold-start regime, which is what this project is about, would hardly count.
* The full-supervision reference is the mean Dice of the ``full`` rows over their seeds; as a curve
  it is a constant, so its area is that Dice times the span of the budget axis.
* ALC is normalised per seed, paired with the same seed of the reference cell, over the budgets
  both curves share: ``(ALC - ALC_ref) / (ALC_full - ALC_ref)``; 0 means "as good as the reference",
  1 "as good as full supervision at every budget". A seed the reference lacks is compared with the
  reference's mean curve instead.
* Paired tests pair replicates at the same budget. Wilcoxon signed-rank drops zero differences; with fewer
  than 6 non-zero pairs its exact two-sided p-value cannot go below 0.05 (minimum ``2 / 2**n``), which
  the note of the test says, rather than hiding the p-value. p-values are per budget and not corrected
  for multiple comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import SaalError
from .results import HIGHER_IS_BETTER, Replicate, Results, check_metric

#: Differences smaller than this are ties (two runs that share a cold start give bit-identical round 0s).
ZERO = 1e-12


@dataclass(frozen=True)
class BudgetStat:
    """One cell at one budget, over seeds."""

    cell: str
    n_labeled: int
    metric: str
    mean: float
    std: float
    n: int
    min: float
    max: float
    worst: float
    worst_replicate: Replicate


@dataclass(frozen=True)
class FullStat:
    """Full supervision (every pool image labeled), over seeds."""

    metric: str
    mean: float
    std: float
    n: int
    n_labeled: int


@dataclass(frozen=True)
class AlcStat:
    """Normalised area under the learning curve of one cell; ``per_seed`` maps replicate -> value."""

    cell: str
    per_seed: dict[Replicate, float]
    mean: float
    std: float
    n_paired: int
    mean_score: float
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.per_seed)


@dataclass(frozen=True)
class BudgetToTarget:
    """The smallest budget whose mean score reaches ``target`` (None: not reached)."""

    cell: str
    target: float
    budget: float | None
    best_mean: float
    best_budget: int
    note: str = ""


@dataclass(frozen=True)
class PairedTest:
    """Cell minus reference at one budget, paired by seed."""

    cell: str
    reference: str
    n_labeled: int
    metric: str
    n_pairs: int
    mean_diff: float
    std_diff: float
    wins: int
    p_wilcoxon: float
    p_ttest: float
    note: str = ""


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def budget_stats(results: Results, metric: str = "dice") -> list[BudgetStat]:
    """Mean, std, min, max and worst seed per cell and budget (cells in results order)."""
    check_metric(metric)
    out = []
    for cell in results.cells:
        by_budget: dict[int, list[tuple[Replicate, float]]] = {}
        for key, (budgets, values) in results.curves(cell, metric).items():
            for b, v in zip(budgets.tolist(), values.tolist()):
                by_budget.setdefault(b, []).append((key, v))
        for b in sorted(by_budget):
            keys = [k for k, _ in by_budget[b]]
            vals = np.array([v for _, v in by_budget[b]])
            mean, std = _mean_std(vals)
            worst = int(np.argmin(vals) if HIGHER_IS_BETTER[metric] else np.argmax(vals))
            out.append(BudgetStat(cell, b, metric, mean, std, vals.size, float(vals.min()), float(vals.max()),
                                  float(vals[worst]), keys[worst]))
    return out


def full_supervision(results: Results, metric: str = "dice") -> FullStat | None:
    """The full-supervision score over its seeds, or None when the table has no ``full`` rows."""
    check_metric(metric)
    rows = results.full_rows
    if not rows:
        return None
    mean, std = _mean_std(np.array([getattr(r, metric) for r in rows]))
    return FullStat(metric, mean, std, len(rows), max(r.n_labeled for r in rows))


def default_reference(results: Results) -> str | None:
    """The baseline everything is compared with: random cold start, preferring SSL init and random query.

    Preference order: cold_start "random" with init "ssl", then with init "scratch", then any random
    cold start; within those, query "random", then "none", then the first in the table; supervised
    training before semi-supervised. None when no cell has a random cold start.
    """
    candidates = [s for s in results.cells if results.meta(s)[0] == "random"]
    if not candidates:
        return None

    def rank(s: str) -> tuple[int, int, int]:
        _, init, query, train = results.meta(s)
        return ({"ssl": 0, "scratch": 1}.get(init, 2), {"random": 0, "none": 1}.get(query, 2),
                train != "supervised")

    return min(candidates, key=rank)  # min is stable: ties keep table order


def curve_area(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area of ``values`` over log2(budgets) (0 for a single point)."""
    x = np.log2(np.asarray(budgets, dtype=float))
    y = np.asarray(values, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))  # np.trapezoid needs numpy >= 2


def _mean_curve(curves: Mapping[Replicate, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean over seeds at each budget (each budget averages the seeds that reached it)."""
    budgets = np.unique(np.concatenate([b for b, _ in curves.values()]))
    sums = np.zeros(budgets.size)
    counts = np.zeros(budgets.size)
    for b, v in curves.values():
        idx = np.searchsorted(budgets, b)
        np.add.at(sums, idx, v)
        np.add.at(counts, idx, 1)
    return budgets, sums / counts


def normalised_alc(results: Results, reference: str, metric: str = "dice") -> list[AlcStat]:
    """Normalised ALC per cell and seed (see the module docstring), then mean and std over seeds.

    ``mean_score`` is the cell's own area divided by its span, i.e. its average score over the
    log2 budget axis: a readable companion of the normalised value.
    """
    if not HIGHER_IS_BETTER.get(metric, False):
        raise SaalError(f"metric {metric!r}: the normalised ALC needs a score where higher is better (dice, iou)")
    results.meta(reference)  # raises for an unknown reference
    full = full_supervision(results, metric)
    ref_curves = results.curves(reference, metric)
    ref_mean = _mean_curve(ref_curves)
    out = []
    for cell in results.cells:
        per_seed: dict[Replicate, float] = {}
        own_scores = []
        n_paired = 0
        notes = set()
        for seed, (b, v) in results.curves(cell, metric).items():
            if b.size > 1:
                own_scores.append(curve_area(b, v) / (np.log2(b[-1]) - np.log2(b[0])))
            rb, rv = ref_curves.get(seed, ref_mean)
            common = np.intersect1d(b, rb)
            if common.size < 2:
                notes.add("fewer than 2 budgets shared with the reference")
                continue
            if full is None:
                notes.add("no full-supervision rows")
                continue
            a_s = curve_area(common, v[np.searchsorted(b, common)])
            a_r = curve_area(common, rv[np.searchsorted(rb, common)])
            a_full = full.mean * (np.log2(common[-1]) - np.log2(common[0]))
            if a_full - a_r <= ZERO:
                notes.add("reference reaches full supervision: no room to normalise")
                continue
            per_seed[seed] = (a_s - a_r) / (a_full - a_r)
            if seed in ref_curves:
                n_paired += 1
        values = np.array(list(per_seed.values()))
        mean, std = _mean_std(values) if values.size else (math.nan, math.nan)
        own = float(np.mean(own_scores)) if own_scores else math.nan
        out.append(AlcStat(cell, per_seed, mean, std, n_paired, own, "; ".join(sorted(notes))))
    return out


def budget_to_fraction_of_full(results: Results, fraction: float = 0.95, metric: str = "dice",
                               interpolate: bool = False) -> list[BudgetToTarget]:
    """Per cell, the first budget whose mean score reaches ``fraction`` x full supervision.

    With ``interpolate`` the crossing is located linearly on the log2 budget axis (the axis of the
    plots and of the ALC) between the last budget below the target and the first one at or above it.
    """
    if not HIGHER_IS_BETTER.get(metric, False):
        raise SaalError(f"metric {metric!r}: budget-to-target needs a score where higher is better (dice, iou)")
    if not 0.0 < fraction <= 1.0:
        raise SaalError(f"fraction {fraction}: must be in (0, 1]")
    full = full_supervision(results, metric)
    out = []
    for cell in results.cells:
        budgets, means = _mean_curve(results.curves(cell, metric))
        best = int(np.argmax(means))
        if full is None:
            out.append(BudgetToTarget(cell, math.nan, None, float(means[best]), int(budgets[best]),
                                      "no full-supervision rows"))
            continue
        target = fraction * full.mean
        reached = np.flatnonzero(means >= target)
        budget: float | None = None
        if reached.size:
            i = int(reached[0])
            budget = float(budgets[i])
            if interpolate and i > 0:
                x0, x1 = np.log2(budgets[i - 1]), np.log2(budgets[i])
                t = (target - means[i - 1]) / (means[i] - means[i - 1])
                budget = float(2.0 ** (x0 + t * (x1 - x0)))
        out.append(BudgetToTarget(cell, target, budget, float(means[best]), int(budgets[best])))
    return out


def _paired_p_values(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, str]:
    """Wilcoxon and paired-t p-values, NaN with a reason where a test is undefined."""
    from scipy.stats import ttest_rel, wilcoxon  # scipy.stats is slow to import; only summaries need it

    diff = ours - ref
    diff = np.where(np.abs(diff) < ZERO, 0.0, diff)
    if diff.size < 2:
        return math.nan, math.nan, "fewer than 2 paired seeds"
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        return math.nan, math.nan, "identical in every seed"
    notes = []
    p_w = float(wilcoxon(diff).pvalue)
    if nonzero < 6:
        notes.append(f"{nonzero} non-zero pairs: Wilcoxon p >= {2 / 2 ** nonzero:.3g}")
    if np.ptp(diff) < ZERO:
        p_t = math.nan
        notes.append("constant difference: t-test undefined")
    else:
        p_t = float(ttest_rel(ours, ref).pvalue)
    return p_w, p_t, "; ".join(notes)


def paired_tests(results: Results, reference: str, metric: str = "dice") -> list[PairedTest]:
    """Each cell against ``reference`` at every budget both reached, pairing replicates.

    ``mean_diff`` is cell minus reference in the metric's units; ``wins`` counts replicates where the
    cell is better (higher Dice/IoU, lower HD95/ASSD).
    """
    check_metric(metric)
    results.meta(reference)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    ref = {seed: dict(zip(b.tolist(), v.tolist())) for seed, (b, v) in results.curves(reference, metric).items()}
    out = []
    for cell in results.cells:
        if cell == reference:
            continue
        ours = {seed: dict(zip(b.tolist(), v.tolist())) for seed, (b, v) in results.curves(cell, metric).items()}
        budgets = sorted({b for seed in ours.keys() & ref.keys() for b in ours[seed].keys() & ref[seed].keys()})
        for b in budgets:
            seeds = sorted(s for s in ours.keys() & ref.keys() if b in ours[s] and b in ref[s])
            a = np.array([ours[s][b] for s in seeds])
            r = np.array([ref[s][b] for s in seeds])
            diff = a - r
            mean, std = _mean_std(diff)
            wins = int(np.count_nonzero(sign * diff > ZERO))
            p_w, p_t, note = _paired_p_values(a, r)
            out.append(PairedTest(cell, reference, b, metric, len(seeds), mean, std, wins, p_w, p_t, note))
    return out


@dataclass(frozen=True)
class SpreadStat:
    """Where one cell's spread at one budget comes from: the pretraining run, or the seed under it.

    ``between`` is the standard deviation of the per-pretraining means (how much the pretraining run
    alone moves the result), ``within`` the root mean within-pretraining variance over seeds (how
    much the selection and training draws move it for a fixed pretraining); ``total`` is the plain
    std over every replicate.
    """

    cell: str
    n_labeled: int
    metric: str
    n_pretraining: int
    n_seeds: int
    total: float
    between: float
    within: float


def spread_by_source(results: Results, metric: str = "dice") -> list[SpreadStat]:
    """:class:`SpreadStat` per cell and budget, for tables with more than one pretraining seed."""
    check_metric(metric)
    out = []
    for cell in results.cells:
        by_budget: dict[int, dict[int, list[float]]] = {}
        for (ssl_seed, _), (budgets, values) in results.curves(cell, metric).items():
            for b, v in zip(budgets.tolist(), values.tolist()):
                by_budget.setdefault(b, {}).setdefault(ssl_seed, []).append(v)
        for b in sorted(by_budget):
            groups = [np.asarray(g) for g in by_budget[b].values()]
            if len(groups) < 2:
                continue
            means = np.array([g.mean() for g in groups])
            within = [g.var(ddof=1) for g in groups if g.size > 1]
            out.append(SpreadStat(cell, b, metric, len(groups), int(sum(g.size for g in groups)),
                                  float(np.concatenate(groups).std(ddof=1)), float(means.std(ddof=1)),
                                  float(np.sqrt(np.mean(within))) if within else math.nan))
    return out
