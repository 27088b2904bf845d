"""Summary statistics of an experiment matrix: the numbers behind a claim like
"self-supervised cold start beats random selection at 10 labels".

Input is the matrix runner's ``results.csv``: one row per (strategy, seed, AL round) with the test-set
means of Dice, IoU, HD95 and ASSD. Everything here works on plain rows and numpy arrays (pandas is not
a dependency of saal).

Choices, stated once:

* ``std`` is the sample standard deviation (``ddof=1``); it is NaN for a cell with a single seed.
* The area under the learning curve (ALC) is the trapezoidal area of Dice over **log2(n_labeled)**.
  Budgets double from round to round (10, 20, 40, 80), so on a linear axis the largest budget would
  dominate the area and the cold-start regime, which is what this project is about, would hardly count.
* The full-supervision reference is the mean Dice of the ``full`` rows over their seeds; as a curve
  it is a constant, so its area is that Dice times the span of the budget axis.
* ALC is normalised per seed, paired with the same seed of the reference strategy, over the budgets
  both curves share: ``(ALC - ALC_ref) / (ALC_full - ALC_ref)``; 0 means "as good as the reference",
  1 "as good as full supervision at every budget". A seed the reference lacks is compared with the
  reference's mean curve instead.
* Paired tests pair seeds at the same budget. Wilcoxon signed-rank drops zero differences; with fewer
  than 6 non-zero pairs its exact two-sided p-value cannot go below 0.05 (minimum ``2 / 2**n``), which
  the note of the test says, rather than hiding the p-value. p-values are per budget and not corrected
  for multiple comparisons.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import SaalError
from ..io import atomic_write_text, read_csv

#: The strategy label of the full-supervision rows.
FULL_STRATEGY = "full"
#: Columns every results table must have.
REQUIRED_COLUMNS = ("cold_start", "init", "query", "strategy", "seed", "round", "n_labeled", "dice")
#: Numeric columns that may be missing or empty (read as NaN): HD95 is undefined for an empty prediction.
OPTIONAL_COLUMNS = ("iou", "hd95", "assd", "train_seconds")
#: Whether a larger value of a metric is better; decides the "worst seed" and the win counts.
HIGHER_IS_BETTER = {"dice": True, "iou": True, "hd95": False, "assd": False}
#: Differences smaller than this are ties (two runs that share a cold start give bit-identical round 0s).
_ZERO = 1e-12


@dataclass(frozen=True, slots=True)
class Row:
    """One line of ``results.csv``: one strategy, one seed, one AL round."""

    cold_start: str
    init: str
    query: str
    strategy: str
    seed: int
    round: int
    n_labeled: int
    dice: float
    iou: float = math.nan
    hd95: float = math.nan
    assd: float = math.nan
    train_seconds: float = math.nan


@dataclass(frozen=True)
class Results:
    """A validated results table; ``source`` names it in messages."""

    rows: tuple[Row, ...]
    source: str = "results"

    @property
    def strategies(self) -> list[str]:
        """The strategies with learning curves (all but ``full``), in order of first appearance."""
        return list(dict.fromkeys(r.strategy for r in self.rows if r.strategy != FULL_STRATEGY))

    @property
    def full_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.strategy == FULL_STRATEGY)

    @property
    def budgets(self) -> list[int]:
        """Every budget (n_labeled) any strategy reached, ascending; full supervision excluded."""
        return sorted({r.n_labeled for r in self.rows if r.strategy != FULL_STRATEGY})

    def meta(self, strategy: str) -> tuple[str, str, str]:
        """``(cold_start, init, query)`` of a strategy."""
        for r in self.rows:
            if r.strategy == strategy:
                return r.cold_start, r.init, r.query
        raise SaalError(f"{self.source}: no strategy {strategy!r} (have: {', '.join(self.strategies)})")

    def curves(self, strategy: str, metric: str = "dice") -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per seed, ``(budgets, values)`` sorted by budget."""
        _check_metric(metric)
        by_seed: dict[int, list[tuple[int, float]]] = {}
        for r in self.rows:
            if r.strategy == strategy:
                by_seed.setdefault(r.seed, []).append((r.n_labeled, getattr(r, metric)))
        out = {}
        for seed in sorted(by_seed):
            pts = sorted(by_seed[seed])
            out[seed] = (np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts], dtype=float))
        return out


