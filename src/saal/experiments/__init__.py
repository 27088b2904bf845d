"""The experiment matrix (cold start x initialisation x query x seed) and its reporting.

Running: :mod:`.matrix` (the cells), :mod:`.tasks` (a cell at a seed, and the shared stage's
products), :mod:`.runner` (:func:`run_experiment`: shared stage, claimed cells, resumable and
parallel; ``--report-only``), :mod:`.slurm` (the same tasks as Slurm jobs through submitit),
:mod:`saal.locks` (the lock files processes coordinate through), :mod:`.collect` (finished cells ->
``results.csv``) and :mod:`.report` (summary, curves, pictures, ``report.html``).

Reading results works from ``results.csv`` alone: :mod:`.results` (the table), :mod:`.stats`
(statistics), :mod:`.summary` (``summary.md`` in words and tables) and :mod:`.plots` (learning
curves). Importing this package loads only those (no torch, no matplotlib); the runner's names
load on first use.
"""

from .results import FULL_SUPERVISION, Results, load_results, results_from_rows
from .stats import (budget_stats, budget_to_fraction_of_full, default_reference, full_supervision, normalised_alc,
                    paired_tests)
from .summary import Summary, summarize, write_summary_md

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
    "FULL_CELL", "Cell", "build_matrix", "collect_results", "run_experiment",
    "FULL_SUPERVISION", "Results", "load_results", "results_from_rows",
    "budget_stats", "budget_to_fraction_of_full", "default_reference", "full_supervision", "normalised_alc",
    "paired_tests", "Summary", "summarize", "write_summary_md",
]
