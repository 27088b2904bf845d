"""The experiment matrix (cold-start strategy x initialisation x query x seed) and its reporting.

Reporting works from the runner's ``results.csv`` alone: :mod:`.summary` (statistics and
``summary.md``), :mod:`.plots` (learning curves) and :mod:`.report_html` (one self-contained HTML
file). The plotting and HTML modules are imported on demand, so that importing the statistics does
not pull in matplotlib.
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

__all__ = [
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
