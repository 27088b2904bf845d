"""``saal experiment``: the cold-start x initialisation x query matrix over seeds, with its report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_HELP = "\n\n".join([
    "Compare cold starts the way the paper does, over several seeds, and write a report.",
    "Runs every cell of the matrix (cold start x initialisation x query) for each seed as a simulated "
    "active-learning loop (the ground-truth masks play the annotator), plus a full-supervision reference per seed. "
    "Default matrix: random and saal cold starts, each from the self-supervised weights (ssl) and from scratch, "
    "plus typiclust and kcenter from ssl, and the preset's cold start both ways (saal-typical for demo and cpu); "
    "the preset's query in the later rounds.",
    "The self-supervised pretraining and the pool features are computed once and shared by every cell. Writes "
    "OUT/results.csv (one row per cell, seed and round), OUT/summary.md (mean ± std and worst seed per budget, "
    "normalised area under the curve, labels needed for 95% of full supervision, paired tests against random), "
    "OUT/learning_curves.png and OUT/report.html (one self-contained file).",
    "Resumable: a finished cell is never recomputed, an interrupted one continues; rerun the same command. "
    "Parallel: --workers N runs N local processes; several 'saal experiment' commands (on other machines too) may "
    "share one OUT over a shared filesystem, each claiming free cells.",
    "Example: saal experiment --out runs/exp --preset demo --seeds 5 --workers 2",
])


def experiment(
    out: Path = typer.Option(..., "--out", metavar="OUTDIR",
                             help="Experiment folder: created if new, continued if it holds a run."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="DIR",
                                        help="Dataset folder with masks (any layout 'saal data inspect' reads); "
                                             "default: the embedded synthetic dataset."),
    preset: Optional[str] = typer.Option(None, "--preset",
                                         help="demo (minutes on a CPU), cpu (hours) or paper (GPU); "
                                              "default: demo, or what OUTDIR was made with."),
    seeds: Optional[int] = typer.Option(None, "--seeds", metavar="N",
                                        help="Repeat every cell with seeds 0..N-1 (default: the preset's)."),
    cold_starts: Optional[str] = typer.Option(None, "--cold-starts", metavar="A,B",
                                              help="Cold starts to compare (default random,saal,typiclust,kcenter "
                                                   "and the preset's; also saal-typical, probcover)."),
    inits: Optional[str] = typer.Option(None, "--inits", metavar="A,B",
                                        help="Initialisations for every cold start: ssl, scratch (default: both "
                                             "for random and saal, ssl for the others)."),
    queries: Optional[str] = typer.Option(None, "--queries", metavar="A,B",
                                          help="Queries of the later rounds (default: the preset's): random, "
                                               "entropy, bald, variance, representative, uncertainty-diversity, "
                                               "cold-start-rule, cluster-entropy."),
    train: Optional[str] = typer.Option(None, "--train", metavar="A,B",
                                        help="Training modes every cell runs with: supervised (the labeled images "
                                             "alone), semi (plus pseudo-labels on the unlabeled pool); "
                                             "'supervised,semi' compares both (default: the preset's)."),
    ssl_seeds: int = typer.Option(1, "--ssl-seeds", metavar="K", min=1,
                                  help="Self-supervised pretraining runs (seeds S, S+1, ... from the run's --seed): "
                                       "every cell and seed is repeated on each, so the results sample the "
                                       "pretraining too and summary.md shows how much of the spread it causes."),
    full_seeds: Optional[int] = typer.Option(None, "--full-seeds", metavar="N", min=0,
                                             help="Run the full-supervision reference for the first N seeds of "
                                                  "each pretraining run only (default: every seed)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of a new OUTDIR: its (first) pretraining run "
                                                           "(default 0)."),
    objective: Optional[str] = typer.Option(None, "--objective",
                                            help="Self-supervised objective of a new OUTDIR: genesis, contrastive or "
                                                 "genesis+contrastive (default: the preset's)."),
    workers: int = typer.Option(1, "--workers", metavar="N",
                                help="Local worker processes, one torch thread each (2 suits a 2-core machine)."),
    split: str = typer.Option("random", "--split",
                              help="Pool/test split of a new OUTDIR: random (the paper's), or official "
                                   "(the challenge's train and test parts)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable or unmatched files out."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars or messages."),
) -> None:
    from ..errors import SaalError
    from ..experiments import budget_stats, load_results
    from ..experiments.runner import run_experiment

    if seeds is not None and seeds < 1:
        raise SaalError(f"--seeds: need at least 1, got {seeds}")
    if split not in ("random", "official"):
        raise SaalError(f"--split: choose random or official, got {split!r}")
    results_csv = run_experiment(out, data=data, preset=preset, seeds=seeds, cold_starts=cold_starts, inits=inits,
                                 queries=queries, trains=train, ssl_seeds=ssl_seeds, full_seeds=full_seeds,
                                 workers=workers, progress=not no_progress, split_mode=split, skip_bad=skip_bad,
                                 seed=seed, settings={"ssl_objective": objective})
    results = load_results(results_csv)
    smallest = min(results.budgets)
    typer.echo(f"Dice at {smallest} labeled images (mean ± std over replicates, worst one):")
    width = max(len(c) for c in results.cells)
    for st in budget_stats(results, "dice"):
        if st.n_labeled == smallest:
            spread = f" ± {100 * st.std:.1f}" if st.n > 1 else ""
            typer.echo(f"  {st.cell:<{width}}  {100 * st.mean:5.1f}{spread}  (worst {100 * st.worst:.1f}, "
                       f"{st.n} replicate{'s' if st.n != 1 else ''})")
    for name in ("results.csv", "summary.md", "learning_curves.png", "report.html"):
        typer.echo(f"{name:<20} {Path(out) / name}")


def register(app: typer.Typer) -> None:
    app.command("experiment", help=_HELP)(experiment)