def _check_metric(metric: str) -> None:
    if metric not in HIGHER_IS_BETTER:
        raise SaalError(f"metric {metric!r}: expected one of {', '.join(HIGHER_IS_BETTER)}")


# ----------------------------------------------------------------------------------------------- loading
def load_results(path: str | os.PathLike) -> Results:
    """Read and validate a ``results.csv`` written by the matrix runner."""
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
    (strategy, seed, n_labeled), or a strategy label used for two different configurations.
    """
    records = list(records)
    if not records:
        raise SaalError(f"{source}: no result rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in records[0]]
    if missing:
        raise SaalError(f"{source}: missing column(s) {', '.join(missing)} (required: {', '.join(REQUIRED_COLUMNS)})")
    rows = [_parse_row(rec, f"{source}, line {first_line + i}") for i, rec in enumerate(records)]
    seen: dict[tuple[str, int, int], int] = {}
    config: dict[str, tuple[str, str, str]] = {}
    for i, r in enumerate(rows):
        key = (r.strategy, r.seed, r.n_labeled)
        if key in seen:
            raise SaalError(f"{source}, line {first_line + i}: strategy {r.strategy!r}, seed {r.seed}, n_labeled "
                            f"{r.n_labeled} already on line {seen[key]}")
        seen[key] = first_line + i
        meta = (r.cold_start, r.init, r.query)
        if config.setdefault(r.strategy, meta) != meta:
            raise SaalError(f"{source}, line {first_line + i}: strategy label {r.strategy!r} is used for "
                            f"{'/'.join(config[r.strategy])} and {'/'.join(meta)}; labels must be unique")
    return Results(tuple(rows), source)


def _parse_row(rec: Mapping[str, Any], where: str) -> Row:
    text = {c: str(rec[c]).strip() for c in ("cold_start", "init", "query", "strategy")}
    if not text["strategy"]:
        raise SaalError(f"{where}: empty strategy label")
    ints = {c: _as_int(rec[c], c, where) for c in ("seed", "round", "n_labeled")}
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


# ------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class BudgetStat:
    """One strategy at one budget, over seeds."""

    strategy: str
    n_labeled: int
    metric: str
    mean: float
    std: float
    n: int
    min: float
    max: float
    worst: float
    worst_seed: int


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
    """Normalised area under the learning curve of one strategy; ``per_seed`` maps seed -> value."""

    strategy: str
    per_seed: dict[int, float]
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

    strategy: str
    target: float
    budget: float | None
    best_mean: float
    best_budget: int
    note: str = ""


@dataclass(frozen=True)
class PairedTest:
    """Strategy minus reference at one budget, paired by seed."""

    strategy: str
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
    """Mean, std, min, max and worst seed per strategy and budget (strategies in results order)."""
    _check_metric(metric)
    out = []
    for strategy in results.strategies:
        cells: dict[int, list[tuple[int, float]]] = {}
        for seed, (budgets, values) in results.curves(strategy, metric).items():
            for b, v in zip(budgets.tolist(), values.tolist()):
                cells.setdefault(b, []).append((seed, v))
        for b in sorted(cells):
            seeds = np.array([s for s, _ in cells[b]])
            vals = np.array([v for _, v in cells[b]])
            mean, std = _mean_std(vals)
            worst = int(np.argmin(vals) if HIGHER_IS_BETTER[metric] else np.argmax(vals))
            out.append(BudgetStat(strategy, b, metric, mean, std, vals.size, float(vals.min()), float(vals.max()),
                                  float(vals[worst]), int(seeds[worst])))
    return out


def full_supervision(results: Results, metric: str = "dice") -> FullStat | None:
    """The full-supervision score over its seeds, or None when the table has no ``full`` rows."""
    _check_metric(metric)
    rows = results.full_rows
    if not rows:
        return None
    mean, std = _mean_std(np.array([getattr(r, metric) for r in rows]))
    return FullStat(metric, mean, std, len(rows), max(r.n_labeled for r in rows))


def default_reference(results: Results) -> str | None:
    """The baseline everything is compared with: random cold start, preferring SSL init and random query.

    Preference order: cold_start "random" with init "ssl", then with init "scratch", then any random
    cold start; within those, query "random", then "none", then the first in the table.
    None when no strategy has a random cold start.
    """
    candidates = [s for s in results.strategies if results.meta(s)[0] == "random"]
    if not candidates:
        return None

    def rank(s: str) -> tuple[int, int]:
        _, init, query = results.meta(s)
        return ({"ssl": 0, "scratch": 1}.get(init, 2), {"random": 0, "none": 1}.get(query, 2))

    return min(candidates, key=rank)  # min is stable: ties keep table order


def curve_area(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area of ``values`` over log2(budgets) (0 for a single point)."""
    x = np.log2(np.asarray(budgets, dtype=float))
    y = np.asarray(values, dtype=float)
    order = np.argsort(x)
    return float(np.trapezoid(y[order], x[order]))


