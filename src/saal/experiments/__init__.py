"""The experiment matrix (cold-start strategy x initialisation x query x seed) and its reporting.

Running: :mod:`.matrix` (the cells), :mod:`.runner` (:func:`run_experiment`: shared stage, claimed
cells, resumable and parallel), :mod:`.locks` (the lock files processes coordinate through),
:mod:`.collect` (finished cells -> ``results.csv``) and :mod:`.report` (summary, curves, pictures,
``report.html``).

Reporting works from the runner's ``results.csv`` alone: :mod:`.summary` (statistics and
``summary.md``), :mod:`.plots` (learning curves) and :mod:`.report_html` (one self-contained HTML
file). The plotting and HTML modules are imported on demand, so that importing the statistics does
not pull in matplotlib; likewise the runner's names (which need torch) load on first use.
"""

from .summary import (
    FULL_STRATEGY,
    Results,
    Summary,
    Table,
    budget_stats,
    budget_to_fraction_of_full,
    default_reference,
    load_results,
    normalised_alc,
    paired_tests,
    results_from_rows,
    summarize,
    write_summary_md,
)

#: Names that load their module (and torch) on first access: ``from saal.experiments import run_experiment``.
_LAZY = {
    "run_experiment": "runner", "Cell": "matrix", "FULL_CELL": "matrix", "build_matrix": "matrix",
    "collect_results": "collect",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FULL_CELL",
    "Cell",
    "build_matrix",
    "collect_results",
    "run_experiment",
    "FULL_STRATEGY",
    "Results",
    "Summary",
    "Table",
    "budget_stats",
    "budget_to_fraction_of_full",
    "default_reference",
    "load_results",
    "normalised_alc",
    "paired_tests",
    "results_from_rows",
    "summarize",
    "write_summary_md",
]
