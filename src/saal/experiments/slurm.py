"""``saal experiment --launcher slurm``: the same experiment as Slurm jobs, submitted through submitit.

Why a launcher next to the lock files: on a cluster the scheduler, not a process that lives as long as the
experiment, decides where and when work runs. So the work is cut into jobs that each reopen the experiment
from its directory (nothing but the directory is shared, as for local workers):

1. **prepare**: the shared stage (:func:`~saal.experiments.runner.prepare`: workspace, pretraining, pool
   features), one job;
2. **tasks**: one job of a job array per unfinished (cell, seed) task, each after the prepare job. A task
   job runs its task through the same :func:`~saal.experiments.runner.claim_loop` and
   :func:`~saal.experiments.runner.run_task` as the local launcher: it takes the task's lock file (which
   also keeps a concurrent local ``saal experiment`` off it) and writes ``done.json``;
3. **report**: one job after every task job (``afterany``: the report of a partial run is still written,
   and names what is missing), running :func:`~saal.experiments.runner.report_experiment`.

Ordering. On Slurm the array depends on the prepare job (``--dependency=afterok:<prepare job>``) and the
report on the array (``afterany:<array job>``), so the submitting command returns at once unless told to
wait. A failed prepare job gets the array cancelled (``--kill-on-invalid-dep=yes``: Slurm's default would
keep it queued for ever), and waiting names the prepare job's error. submitit's local executor
(``cluster="local"``: jobs as processes of this machine, for tests and a dry run of the job functions) has
no dependencies, so the submitter orders by waiting instead: it waits for the prepare job's result before
submitting the array, and for every task job before submitting the report; with that executor the command
always waits.

Resubmission submits only what is not done: the shared stage job (quick when its products exist) and the
tasks without ``done.json`` whose last job Slurm no longer holds (squeue); nothing at all when every task is
finished, or queued or running already. A task job whose lock is held by another live process does not
wait for it (a job killed on another node leaves a lock no process there can prove stale): it fails, naming
the holder. A resubmission asks Slurm (sacct) first and deletes the locks of task jobs it reports as ended
(:func:`free_locks_of_ended_jobs`); any other lock is checked by hand.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..config import Preset
from ..errors import SaalError
from ..io import append_jsonl, read_jsonl
from ..progress import say
from ..runtime import check_device, use_device
from ..locks import FileLock
from .runner import (ReportOutcome, check_matrix_options, check_out_dir, claim_loop, is_done, open_experiment,
                     plan_experiment, prepare, report_experiment)
from .tasks import Task

#: Where submitit writes its job scripts, pickles and logs, under the experiment directory.
SLURM_DIR = "slurm"
SUBMISSIONS_LOG = "submissions.jsonl"  # in SLURM_DIR: one line per submitted job, for the record
CLUSTERS = ("slurm", "local")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of every job, and which submitit executor runs them.

    ``gpus``, ``time_min``, ``mem_gb`` and ``cpus`` are per job; ``extra`` goes to sbatch as
    ``#SBATCH --KEY=VALUE`` lines (submitit's ``slurm_additional_parameters``); ``array_parallelism``
    caps the task jobs running at once (None: submitit's default). ``cluster="local"`` runs the jobs as
    local processes through submitit's local executor (tests, debugging), which ignores the Slurm-only
    settings.
    """

    partition: str | None = None
    gpus: int = 0
    time_min: int = 240
    mem_gb: float | None = None
    cpus: int = 1
    extra: tuple[tuple[str, str], ...] = ()
    array_parallelism: int | None = None
    cluster: str = "slurm"

    def validated(self) -> "SlurmOptions":
        """``self``, after checking every field (SaalError naming the option)."""
        if self.gpus < 0:
            raise SaalError(f"--slurm-gpus: need 0 or more GPUs per job, got {self.gpus}")
        if self.time_min < 1:
            raise SaalError(f"--slurm-time: need at least 1 minute per job, got {self.time_min}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise SaalError(f"--slurm-mem: need a positive number of GB, got {self.mem_gb}")
        if self.cpus < 1:
            raise SaalError(f"--slurm-cpus: need at least 1 CPU per job, got {self.cpus}")
        if self.array_parallelism is not None and self.array_parallelism < 1:
            raise SaalError(f"--slurm-array-parallelism: need at least 1, got {self.array_parallelism}")
        if self.cluster not in CLUSTERS:
            raise SaalError(f"cluster: choose {' or '.join(CLUSTERS)}, got {self.cluster!r}")
        if "dependency" in dict(self.extra):
            raise SaalError("--slurm-option dependency=...: the launcher sets the jobs' dependencies itself")
        return self


def parse_slurm_options(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``--slurm-option KEY=VALUE`` values as (key, value) pairs; ``--qos=high`` and ``qos=high`` both work."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not value:
            raise SaalError(f"--slurm-option: expected KEY=VALUE (e.g. qos=high), got {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs to reopen the experiment (picklable: it travels in submitit's job file)."""

    out_dir: str
    data: str | None
    preset: Preset
    ssl_seeds: int = 1
    data_options: dict = field(default_factory=dict)
    device: str = "auto"
    threads: int = 1


def _enter(spec: JobSpec) -> None:
    """Start of every job: the threads it was given (not every core of the node) and the chosen device."""
    import torch

    torch.set_num_threads(spec.threads)
    use_device(spec.device)


def _shared(spec: JobSpec):
    return prepare(spec.out_dir, data=spec.data, preset=spec.preset, ssl_seeds=spec.ssl_seeds, progress=False,
                   **spec.data_options)


def prepare_job(spec: JobSpec) -> int:
    """Job 1: the shared stage (pretraining and features); returns how many pretraining runs it holds."""
    _enter(spec)
    return len(_shared(spec).encoders)


def task_job(spec: JobSpec, task: Task) -> str:
    """One task of the array: claim its lock, run it through the local launcher's code, mark it done."""
    _enter(spec)
    shared = _shared(spec)
    claim_loop([task], shared, wait=False, progress=False)
    if not is_done(task, shared):
        holder = FileLock(task.lock_path(shared.out_dir)).holder()
        who = holder.describe() if holder is not None else "another process"
        raise SaalError(f"{task.label}: {task.lock_path(shared.out_dir)} is held by {who}; if that process is "
                        "gone, delete the file and resubmit")
    return task.label


def report_job(spec: JobSpec, matrix: dict[str, Any]) -> ReportOutcome:
    """The last job: ``results.csv``, summary and report from whatever finished."""
    _enter(spec)
    return report_experiment(spec.out_dir, ssl_seeds=spec.ssl_seeds, progress=False, **matrix)


@dataclass
class Submission:
    """What one submission did: the planned tasks, those it submitted, and the submitit jobs."""

    planned: list[Task]
    submitted: list[Task]
    prepare: Any = None  # submitit Job, None when nothing was submitted
    tasks: list[Any] = field(default_factory=list)
    report: Any = None
    outcome: ReportOutcome | None = None  # set when the submitter waited for the report
    failed: list[str] = field(default_factory=list)  # task labels whose job failed (known only when waited)
    queued: dict[str, str] = field(default_factory=dict)  # unfinished task label -> its earlier job, still queued


def _submitit():
    try:
        import submitit
    except ImportError:
        raise SaalError("--launcher slurm needs submitit: pip install 'saal[slurm]' (or pip install submitit)") \
            from None
    return submitit


def _executor(folder: Path, options: SlurmOptions):
    submitit = _submitit()
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
    except RuntimeError as exc:  # no sbatch / srun on this machine
        raise SaalError(f"--launcher slurm: {exc} (submit from a machine of the cluster)") from None
    executor.update_parameters(timeout_min=options.time_min, cpus_per_task=options.cpus, gpus_per_node=options.gpus,
                               mem_gb=options.mem_gb, slurm_partition=options.partition,
                               slurm_array_parallelism=options.array_parallelism)
    return executor


def _depend(executor, options: SlurmOptions, dependency: str | None) -> None:
    """Set the next jobs' Slurm dependency (with the user's pass-through options, which it must not replace).

    A dependent job also gets ``--kill-on-invalid-dep=yes`` (unless the user chose otherwise): Slurm's
    default keeps a job whose dependency can never be met pending for ever (``DependencyNeverSatisfied``),
    so a failed prepare job would leave the whole array and the report queued, and ``--wait`` waiting, with
    nothing to say why.
    """
    extra = dict(options.extra)
    if dependency is not None:
        extra["dependency"] = dependency
        extra.setdefault("kill_on_invalid_dep", "yes")
    executor.update_parameters(slurm_additional_parameters=extra)


def _array_id(job) -> str:
    """The Slurm id of the array a task job belongs to (``1234_5`` -> ``1234``)."""
    return str(job.job_id).split("_", 1)[0]


def submit_experiment(out_dir: str | os.PathLike, *, data: str | os.PathLike | None = None,
                      preset: Preset | str | None = None, seeds: int | Iterable[int] | None = None,
                      cold_starts: str | Iterable[str] | None = None, inits: str | Iterable[str] | None = None,
                      queries: str | Iterable[str] | None = None, trains: str | Iterable[str] | None = None,
                      ssl_seeds: int = 1, full_seeds: int | None = None,
                      slurm: SlurmOptions | None = None, wait: bool = False, device: str = "auto",
                      progress: bool = True, **data_options: Any) -> Submission:
    """Submit the experiment's unfinished work as jobs (see the module docstring); the options are
    :func:`~saal.experiments.runner.run_experiment`'s.

    The submitter opens the workspace (creating it for a new directory: data import and split, no
    training) to tell which tasks are done; the jobs do the rest. ``wait`` blocks until the report job has
    finished and returns its outcome (always the case with ``cluster="local"``). submitit writes its files
    to ``OUT/slurm/``.
    """
    options = (slurm or SlurmOptions()).validated()
    check_device(device)
    if int(ssl_seeds) < 1:
        raise SaalError(f"--ssl-seeds: need at least 1 pretraining run, got {ssl_seeds}")
    check_matrix_options(preset, seeds=seeds, cold_starts=cold_starts, inits=inits, queries=queries,
                         trains=trains, full_seeds=full_seeds)
    out_dir = check_out_dir(Path(out_dir))
    executor = _executor(out_dir / SLURM_DIR, options)  # first: no Slurm here fails before the data is read
    shared = open_experiment(out_dir, data=data, preset=preset, progress=progress, **data_options)
    matrix = dict(seeds=seeds, cold_starts=cold_starts, inits=inits, queries=queries, trains=trains,
                  full_seeds=full_seeds)
    planned = plan_experiment(shared, ssl_seeds=ssl_seeds, **matrix)
    pending = [t for t in planned if not is_done(t, shared)]
    submission = Submission(planned, pending)
    if not pending:
        _say(progress, f"all {len(planned)} tasks are finished in {out_dir}: nothing to submit "
                       "('saal experiment --report-only' rewrites the report)")
        return submission
    if options.cluster == "slurm":
        submission.queued = queued_tasks(out_dir, pending, _live_jobs(out_dir, pending))
        if submission.queued:
            labels = list(submission.queued)
            _say(progress, f"{len(labels)} unfinished tasks are still queued or running in earlier jobs "
                           f"({', '.join(f'{t} in {submission.queued[t]}' for t in labels[:3])}"
                           f"{', ...' if len(labels) > 3 else ''}): not submitted again (scancel those jobs to "
                           "resubmit them)")
            pending = submission.submitted = [t for t in pending if t.label not in submission.queued]
            if not pending:
                return submission
        freed = free_locks_of_ended_jobs(out_dir, pending, _sacct_state(out_dir / SLURM_DIR))
        if freed:
            _say(progress, f"deleted the locks of {len(freed)} tasks whose job Slurm ended ({', '.join(freed[:3])}"
                           f"{', ...' if len(freed) > 3 else ''}); they are submitted again")
    held = [t.label for t in pending if FileLock(t.lock_path(out_dir)).holder() is not None]
    if held:
        _say(progress, f"{len(held)} unfinished tasks have a lock file ({', '.join(held[:3])}...): a job finding "
                       "one held fails and names its holder")

    spec = JobSpec(str(out_dir), None if data is None else str(data), shared.preset, int(ssl_seeds),
                   dict(data_options), device, options.cpus)
    local = options.cluster == "local"
    log = out_dir / SLURM_DIR / SUBMISSIONS_LOG

    _depend(executor, options, None)
    executor.update_parameters(name="saal-prepare")
    submission.prepare = executor.submit(prepare_job, spec)
    append_jsonl(log, [{"job": "prepare", "id": str(submission.prepare.job_id)}])
    if local:  # no dependencies in the local executor: the array starts once the shared stage is done
        _result(submission.prepare, "shared-stage")
    else:
        _depend(executor, options, f"afterok:{submission.prepare.job_id}")
    executor.update_parameters(name="saal-task")
    submission.tasks = executor.map_array(task_job, [spec] * len(pending), pending)
    append_jsonl(log, [{"job": "task", "id": str(j.job_id), "task": t.label}
                       for t, j in zip(pending, submission.tasks)])
    _say(progress, f"submitted the shared stage (job {submission.prepare.job_id}) and {len(pending)} of "
                   f"{len(planned)} tasks (array {_array_id(submission.tasks[0])}); logs in {out_dir / SLURM_DIR}")
    if local:  # likewise, the report starts once every task job has ended
        submission.failed = [t.label for t, j in zip(pending, submission.tasks) if j.exception() is not None]
    else:
        _depend(executor, options, f"afterany:{_array_id(submission.tasks[0])}")
    executor.update_parameters(name="saal-report")
    submission.report = executor.submit(report_job, spec, matrix)
    append_jsonl(log, [{"job": "report", "id": str(submission.report.job_id)}])
    if wait or local:
        if not local:  # a failed shared stage is the cause to name, not the report job's "nothing finished"
            _result(submission.prepare, "shared-stage")
        _say(progress, f"waiting for the report job {submission.report.job_id}")
        submission.failed = submission.failed or [t.label for t, j in zip(pending, submission.tasks)
                                                  if j.exception() is not None]
        submission.outcome = _result(submission.report, "report")
    return submission


#: sacct states of a job that has ended ("CANCELLED by <uid>" starts with CANCELLED).
ENDED_STATES = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE")


def _last_task_jobs(out_dir: Path) -> dict[str, str]:
    """Task label -> the id of the last job submitted for it (``submissions.jsonl``)."""
    return {r["task"]: r["id"] for r in read_jsonl(out_dir / SLURM_DIR / SUBMISSIONS_LOG) if r.get("job") == "task"}


def queued_tasks(out_dir: Path, pending: Iterable[Task], live: set[str]) -> dict[str, str]:
    """The unfinished tasks whose last job is still queued or running (its id in ``live``), as label -> job id.

    Why: a resubmission made while an earlier one still runs (the user did not wait, or reran the command to
    see where things stand) would otherwise submit every unfinished task again; the copies then either find
    the task done (a job slot spent for nothing) or, running at the same time as the first job, fail on its
    lock.
    """
    last = _last_task_jobs(out_dir)
    return {t.label: last[t.label] for t in pending if last.get(t.label) in live}


def _live_jobs(out_dir: Path, pending: Iterable[Task]) -> set[str]:
    """The pending tasks' last jobs that slurmctld still holds pending, running or ending (squeue).

    squeue, not sacct: slurmctld reports jobs to the accounting database asynchronously, and on the
    one-node test cluster sacct did not know an array for several seconds after sbatch returned.
    """
    last = _last_task_jobs(out_dir)
    arrays = sorted({last[t.label].split("_", 1)[0] for t in pending if t.label in last})
    if not arrays:
        return set()
    command = ["squeue", "--noheader", "--array", "--format=%i", f"--jobs={','.join(arrays)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SaalError(f"--launcher slurm: squeue failed ({exc})") from None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every one of them has left slurmctld's memory: none is queued
            return set()
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise SaalError(f"--launcher slurm: {' '.join(command)} failed: {lines[-1] if lines else done.returncode}")
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def free_locks_of_ended_jobs(out_dir: Path, pending: Iterable[Task],
                             state_of: Callable[[str], tuple[str, str]]) -> list[str]:
    """Delete the lock files that task jobs of earlier submissions left behind when Slurm ended them.

    A job killed at its time limit, out of memory or with its node leaves its lock, which no process on
    another host can prove stale. Here the scheduler can: a lock goes when the task's last submitted job
    (``submissions.jsonl``) has ended according to ``state_of(job id) -> (state, node)`` *and* the lock was
    taken on that job's node, so a lock of a process that claimed the task since (a local run elsewhere) stays.
    Returns the labels of the tasks whose lock went.
    """
    last = _last_task_jobs(out_dir)
    freed = []
    for task in pending:
        lock = FileLock(task.lock_path(out_dir))
        holder = lock.holder()
        if holder is None or task.label not in last:
            continue
        state, node = state_of(last[task.label])
        if state.startswith(ENDED_STATES) and node.split(".")[0] == holder.host.split(".")[0]:
            lock.path.unlink(missing_ok=True)
            freed.append(task.label)
    return freed


def _sacct_state(folder: Path) -> Callable[[str], tuple[str, str]]:
    """``job id -> (state, node)`` from sacct through submitit; ("UNKNOWN", "") where sacct cannot tell."""
    submitit = _submitit()

    def state_of(job_id: str) -> tuple[str, str]:
        try:
            info = submitit.SlurmJob(folder=folder, job_id=job_id).get_info(mode="force")
        except Exception:  # no sacct, or no record of the job: keep the lock
            return "UNKNOWN", ""
        return str(info.get("State", "UNKNOWN")), str(info.get("NodeList", ""))

    return state_of


def _result(job, what: str) -> Any:
    """A job's return value; a failed job becomes one SaalError naming its error and its log.

    submitit's FailedJobError holds the job's traceback between dashed lines, then the paths of the logs:
    the error is the traceback's last line, not the message's (which is a log path).
    """
    try:
        return job.result()
    except Exception as exc:  # submitit's FailedJobError / UncompletedJobError
        trace = str(exc).partition("You can check full logs")[0]
        lines = [line.strip() for line in trace.splitlines() if line.strip().strip("-")]
        raise SaalError(f"the {what} job {job.job_id} failed: {lines[-1] if lines else type(exc).__name__} "
                        f"(log: {job.paths.stderr})") from None


def _say(progress: bool, line: str) -> None:
    if progress:
        say(line)
