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
    "Cluster: --launcher slurm submits the shared stage, one array job of the unfinished cells and a report job "
    "through submitit (pip install submitit); rerun it to submit only what is missing. --report-only writes "
    "the results and report from the finished cells without running anything. See docs/experiments.md, "
    "'Running on a Slurm cluster'.",
    "Example: saal experiment --out runs/exp --preset demo --seeds 5 --workers 2",
])
LAUNCHERS = ("local", "slurm", "slurm-local")


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
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="SETTING=VALUE",
                                             help="Any preset setting of a new OUTDIR by its name (repeat for "
                                                  "several), e.g. --set channels=rgb --set seg_augment=strong."),
    workers: int = typer.Option(1, "--workers", metavar="N",
                                help="Local worker processes, one torch thread each (2 suits a 2-core machine)."),
    split: str = typer.Option("random", "--split",
                              help="Pool/test split of a new OUTDIR: random (the paper's), or official "
                                   "(the challenge's train and test parts)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable or unmatched files out."),
    device: str = typer.Option("auto", "--device",
                               help="Where to train: auto (CUDA when available), cuda or cpu. With --launcher "
                                    "slurm, where the jobs train (ask for GPUs with --slurm-gpus)."),
    launcher: str = typer.Option("local", "--launcher",
                                 help="local: this machine (--workers processes); slurm: submit jobs through "
                                      "submitit; slurm-local: the same jobs as local processes (a dry run)."),
    report_only: bool = typer.Option(False, "--report-only",
                                     help="Write results.csv, summary.md and report.html from the finished cells, "
                                          "run nothing; exits with an error naming the unfinished tasks, if any, "
                                          "after writing."),
    wait: bool = typer.Option(False, "--wait", help="--launcher slurm: wait for the report job and print the "
                                                    "results (default: return once submitted)."),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="Slurm partition of the jobs."),
    slurm_gpus: Optional[int] = typer.Option(None, "--slurm-gpus", metavar="N", help="GPUs per job (default 0)."),
    slurm_time: Optional[int] = typer.Option(None, "--slurm-time", metavar="MIN",
                                             help="Time limit per job in minutes (default 240)."),
    slurm_mem: Optional[float] = typer.Option(None, "--slurm-mem", metavar="GB", help="Memory per job in GB."),
    slurm_cpus: Optional[int] = typer.Option(None, "--slurm-cpus", metavar="N",
                                             help="CPUs per job, also its torch threads (default 1)."),
    slurm_option: Optional[list[str]] = typer.Option(None, "--slurm-option", metavar="KEY=VALUE",
                                                     help="Extra sbatch option, e.g. qos=high or account=lab "
                                                          "(repeatable)."),
    slurm_array_parallelism: Optional[int] = typer.Option(None, "--slurm-array-parallelism", metavar="N",
                                                          help="At most N task jobs at once."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars or messages."),
) -> None:
    from ..errors import SaalError
    from ..runtime import check_device

    if seeds is not None and seeds < 1:
        raise SaalError(f"--seeds: need at least 1, got {seeds}")
    if split not in ("random", "official"):
        raise SaalError(f"--split: choose random or official, got {split!r}")
    if launcher not in LAUNCHERS:
        raise SaalError(f"--launcher: choose {', '.join(LAUNCHERS)}, got {launcher!r}")
    check_device(device)
    slurm_given = [name for name, value in (("--slurm-partition", slurm_partition), ("--slurm-gpus", slurm_gpus),
                                            ("--slurm-time", slurm_time), ("--slurm-mem", slurm_mem),
                                            ("--slurm-cpus", slurm_cpus), ("--slurm-option", slurm_option),
                                            ("--slurm-array-parallelism", slurm_array_parallelism),
                                            ("--wait", wait or None)) if value]
    if slurm_given and (launcher == "local" or report_only):
        raise SaalError(f"{slurm_given[0]}: applies to --launcher slurm only")
    matrix = dict(seeds=seeds, cold_starts=cold_starts, inits=inits, queries=queries, trains=train,
                  full_seeds=full_seeds)
    if report_only:
        from ..experiments.runner import report_experiment

        outcome = report_experiment(out, ssl_seeds=ssl_seeds, progress=not no_progress, **matrix)
        _print_results(out, outcome.results)
        _refuse_partial(outcome)
        return
    from ..config import parse_settings

    settings = {"ssl_objective": objective, **parse_settings(sets or [])}
    data_options = dict(split_mode=split, skip_bad=skip_bad, seed=seed, settings=settings)
    if launcher == "local":
        from ..experiments.runner import run_experiment

        results_csv = run_experiment(out, data=data, preset=preset, ssl_seeds=ssl_seeds, workers=workers,
                                     device=device, progress=not no_progress, **matrix, **data_options)
        _print_results(out, results_csv)
        return
    from ..experiments.slurm import SlurmOptions, parse_slurm_options, submit_experiment

    options = SlurmOptions(partition=slurm_partition, gpus=slurm_gpus or 0, time_min=slurm_time or 240,
                           mem_gb=slurm_mem, cpus=slurm_cpus or 1, extra=parse_slurm_options(slurm_option or ()),
                           array_parallelism=slurm_array_parallelism,
                           cluster="local" if launcher == "slurm-local" else "slurm")
    submission = submit_experiment(out, data=data, preset=preset, ssl_seeds=ssl_seeds, slurm=options, wait=wait,
                                   device=device, progress=not no_progress, **matrix, **data_options)
    queued = f" ({len(submission.queued)} still queued or running in earlier jobs)" if submission.queued else ""
    typer.echo(f"{len(submission.submitted)} of {len(submission.planned)} tasks submitted{queued}")
    if submission.failed:
        typer.echo(f"failed task jobs: {', '.join(submission.failed)}", err=True)
    if submission.outcome is not None:
        _print_results(out, submission.outcome.results)
        _refuse_partial(submission.outcome)
    elif submission.report is not None:
        typer.echo(f"the report job {submission.report.job_id} writes {Path(out) / 'report.html'} when the tasks "
                   "have ended")


def _refuse_partial(outcome) -> None:
    """Exit with an error after a report that lacks planned tasks: its files are written, but incomplete."""
    from ..errors import SaalError

    if outcome.unfinished:
        names = ", ".join(t.label for t in outcome.unfinished[:3])
        more = ", ..." if len(outcome.unfinished) > 3 else ""
        raise SaalError(f"{len(outcome.unfinished)} of {outcome.planned} planned tasks are unfinished ({names}{more}); "
                        "the files above hold the finished ones")


def _print_results(out: Path, results_csv: Path) -> None:
    """The smallest budget's Dice per cell, then where the files are."""
    from ..experiments import budget_stats, load_results

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
