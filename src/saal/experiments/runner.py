"""Run the experiment matrix: every (cell, seed) once, resumable, in as many processes as you like.

One experiment directory holds everything (see docs/experiments.md for the layout):

1. **Shared stage**, once: the workspace (data, pool/test split), the self-supervised pretraining
   and the pool features, which every cell reuses. It runs under ``locks/prepare.lock``, so when
   two processes start together the second waits and then finds the work done.
2. **Cells**: each (cell, seed) is an active-learning loop (:func:`saal.active.loop.run_simulated`)
   in ``cells/<cell>/seed<k>/``, claimed through ``locks/<cell>-seed<k>.lock`` so that exactly one
   process runs it, and marked finished by ``done.json``. A finished cell is never recomputed; an
   interrupted one resumes from the rounds its loop folder already holds.
3. **Collection and report**: ``results.csv`` from every finished cell, then ``summary.md``,
   ``learning_curves.png`` and ``report.html`` (:mod:`saal.experiments.report`).

Processes share nothing but the directory: launch the same command on several machines over a
shared filesystem, use ``workers`` for local processes, or submit Slurm jobs (:mod:`.slurm`, which runs every
task through :func:`claim_loop` and :func:`run_task` here). Each process claims free cells until none
is left, then waits for cells other processes still hold, so every process ends with the complete
table. Worker processes run one torch thread each: the tensors of a small U-Net do not spread over
threads, so two single-threaded cells use two cores better than one two-threaded cell.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..active.loop import LoopConfig, run_simulated
from ..config import Preset, get_preset
from ..errors import SaalError
from ..io import append_jsonl, load_state
from ..progress import say as _say
from ..pipeline import pool_features, ssl_weights
from ..runtime import use_device
from ..workspace import RUN_FILE, Workspace, open_workspace
from .collect import collect_results, finished_cells, read_done, write_done
from ..locks import LOCKS_DIR, FileLock, LockOwner, current_owner, locked
from .matrix import build_matrix, resolve_seeds
from .report import write_experiment_report
from .tasks import Encoder, Shared, Task, loop_config, plan_tasks

PREPARE_LOCK = "prepare.lock"
RUNS_LOG = "runs.jsonl"  # in each cell folder: one line per process start / finish, for the record
_POLL_S = 2.0


def check_out_dir(out_dir: Path) -> Path:
    """``out_dir``, refused when it is a file (before a lock file is made inside it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SaalError(f"--out {out_dir}: exists and is not a directory")
    return out_dir


def _open_checked(out_dir: Path, data: str | os.PathLike | None, preset: Preset | str | None, progress: bool,
                  **data_options: Any) -> Workspace:
    """The experiment's workspace, refused when it cannot hold an experiment (no masks, budgets over the pool)."""
    ws = open_workspace(out_dir, data=data, preset=preset, progress=progress, **data_options)
    if ws.test is None:
        raise SaalError(f"{ws.source}: the data has no masks; an experiment simulates the annotator with the "
                        "ground truth and scores a labeled test set (use 'saal query' for unlabeled data)")
    if ws.preset.budgets[-1] > len(ws.pool):
        raise SaalError(f"the largest budget {ws.preset.budgets[-1]} of the {ws.preset.name} preset exceeds the "
                        f"pool of {len(ws.pool)} images; use a larger dataset or a preset with smaller budgets")
    return ws


def prepare(out_dir: str | os.PathLike, *, data: str | os.PathLike | None = None, preset: Preset | str | None = None,
            ssl_seeds: int = 1, progress: bool = True, **data_options: Any) -> Shared:
    """Open the workspace, pretrain and extract features if not done yet (under the prepare lock).

    ``ssl_seeds`` pretraining runs, with seeds ``run seed, run seed + 1, ...``; the first lives in the
    run directory's ``ssl/`` and ``features/``, the others in ``pretraining/seed<s>/``.
    """
    if int(ssl_seeds) < 1:
        raise SaalError(f"--ssl-seeds: need at least 1 pretraining run, got {ssl_seeds}")
    out_dir = check_out_dir(Path(out_dir))

    def waiting(owner: LockOwner) -> None:
        if progress:
            _say(f"waiting for {owner.describe()} to finish the shared stage (pretraining, features)")

    with locked(out_dir / LOCKS_DIR / PREPARE_LOCK, on_wait=waiting):
        ws = _open_checked(out_dir, data, preset, progress, **data_options)
        encoders = {}
        for ssl_seed in range(ws.seed, ws.seed + int(ssl_seeds)):
            weights = ssl_weights(ws, ssl_seed=ssl_seed, progress=progress)
            features = pool_features(ws, weights, ssl_seed=ssl_seed, progress=progress)
            encoders[ssl_seed] = Encoder(ssl_seed, features, load_state(weights))
    return Shared(out_dir, ws.preset, ws.pool, ws.test, ws.seed, encoders)


def open_experiment(out_dir: str | os.PathLike, *, data: str | os.PathLike | None = None,
                    preset: Preset | str | None = None, progress: bool = True, **data_options: Any) -> Shared:
    """The experiment without its encoders (no pretraining): enough to plan its tasks and tell which are done.

    For launchers that leave the shared stage to a job of its own. A new directory is created under the
    prepare lock, as :func:`prepare` does; an existing one is only read, so a submitter never waits for a
    pretraining job that holds the lock.
    """
    out_dir = check_out_dir(Path(out_dir))
    if (out_dir / RUN_FILE).is_file():
        ws = _open_checked(out_dir, data, preset, progress, **data_options)
    else:
        with locked(out_dir / LOCKS_DIR / PREPARE_LOCK):
            ws = _open_checked(out_dir, data, preset, progress, **data_options)
    return Shared(out_dir, ws.preset, ws.pool, ws.test, ws.seed, {})


def check_matrix_options(preset: Preset | str | None, *, seeds: int | Iterable[int] | None,
                         cold_starts: str | Iterable[str] | None, inits: str | Iterable[str] | None,
                         queries: str | Iterable[str] | None, full_seeds: int | None,
                         trains: str | Iterable[str] | None = None) -> None:
    """Refuse bad matrix options before anything long starts (the shared stage may pretrain for hours)."""
    guess = preset if isinstance(preset, Preset) else get_preset(preset or "demo")
    build_matrix(guess, cold_starts=cold_starts, inits=inits, queries=queries, trains=trains)
    resolve_seeds(seeds, guess)
    if full_seeds is not None and int(full_seeds) < 0:
        raise SaalError(f"--full-seeds: need 0 or more, got {full_seeds}")


def plan_experiment(shared: Shared, *, seeds: int | Iterable[int] | None = None,
                    cold_starts: str | Iterable[str] | None = None, inits: str | Iterable[str] | None = None,
                    queries: str | Iterable[str] | None = None, trains: str | Iterable[str] | None = None,
                    ssl_seeds: int = 1, full_seeds: int | None = None) -> list[Task]:
    """Every task the options ask for, in :func:`~saal.experiments.tasks.plan_tasks` order.

    The pretraining seeds are the run's seed and the ``ssl_seeds - 1`` after it, as :func:`prepare` makes them.
    """
    cells = build_matrix(shared.preset, cold_starts=cold_starts, inits=inits, queries=queries, trains=trains)
    return plan_tasks(cells, resolve_seeds(seeds, shared.preset),
                      list(range(shared.run_seed, shared.run_seed + int(ssl_seeds))), run_seed=shared.run_seed,
                      full_seeds=full_seeds)


def is_done(task: Task, shared: Shared) -> bool:
    """Whether ``task`` finished; a finished cell made with other settings is an error, not a silent mix.

    A cell finished with fewer budgets than now asked for is not done: it continues with the new rounds.
    """
    finished = read_done(task.directory(shared.out_dir))
    if finished is None:
        return False
    wanted = loop_config(task, shared)
    recorded = LoopConfig.from_dict(finished.config)
    if recorded == wanted:
        return True
    if wanted.extends(recorded):
        return False
    have, want = recorded.to_dict(), wanted.to_dict()
    diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    raise SaalError(f"{task.directory(shared.out_dir)} was run with other settings ({', '.join(diff)}); "
                    "use a new --out directory to change them")


def run_task(task: Task, shared: Shared, *, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) one cell's loop and mark it finished; the caller holds its lock."""
    directory = task.directory(shared.out_dir)
    config = loop_config(task, shared)
    me = current_owner()
    started = time.time()
    append_jsonl(directory / RUNS_LOG, [{"event": "start", "pid": me.pid, "host": me.host, "time": started}])
    encoder = shared.encoders[task.ssl_seed]
    records = run_simulated(directory, shared.pool, shared.test, config=config, features=encoder.features,
                            ssl_state=encoder.state if task.cell.init == "ssl" else None, progress=progress)
    write_done(directory, task.cell, task.seed, task.ssl_seed, config.to_dict(), records)
    append_jsonl(directory / RUNS_LOG, [{"event": "done", "pid": me.pid, "host": me.host, "time": time.time(),
                                         "seconds": round(time.time() - started, 2)}])
    return records


def claim_loop(tasks: Sequence[Task], shared: Shared, *, wait: bool, progress: bool = True,
               on_done: Callable[[Task, list[dict[str, Any]]], None] | None = None) -> None:
    """Run every unfinished task this process can claim; with ``wait``, also wait for the others' tasks.

    A task held by another live process is skipped; when ``wait`` is set, this process then sleeps
    until that task is finished, or runs it itself when its holder died (stale lock).
    """
    told: set[Task] = set()
    while True:
        pending = [t for t in tasks if not is_done(t, shared)]
        if not pending:
            return
        ran = False
        for task in pending:
            lock = FileLock(task.lock_path(shared.out_dir))
            if not lock.acquire():
                continue
            try:
                if is_done(task, shared):  # finished between the check and the claim
                    continue
                records = run_task(task, shared, progress=progress)
                ran = True
                if on_done is not None:
                    on_done(task, records)
            finally:
                lock.release()
        if not wait:
            if not ran:
                return
            continue
        if not ran:
            for task in pending:
                holder = FileLock(task.lock_path(shared.out_dir)).holder()
                if progress and task not in told and holder is not None:
                    _say(f"waiting for {task.label}, held by {holder.describe()}")
                    told.add(task)
            time.sleep(_POLL_S)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a spawned worker needs to open the same experiment (picklable)."""

    out_dir: str
    data: str | None
    preset: Preset
    tasks: tuple[Task, ...]
    ssl_seeds: int = 1
    data_options: dict = field(default_factory=dict)


def _worker(spec: WorkerSpec) -> None:
    """Entry point of a worker process: one torch thread, no progress bars, claim until nothing is free."""
    import torch

    torch.set_num_threads(1)
    shared = prepare(spec.out_dir, data=spec.data, preset=spec.preset, ssl_seeds=spec.ssl_seeds, progress=False,
                     **spec.data_options)
    claim_loop(spec.tasks, shared, wait=False, progress=False)


def _run_workers(n: int, spec: WorkerSpec, tasks: Sequence[Task], shared: Shared, progress: bool) -> None:
    """Run ``n`` spawned worker processes to completion, showing finished cells as they come."""
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker, args=(spec,), name=f"saal-worker-{i}") for i in range(n)]
    for p in procs:
        p.start()
    try:
        with _cells_bar(progress, len(tasks)) as update:
            while any(p.is_alive() for p in procs):
                update(sum(is_done(t, shared) for t in tasks))
                time.sleep(1.0)
            update(sum(is_done(t, shared) for t in tasks))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():  # interrupted: its lock goes stale and is taken over by the next run
                p.terminate()
                p.join()
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed and progress:
        _say(f"{', '.join(failed)} stopped with an error; running what is left in this process")


def run_experiment(out_dir: str | os.PathLike, *, data: str | os.PathLike | None = None,
                   preset: Preset | str | None = None, seeds: int | Iterable[int] | None = None,
                   cold_starts: str | Iterable[str] | None = None, inits: str | Iterable[str] | None = None,
                   queries: str | Iterable[str] | None = None, trains: str | Iterable[str] | None = None,
                   ssl_seeds: int = 1, full_seeds: int | None = None, workers: int = 1, report: bool = True,
                   device: str | None = None, progress: bool = True, **data_options: Any) -> Path:
    """Run the matrix in ``out_dir`` and write ``results.csv`` (returned), the summary and the report.

    ``data``: a dataset folder (None: the embedded synthetic set). ``preset``: a name or a
    :class:`~saal.config.Preset` (None: ``demo`` for a new directory, the recorded one otherwise).
    ``seeds``: a count or a list (None: the preset's). ``cold_starts`` / ``inits`` / ``queries`` / ``trains``:
    the matrix, see :func:`~saal.experiments.matrix.build_matrix`. ``ssl_seeds``: how many
    self-supervised pretraining runs every cell and seed is repeated on (seeds run seed, run seed + 1,
    ...), so that the pretraining is sampled too. ``full_seeds``: how many seeds of each pretraining
    also run the full-supervision reference (None: all). ``workers`` > 1 runs that many local worker
    processes. ``report=False`` stops after ``results.csv`` (no summary, figures or HTML). ``device``
    (``auto``, ``cpu`` or ``cuda``; None: ``auto``) is where this process and its workers train.
    ``data_options`` go to :func:`saal.workspace.open_workspace` (``split_mode``, ``skip_bad``, ``seed``).
    """
    if int(workers) < 1:
        raise SaalError(f"--workers: need at least 1, got {workers}")
    if device is not None:
        use_device(device)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    check_matrix_options(preset, seeds=seeds, cold_starts=cold_starts, inits=inits, queries=queries,
                         trains=trains, full_seeds=full_seeds)
    shared = prepare(out_dir, data=data, preset=preset, ssl_seeds=ssl_seeds, progress=progress, **data_options)
    tasks = plan_experiment(shared, seeds=seeds, cold_starts=cold_starts, inits=inits, queries=queries,
                            trains=trains, ssl_seeds=ssl_seeds, full_seeds=full_seeds)
    pending = [t for t in tasks if not is_done(t, shared)]
    if progress:
        _say(f"{len(tasks) - len(pending)} of {len(tasks)} cells already finished in {out_dir}")
    if pending and workers > 1:
        spec = WorkerSpec(str(out_dir), None if data is None else str(data), shared.preset, tuple(pending),
                          int(ssl_seeds), dict(data_options))
        _run_workers(min(int(workers), len(pending)), spec, pending, shared, progress)

    def finished(task: Task, records: list[dict[str, Any]]) -> None:
        if progress:
            last = records[-1]
            dice = f", Dice {100 * last['dice']:.1f}" if last.get("dice") is not None else ""
            _say(f"finished {task.label} ({last['n_labeled']} labels{dice})")

    claim_loop(tasks, shared, wait=True, progress=progress, on_done=finished)
    results, rows = collect_results(out_dir, [t.cell for t in tasks], run_seed=shared.run_seed)
    if report:
        write_experiment_report(out_dir, shared, progress=progress)
    if progress:
        _say(f"{len(rows)} result rows in {results} ({time.perf_counter() - started:.0f} s)")
    return results


@dataclass(frozen=True)
class ReportOutcome:
    """What :func:`report_experiment` wrote, and which planned tasks it could not include."""

    results: Path
    planned: int
    unfinished: tuple[Task, ...]


def report_experiment(out_dir: str | os.PathLike, *, seeds: int | Iterable[int] | None = None,
                      cold_starts: str | Iterable[str] | None = None, inits: str | Iterable[str] | None = None,
                      queries: str | Iterable[str] | None = None, trains: str | Iterable[str] | None = None,
                      ssl_seeds: int = 1, full_seeds: int | None = None,
                      progress: bool = True) -> ReportOutcome:
    """``--report-only``: ``results.csv``, the summary and the report from the finished tasks; runs no task.

    The matrix options say which tasks were planned, only to count the unfinished ones: the table holds every
    finished cell under ``cells/`` whatever they ask. Some unfinished is not an error here: the files are
    written from what exists and the caller decides (the command line then exits with an error naming the
    count, so a script notices the table is partial). Nothing finished at all is an error, and writes nothing.
    Like every report, it retrains one cell's first round for the prediction pictures (kept in ``report/``).
    """
    out_dir = Path(out_dir)
    if not (out_dir / RUN_FILE).is_file():
        raise SaalError(f"--out {out_dir}: no experiment here (no {RUN_FILE}); --report-only reports a directory "
                        "that 'saal experiment' has run in")
    shared = open_experiment(out_dir, progress=progress)
    tasks = plan_experiment(shared, seeds=seeds, cold_starts=cold_starts, inits=inits, queries=queries,
                            trains=trains, ssl_seeds=ssl_seeds, full_seeds=full_seeds)
    finished = finished_cells(out_dir)
    if not finished:
        raise SaalError(f"{out_dir}: none of its {len(tasks)} planned tasks has finished yet; nothing to report")
    unfinished = tuple(t for t in tasks if not is_done(t, shared))
    # Only the pretraining runs the finished cells used: those exist, so this loads and never pretrains.
    used = max(shared.run_seed if f.ssl_seed is None else f.ssl_seed for f in finished)
    shared = prepare(out_dir, ssl_seeds=max(1, used - shared.run_seed + 1), progress=progress)
    results, rows = collect_results(out_dir, [t.cell for t in tasks], run_seed=shared.run_seed)
    write_experiment_report(out_dir, shared, progress=progress)
    if progress:
        _say(f"{len(rows)} result rows in {results}; {len(tasks) - len(unfinished)} of {len(tasks)} planned tasks "
             "finished")
    return ReportOutcome(results, len(tasks), unfinished)


@contextmanager
def _cells_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar of finished cells (nothing when disabled); yields ``update(done)``."""
    if not enabled:
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("cells", total=total)
        yield lambda done: bar.update(task, completed=done)