def _mean_curve(curves: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
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
    """Normalised ALC per strategy and seed (see the module docstring), then mean and std over seeds.

    ``mean_score`` is the strategy's own area divided by its span, i.e. its average score over the
    log2 budget axis: a readable companion of the normalised value.
    """
    if not HIGHER_IS_BETTER.get(metric, False):
        raise SaalError(f"metric {metric!r}: the normalised ALC needs a score where higher is better (dice, iou)")
    results.meta(reference)  # raises for an unknown reference
    full = full_supervision(results, metric)
    ref_curves = results.curves(reference, metric)
    ref_mean = _mean_curve(ref_curves)
    out = []
    for strategy in results.strategies:
        per_seed: dict[int, float] = {}
        own_scores = []
        n_paired = 0
        notes = set()
        for seed, (b, v) in results.curves(strategy, metric).items():
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
            if a_full - a_r <= _ZERO:
                notes.add("reference reaches full supervision: no room to normalise")
                continue
            per_seed[seed] = (a_s - a_r) / (a_full - a_r)
            if seed in ref_curves:
                n_paired += 1
        values = np.array(list(per_seed.values()))
        mean, std = _mean_std(values) if values.size else (math.nan, math.nan)
        own = float(np.mean(own_scores)) if own_scores else math.nan
        out.append(AlcStat(strategy, per_seed, mean, std, n_paired, own, "; ".join(sorted(notes))))
    return out


def budget_to_fraction_of_full(results: Results, fraction: float = 0.95, metric: str = "dice",
                               interpolate: bool = False) -> list[BudgetToTarget]:
    """Per strategy, the first budget whose mean score reaches ``fraction`` x full supervision.

    With ``interpolate`` the crossing is located linearly on the log2 budget axis (the axis of the
    plots and of the ALC) between the last budget below the target and the first one at or above it.
    """
    if not HIGHER_IS_BETTER.get(metric, False):
        raise SaalError(f"metric {metric!r}: budget-to-target needs a score where higher is better (dice, iou)")
    if not 0.0 < fraction <= 1.0:
        raise SaalError(f"fraction {fraction}: must be in (0, 1]")
    full = full_supervision(results, metric)
    out = []
    for strategy in results.strategies:
        budgets, means = _mean_curve(results.curves(strategy, metric))
        best = int(np.argmax(means))
        if full is None:
            out.append(BudgetToTarget(strategy, math.nan, None, float(means[best]), int(budgets[best]),
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
        out.append(BudgetToTarget(strategy, target, budget, float(means[best]), int(budgets[best])))
    return out


def _paired_p_values(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, str]:
    """Wilcoxon and paired-t p-values, NaN with a reason where a test is undefined."""
    from scipy.stats import ttest_rel, wilcoxon  # scipy.stats is slow to import; only summaries need it

    diff = ours - ref
    diff = np.where(np.abs(diff) < _ZERO, 0.0, diff)
    if diff.size < 2:
        return math.nan, math.nan, "fewer than 2 paired seeds"
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        return math.nan, math.nan, "identical in every seed"
    notes = []
    p_w = float(wilcoxon(diff).pvalue)
    if nonzero < 6:
        notes.append(f"{nonzero} non-zero pairs: Wilcoxon p >= {2 / 2 ** nonzero:.3g}")
    if np.ptp(diff) < _ZERO:
        p_t = math.nan
        notes.append("constant difference: t-test undefined")
    else:
        p_t = float(ttest_rel(ours, ref).pvalue)
    return p_w, p_t, "; ".join(notes)


def paired_tests(results: Results, reference: str, metric: str = "dice") -> list[PairedTest]:
    """Each strategy against ``reference`` at every budget both reached, pairing seeds.

    ``mean_diff`` is strategy minus reference in the metric's units; ``wins`` counts seeds where the
    strategy is better (higher Dice/IoU, lower HD95/ASSD).
    """
    _check_metric(metric)
    results.meta(reference)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    ref = {seed: dict(zip(b.tolist(), v.tolist())) for seed, (b, v) in results.curves(reference, metric).items()}
    out = []
    for strategy in results.strategies:
        if strategy == reference:
            continue
        ours = {seed: dict(zip(b.tolist(), v.tolist())) for seed, (b, v) in results.curves(strategy, metric).items()}
        budgets = sorted({b for seed in ours.keys() & ref.keys() for b in ours[seed].keys() & ref[seed].keys()})
        for b in budgets:
            seeds = sorted(s for s in ours.keys() & ref.keys() if b in ours[s] and b in ref[s])
            a = np.array([ours[s][b] for s in seeds])
            r = np.array([ref[s][b] for s in seeds])
            diff = a - r
            mean, std = _mean_std(diff)
            wins = int(np.count_nonzero(sign * diff > _ZERO))
            p_w, p_t, note = _paired_p_values(a, r)
            out.append(PairedTest(strategy, reference, b, metric, len(seeds), mean, std, wins, p_w, p_t, note))
    return out


# -------------------------------------------------------------------------------------------- the summary
@dataclass(frozen=True)
class Table:
    """A titled table of display strings, rendered to Markdown here and to HTML by the report."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(frozen=True)
class Summary:
    """Everything :func:`write_summary_md` reports, for the HTML report and for callers."""

    source: str
    metric: str
    reference: str | None
    alpha: float
    fraction: float
    budgets: list[int]
    strategies: list[str]
    stats: dict[str, list[BudgetStat]]
    full_by_metric: dict[str, FullStat | None]
    alc: list[AlcStat] = field(default_factory=list)
    to_target: list[BudgetToTarget] = field(default_factory=list)
    paired: list[PairedTest] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    @property
    def full(self) -> FullStat | None:
        """Full supervision in the main metric (None without ``full`` rows)."""
        return self.full_by_metric.get(self.metric)

    def tables(self) -> list[Table]:
        """The summary tables in report order (a table with nothing to show is left out)."""
        tables = [_stats_table(self, m) for m in self.stats]
        if self.alc:
            tables.append(_alc_table(self))
        if self.to_target:
            tables.append(_target_table(self))
        if self.paired:
            tables.append(_paired_table(self))
        return tables

    def to_markdown(self) -> str:
        lines = ["# Experiment summary", "", self.preamble(), "", "## Findings", ""]
        lines += [f"- {s}" for s in self.statements]
        for table in self.tables():
            lines += ["", f"## {table.title}", "", table_markdown(table)]
            if table.note:
                lines += ["", table.note]
        return "\n".join(lines) + "\n"

    def preamble(self) -> str:
        counts = sorted({st.n for st in self.stats[self.metric]})
        n_seeds = f"{counts[-1]} seeds" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} seeds per cell"
        ref = f"`{self.reference}`" if self.reference else "none (no random cold-start strategy)"
        return (f"Source: `{self.source}`. Main metric: {_METRIC_NAMES[self.metric]}. Reference strategy: {ref}. "
                f"{len(self.strategies)} strategies, {n_seeds}, budgets "
                f"{', '.join(str(b) for b in self.budgets)} labeled images.")


_METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD"}
_DASH = "–"


def _fmt_value(metric: str, value: float) -> str:
    """Dice and IoU as percentages with one decimal; distances as they are, one decimal."""
    if not math.isfinite(value):
        return _DASH if math.isnan(value) else str(value)
    return f"{value * 100:.1f}" if HIGHER_IS_BETTER[metric] else f"{value:.1f}"


def _fmt_diff(metric: str, mean: float, std: float) -> str:
    scale = 100.0 if HIGHER_IS_BETTER[metric] else 1.0
    text = f"{mean * scale:+.1f}"
    return text + (f" ± {std * scale:.1f}" if math.isfinite(std) else "")


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return _DASH
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def _label(summary: Summary, strategy: str) -> str:
    return f"{strategy} (ref)" if strategy == summary.reference else strategy


def _stats_table(summary: Summary, metric: str) -> Table:
    stats = summary.stats[metric]
    unit = " (%)" if HIGHER_IS_BETTER[metric] else ""
    rows = []
    for strategy in summary.strategies:
        cells = {st.n_labeled: st for st in stats if st.strategy == strategy}
        n_seeds = max((st.n for st in cells.values()), default=0)
        row = [_label(summary, strategy), str(n_seeds)]
        for b in summary.budgets:
            st = cells.get(b)
            if st is None:
                row.append(_DASH)
                continue
            text = _fmt_value(metric, st.mean)
            if math.isfinite(st.std):
                text += f" ± {_fmt_value(metric, st.std)} ({_fmt_value(metric, st.worst)})"
            if st.n != n_seeds:
                text += f", n={st.n}"
            row.append(text)
        rows.append(row)
    worst = "lowest" if HIGHER_IS_BETTER[metric] else "highest"
    note = f"Cells: mean ± std over seeds (worst seed, i.e. {worst} value, in brackets)."
    full = summary.full_by_metric.get(metric)
    if full is not None:
        spread = f" ± {_fmt_value(metric, full.std)}" if math.isfinite(full.std) else ""
        note += (f" Full supervision ({full.n_labeled} labeled images): {_fmt_value(metric, full.mean)}{spread} "
                 f"over {full.n} seed{'s' if full.n != 1 else ''}.")
    name = _METRIC_NAMES[metric]
    return Table(f"{name}{unit} per strategy and budget", ["strategy", "seeds", *map(str, summary.budgets)], rows, note)


def _alc_table(summary: Summary) -> Table:
    name = _METRIC_NAMES[summary.metric]
    rows = []
    for a in summary.alc:
        value = f"{a.mean:.2f}" + (f" ± {a.std:.2f}" if math.isfinite(a.std) else "") if a.per_seed else _DASH
        rows.append([_label(summary, a.strategy), value, f"{a.n} ({a.n_paired} paired)",
                     _fmt_value(summary.metric, a.mean_score), a.note])
    note = (f"Trapezoidal area under the {name}-vs-budget curve on a log2(labeled images) axis, per seed, "
            f"normalised as (ALC − ALC_ref) / (ALC_full − ALC_ref) over the budgets shared with the reference "
            f"(same seed where it exists, else the reference's mean curve): 0 = reference, 1 = full supervision "
            f"at every budget, below 0 = worse than the reference. The last numeric column is the mean {name} "
            f"over the curve (area / span).")
    return Table("Normalised area under the learning curve",
                 ["strategy", "normalised ALC", "seeds", f"mean {name} over curve (%)", "note"], rows, note)


def _target_table(summary: Summary) -> Table:
    name = _METRIC_NAMES[summary.metric]
    pct = f"{summary.fraction * 100:g}%"
    rows = []
    for t in summary.to_target:
        if t.budget is None:
            needed = "no full-supervision rows" if t.note else "not reached"
        else:
            needed = f"{t.budget:.0f}" if float(t.budget).is_integer() else f"{t.budget:.1f}"
        rows.append([_label(summary, t.strategy), needed,
                     f"{_fmt_value(summary.metric, t.best_mean)} at {t.best_budget}"])
    target = next((t.target for t in summary.to_target if math.isfinite(t.target)), math.nan)
    note = (f"Target: {pct} of the full-supervision {name} = {_fmt_value(summary.metric, target)}%; first budget "
            f"whose mean over seeds reaches it.") if math.isfinite(target) else "No full-supervision rows: no target."
    return Table(f"Labeled images needed to reach {pct} of full supervision",
                 ["strategy", "labeled images needed", f"best mean {name} (%) at budget"], rows, note)


def _paired_table(summary: Summary) -> Table:
    name = _METRIC_NAMES[summary.metric]
    unit = " points" if HIGHER_IS_BETTER[summary.metric] else ""
    rows = [[p.strategy, str(p.n_labeled), _fmt_diff(p.metric, p.mean_diff, p.std_diff), f"{p.wins}/{p.n_pairs}",
             _fmt_p(p.p_wilcoxon), _fmt_p(p.p_ttest), p.note] for p in summary.paired]
    note = (f"Strategy minus `{summary.reference}`, paired by seed at the same budget ({name}{unit}); wins = seeds "
            f"where the strategy is better. Two-sided Wilcoxon signed-rank and paired t-test p-values, per budget, "
            f"not corrected for multiple comparisons.")
    return Table(f"Paired differences vs {summary.reference}",
                 ["strategy", "labeled images", f"Δ {name} mean ± std", "wins/pairs", "Wilcoxon p", "paired t p",
                  "note"], rows, note)


def table_markdown(table: Table) -> str:
    """A GitHub pipe table (``|`` inside cells escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(table.header), line(["---"] * len(table.header)), *map(line, table.rows)])


def _statements(summary: Summary) -> list[str]:
    """Plain sentences that claim only what the paired tests support."""
    out = []
    if summary.full is not None:
        full = summary.full
        spread = f" ± {_fmt_value(full.metric, full.std)}" if math.isfinite(full.std) else ""
        unit = "%" if HIGHER_IS_BETTER[full.metric] else ""
        out.append(f"Full supervision ({full.n_labeled} labeled images) reaches "
                   f"{_fmt_value(full.metric, full.mean)}{spread}{unit} {_METRIC_NAMES[full.metric]}.")
    if summary.reference is None:
        out.append("No random cold-start strategy in the table, so no paired comparison was made.")
        return out
    alc = {a.strategy: a for a in summary.alc}
    for strategy in summary.strategies:
        if strategy == summary.reference:
            continue
        tests = [p for p in summary.paired if p.strategy == strategy]
        if tests:
            out.append(_compare_sentence(tests[0], summary.alpha))
        a = alc.get(strategy)
        if a is not None and a.per_seed:
            spread = f" ± {a.std:.2f}" if math.isfinite(a.std) else ""
            out.append(f"Over the whole curve, {strategy} has a normalised ALC of {a.mean:.2f}{spread} "
                       f"({a.n} seeds; 0 = {summary.reference}, 1 = full supervision).")
    caveat = "p-values are per budget and not corrected for multiple comparisons"
    if any(p.n_pairs < 6 for p in summary.paired):
        caveat += "; with fewer than 6 paired seeds the Wilcoxon test cannot reach p < 0.05"
    out.append(caveat + ".")
    return out


def _compare_sentence(p: PairedTest, alpha: float) -> str:
    name = _METRIC_NAMES[p.metric] + (" points" if HIGHER_IS_BETTER[p.metric] else "")
    at = f"at {p.n_labeled} labels"
    diff = _fmt_diff(p.metric, p.mean_diff, p.std_diff)
    evidence = f"{p.wins}/{p.n_pairs} seeds better, Wilcoxon p={_fmt_p(p.p_wilcoxon)}"
    if math.isnan(p.p_wilcoxon):
        if p.note == "identical in every seed":
            return f"{p.strategy} is identical to {p.reference} {at} in all {p.n_pairs} seeds."
        return f"{p.strategy} cannot be compared with {p.reference} {at} ({p.note})."
    better = (p.mean_diff > 0) == HIGHER_IS_BETTER[p.metric]
    if p.p_wilcoxon < alpha:
        verb = "beats" if better else "trails"
        return f"{p.strategy} {verb} {p.reference} {at} by {diff} {name} ({evidence})."
    if p.wins in (0, p.n_pairs):
        where = "ahead of" if better else "behind"
        return (f"{p.strategy} is {where} {p.reference} {at} by {diff} {name} ({evidence}), "
                f"but this is not significant at the {alpha:g} level.")
    return f"{p.strategy} is within noise of {p.reference} {at} ({diff} {name}, {evidence})."


def summarize(results: Results, *, reference: str | None = None, metric: str = "dice", fraction: float = 0.95,
              alpha: float = 0.05, interpolate: bool = False) -> Summary:
    """All summary statistics of ``results``; ``reference`` defaults to :func:`default_reference`."""
    _check_metric(metric)
    if not results.strategies:
        raise SaalError(f"{results.source}: only full-supervision rows, no learning curve to summarise")
    if reference is None:
        reference = default_reference(results)
    elif reference not in results.strategies:
        raise SaalError(f"reference strategy {reference!r} is not in {results.source} "
                        f"(have: {', '.join(results.strategies)})")
    metrics = [metric] + [m for m in ("dice", "iou", "hd95") if m != metric and _has_values(results, m)]
    stats = {m: budget_stats(results, m) for m in metrics}
    higher = HIGHER_IS_BETTER[metric]
    summary = Summary(
        source=results.source, metric=metric, reference=reference, alpha=alpha, fraction=fraction,
        budgets=results.budgets, strategies=results.strategies, stats=stats,
        full_by_metric={m: full_supervision(results, m) for m in metrics},
        alc=normalised_alc(results, reference, metric) if reference is not None and higher else [],
        to_target=budget_to_fraction_of_full(results, fraction, metric, interpolate) if higher else [],
        paired=paired_tests(results, reference, metric) if reference is not None else [],
    )
    return replace(summary, statements=_statements(summary))


def _has_values(results: Results, metric: str) -> bool:
    return any(math.isfinite(getattr(r, metric)) for r in results.rows if r.strategy != FULL_STRATEGY)


def write_summary_md(path: str | os.PathLike, results: Results, *, reference: str | None = None,
                     metric: str = "dice", fraction: float = 0.95, alpha: float = 0.05,
                     interpolate: bool = False) -> Summary:
    """Write the Markdown summary (options as in :func:`summarize`) and return the summary."""
    summary = summarize(results, reference=reference, metric=metric, fraction=fraction, alpha=alpha,
                        interpolate=interpolate)
    atomic_write_text(path, summary.to_markdown())
    return summary
