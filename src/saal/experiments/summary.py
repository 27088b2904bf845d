"""The summary of an experiment in words and tables: ``summary.md`` and what the HTML report shows.

:func:`summarize` gathers the statistics of :mod:`.stats` for a results table;
:class:`Summary` renders them as :class:`~saal.render.html.Table` objects and as
plain sentences that claim only what the paired tests support.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from ..errors import SaalError
from ..io import atomic_write_text
from ..render.html import Table
from .results import FULL_SUPERVISION, HIGHER_IS_BETTER, METRIC_NAMES, Results, check_metric
from .stats import (AlcStat, BudgetStat, BudgetToTarget, FullStat, PairedTest, SpreadStat, budget_stats,
                    budget_to_fraction_of_full, default_reference, full_supervision, normalised_alc, paired_tests,
                    spread_by_source)


@dataclass(frozen=True)
class Summary:
    """Everything :func:`write_summary_md` reports, for the HTML report and for callers."""

    source: str
    metric: str
    reference: str | None
    alpha: float
    fraction: float
    budgets: list[int]
    cells: list[str]
    stats: dict[str, list[BudgetStat]]
    full_by_metric: dict[str, FullStat | None]
    alc: list[AlcStat] = field(default_factory=list)
    to_target: list[BudgetToTarget] = field(default_factory=list)
    paired: list[PairedTest] = field(default_factory=list)
    spread: list[SpreadStat] = field(default_factory=list)
    ssl_seeds: list[int] = field(default_factory=lambda: [0])
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
        if self.spread:
            tables.append(_spread_table(self))
        return tables

    def to_markdown(self) -> str:
        lines = ["# Experiment summary", "", self.preamble(), "", "## Findings", ""]
        lines += [f"- {s}" for s in self.statements]
        for table in self.tables():
            lines += ["", f"## {table.title}", "", table.to_markdown()]
            if table.note:
                lines += ["", table.note]
        return "\n".join(lines) + "\n"

    def preamble(self) -> str:
        counts = sorted({st.n for st in self.stats[self.metric]})
        unit = "seeds" if len(self.ssl_seeds) == 1 else f"replicates ({len(self.ssl_seeds)} pretraining runs x seeds)"
        n_seeds = f"{counts[-1]} {unit}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} {unit} per cell"
        ref = f"`{self.reference}`" if self.reference else "none (no random cold-start cell)"
        return (f"Source: `{self.source}`. Main metric: {METRIC_NAMES[self.metric]}. Reference cell: {ref}. "
                f"{len(self.cells)} cells, {n_seeds}, budgets "
                f"{', '.join(str(b) for b in self.budgets)} labeled images.")


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


def _label(summary: Summary, cell: str) -> str:
    return f"{cell} (ref)" if cell == summary.reference else cell


def _stats_table(summary: Summary, metric: str) -> Table:
    stats = summary.stats[metric]
    unit = " (%)" if HIGHER_IS_BETTER[metric] else ""
    rows = []
    for cell in summary.cells:
        by_budget = {st.n_labeled: st for st in stats if st.cell == cell}
        n_seeds = max((st.n for st in by_budget.values()), default=0)
        row = [_label(summary, cell), str(n_seeds)]
        for b in summary.budgets:
            st = by_budget.get(b)
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
    name = METRIC_NAMES[metric]
    return Table(f"{name}{unit} per cell and budget", ["cell", "seeds", *map(str, summary.budgets)], rows, note)


def _alc_table(summary: Summary) -> Table:
    name = METRIC_NAMES[summary.metric]
    rows = []
    for a in summary.alc:
        value = f"{a.mean:.2f}" + (f" ± {a.std:.2f}" if math.isfinite(a.std) else "") if a.per_seed else _DASH
        rows.append([_label(summary, a.cell), value, f"{a.n} ({a.n_paired} paired)",
                     _fmt_value(summary.metric, a.mean_score), a.note])
    note = (f"Trapezoidal area under the {name}-vs-budget curve on a log2(labeled images) axis, per seed, "
            f"normalised as (ALC − ALC_ref) / (ALC_full − ALC_ref) over the budgets shared with the reference "
            f"(same seed where it exists, else the reference's mean curve): 0 = reference, 1 = full supervision "
            f"at every budget, below 0 = worse than the reference. The last numeric column is the mean {name} "
            f"over the curve (area / span).")
    return Table("Normalised area under the learning curve",
                 ["cell", "normalised ALC", "seeds", f"mean {name} over curve (%)", "note"], rows, note)


def _target_table(summary: Summary) -> Table:
    name = METRIC_NAMES[summary.metric]
    pct = f"{summary.fraction * 100:g}%"
    rows = []
    for t in summary.to_target:
        if t.budget is None:
            needed = "no full-supervision rows" if t.note else "not reached"
        else:
            needed = f"{t.budget:.0f}" if float(t.budget).is_integer() else f"{t.budget:.1f}"
        rows.append([_label(summary, t.cell), needed,
                     f"{_fmt_value(summary.metric, t.best_mean)} at {t.best_budget}"])
    target = next((t.target for t in summary.to_target if math.isfinite(t.target)), math.nan)
    note = (f"Target: {pct} of the full-supervision {name} = {_fmt_value(summary.metric, target)}%; first budget "
            f"whose mean over seeds reaches it.") if math.isfinite(target) else "No full-supervision rows: no target."
    return Table(f"Labeled images needed to reach {pct} of full supervision",
                 ["cell", "labeled images needed", f"best mean {name} (%) at budget"], rows, note)


def _paired_table(summary: Summary) -> Table:
    name = METRIC_NAMES[summary.metric]
    unit = " points" if HIGHER_IS_BETTER[summary.metric] else ""
    rows = [[p.cell, str(p.n_labeled), _fmt_diff(p.metric, p.mean_diff, p.std_diff), f"{p.wins}/{p.n_pairs}",
             _fmt_p(p.p_wilcoxon), _fmt_p(p.p_ttest), p.note] for p in summary.paired]
    note = (f"Cell minus `{summary.reference}`, paired by seed at the same budget ({name}{unit}); wins = seeds "
            f"where the cell is better. Two-sided Wilcoxon signed-rank and paired t-test p-values, per budget, "
            f"not corrected for multiple comparisons.")
    return Table(f"Paired differences vs {summary.reference}",
                 ["cell", "labeled images", f"Δ {name} mean ± std", "wins/pairs", "Wilcoxon p", "paired t p",
                  "note"], rows, note)


def _spread_table(summary: Summary) -> Table:
    name = METRIC_NAMES[summary.metric]
    rows = [[sp.cell, str(sp.n_labeled), f"{sp.n_pretraining} x {sp.n_seeds // sp.n_pretraining}",
             _fmt_value(sp.metric, sp.total), _fmt_value(sp.metric, sp.between), _fmt_value(sp.metric, sp.within)]
            for sp in summary.spread]
    note = (f"Standard deviations of {name}: over every replicate; of the means of each pretraining run (what the "
            "pretraining run alone moves); and the typical spread over seeds under one pretraining run (root mean "
            "within-run variance). A between-run spread as large as the within-run one means a single pretraining "
            "run cannot settle a comparison.")
    return Table("Spread by source: pretraining run vs seed",
                 ["cell", "labeled images", "runs x seeds", "total std", "between pretraining runs",
                  "within a run (seeds)"], rows, note)


def _statements(summary: Summary) -> list[str]:
    """Plain sentences that claim only what the paired tests support."""
    out = []
    if summary.full is not None:
        full = summary.full
        spread = f" ± {_fmt_value(full.metric, full.std)}" if math.isfinite(full.std) else ""
        unit = "%" if HIGHER_IS_BETTER[full.metric] else ""
        out.append(f"Full supervision ({full.n_labeled} labeled images) reaches "
                   f"{_fmt_value(full.metric, full.mean)}{spread}{unit} {METRIC_NAMES[full.metric]}.")
    if summary.reference is None:
        out.append("No random cold-start cell in the table, so no paired comparison was made.")
        return out
    alc = {a.cell: a for a in summary.alc}
    for cell in summary.cells:
        if cell == summary.reference:
            continue
        tests = [p for p in summary.paired if p.cell == cell]
        if tests:
            out.append(_compare_sentence(tests[0], summary.alpha))
        a = alc.get(cell)
        if a is not None and a.per_seed:
            spread = f" ± {a.std:.2f}" if math.isfinite(a.std) else ""
            out.append(f"Over the whole curve, {cell} has a normalised ALC of {a.mean:.2f}{spread} "
                       f"({a.n} seeds; 0 = {summary.reference}, 1 = full supervision).")
    caveat = "p-values are per budget and not corrected for multiple comparisons"
    if any(p.n_pairs < 6 for p in summary.paired):
        caveat += "; with fewer than 6 paired seeds the Wilcoxon test cannot reach p < 0.05"
    out.append(caveat + ".")
    return out


def _compare_sentence(p: PairedTest, alpha: float) -> str:
    name = METRIC_NAMES[p.metric] + (" points" if HIGHER_IS_BETTER[p.metric] else "")
    at = f"at {p.n_labeled} labels"
    diff = _fmt_diff(p.metric, p.mean_diff, p.std_diff)
    evidence = f"{p.wins}/{p.n_pairs} seeds better, Wilcoxon p={_fmt_p(p.p_wilcoxon)}"
    if math.isnan(p.p_wilcoxon):
        if p.note == "identical in every seed":
            return f"{p.cell} is identical to {p.reference} {at} in all {p.n_pairs} seeds."
        return f"{p.cell} cannot be compared with {p.reference} {at} ({p.note})."
    better = (p.mean_diff > 0) == HIGHER_IS_BETTER[p.metric]
    if p.p_wilcoxon < alpha:
        verb = "beats" if better else "trails"
        return f"{p.cell} {verb} {p.reference} {at} by {diff} {name} ({evidence})."
    if p.wins in (0, p.n_pairs):
        where = "ahead of" if better else "behind"
        return (f"{p.cell} is {where} {p.reference} {at} by {diff} {name} ({evidence}), "
                f"but this is not significant at the {alpha:g} level.")
    return f"{p.cell} is within noise of {p.reference} {at} ({diff} {name}, {evidence})."


def summarize(results: Results, *, reference: str | None = None, metric: str = "dice", fraction: float = 0.95,
              alpha: float = 0.05, interpolate: bool = False) -> Summary:
    """All summary statistics of ``results``; ``reference`` defaults to :func:`default_reference`."""
    check_metric(metric)
    if not results.cells:
        raise SaalError(f"{results.source}: only full-supervision rows, no learning curve to summarise")
    if reference is None:
        reference = default_reference(results)
    elif reference not in results.cells:
        raise SaalError(f"reference cell {reference!r} is not in {results.source} "
                        f"(have: {', '.join(results.cells)})")
    metrics = [metric] + [m for m in ("dice", "iou", "hd95") if m != metric and _has_values(results, m)]
    stats = {m: budget_stats(results, m) for m in metrics}
    higher = HIGHER_IS_BETTER[metric]
    summary = Summary(
        source=results.source, metric=metric, reference=reference, alpha=alpha, fraction=fraction,
        budgets=results.budgets, cells=results.cells, stats=stats,
        full_by_metric={m: full_supervision(results, m) for m in metrics},
        alc=normalised_alc(results, reference, metric) if reference is not None and higher else [],
        to_target=budget_to_fraction_of_full(results, fraction, metric, interpolate) if higher else [],
        paired=paired_tests(results, reference, metric) if reference is not None else [],
        spread=spread_by_source(results, metric), ssl_seeds=results.ssl_seeds,
    )
    return replace(summary, statements=_statements(summary))


def _has_values(results: Results, metric: str) -> bool:
    return any(math.isfinite(getattr(r, metric)) for r in results.rows if r.cell != FULL_SUPERVISION)


def write_summary_md(path: str | os.PathLike, results: Results, *, reference: str | None = None,
                     metric: str = "dice", fraction: float = 0.95, alpha: float = 0.05,
                     interpolate: bool = False) -> Summary:
    """Write the Markdown summary (options as in :func:`summarize`) and return the summary."""
    summary = summarize(results, reference=reference, metric=metric, fraction=fraction, alpha=alpha,
                        interpolate=interpolate)
    atomic_write_text(path, summary.to_markdown())
    return summary
