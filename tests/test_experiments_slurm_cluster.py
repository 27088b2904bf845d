"""``saal experiment --launcher slurm`` against a real Slurm: sbatch, job arrays, dependencies, sacct, scancel.

submitit's local executor (tests/test_experiments_slurm.py) has no dependencies, arrays, accounting or
cancellation; this runs the same matrix through a one-node cluster on this machine, started by
``scripts/slurm-local.sh start`` (munged, MariaDB + slurmdbd, slurmctld, slurmd; CI starts it when the Debian
packages install). The test needs ``SAAL_SLURM`` (the cluster's slurm.conf, which ``scripts/slurm-local.sh env``
prints) and ``sinfo`` answering; it is skipped otherwise. At the end it stops that cluster.

What it checks: the prepare job ends before any array task starts (afterok), one array task per unfinished task,
each running the task the launcher recorded for its index, the report after the last array task; a resubmission
while the jobs are queued submits nothing; a task cancelled mid-run (suspended, then ``scancel``) is the only
one submitted again, its lock is freed through sacct and its rounds are not counted twice; the results equal the local
launcher's; a last resubmission submits nothing. And a failing prepare job cancels the array instead of leaving
it queued for ever.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from saal.errors import SaalError
from saal.experiments.collect import DONE_FILE
from saal.experiments.runner import RUNS_LOG, run_experiment
from saal.experiments.slurm import SLURM_DIR, SUBMISSIONS_LOG, SlurmOptions, submit_experiment
from saal.io import read_jsonl
from test_experiments_slurm import MATRIX, TINY, _rows

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm-local.sh"
CONF = os.environ.get("SAAL_SLURM", "")


def _skip_reason() -> str | None:
    if not CONF:
        return ("no local Slurm cluster: as root, 'scripts/slurm-local.sh start' then "
                "eval \"$(scripts/slurm-local.sh env)\" (CI does this when the Slurm packages install)")
    if not Path(CONF).is_file():
        return f"SAAL_SLURM={CONF}, which does not exist: the cluster is stopped ('scripts/slurm-local.sh start')"
    try:
        subprocess.run(["sinfo", "-h"], env={**os.environ, "SLURM_CONF": CONF}, capture_output=True, check=True,
                       timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"SAAL_SLURM={CONF}, but sinfo does not answer ({exc})"
    return None


SKIP = _skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]
pytest.importorskip("submitit")
from submitit.slurm.slurm import SlurmInfoWatcher  # noqa: E402  (sacct's parser; skipped above without submitit)

# TINY with three rounds of 20 steps: a task computes for a second or two, so that it can be stopped between its
# first and its last round.
PRESET = TINY.with_overrides(seg_steps=20, budgets=(2, 4, 6))
JOBS = SlurmOptions(time_min=10, cpus=1)  # one CPU, i.e. one torch thread per job, as the local reference
WAIT_S = 300


@pytest.fixture(scope="module")
def cluster():
    """The running cluster (its slurm.conf for every Slurm command); stopped at the end of the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", CONF)
        yield CONF
    subprocess.run([str(SCRIPT), "stop"], env={**os.environ, "SAAL_SLURM_DIR": str(Path(CONF).parent)},
                   check=False, timeout=120)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory) -> Path:
    """The matrix through the local launcher, in this process, one thread, no report."""
    out = tmp_path_factory.mktemp("local") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(out, preset=PRESET, report=False, progress=False, **MATRIX)
    finally:
        torch.set_num_threads(before)
    return out


def _accounting(*job_ids: str) -> dict[str, dict[str, str]]:
    """sacct's record of each job (array tasks one by one, a still unsplit pending range expanded)."""
    arrays = sorted({str(j).split("_", 1)[0] for j in job_ids})
    output = subprocess.run(["sacct", "-X", "--parsable2", "-o", "JobID,State,Start,End,NodeList",
                             *[f"--jobs={a}" for a in arrays]], capture_output=True, text=True, check=True,
                            timeout=60).stdout
    return SlurmInfoWatcher().read_info(output)


def _ended(record: dict[str, str] | None) -> bool:
    return record is not None and record["State"].split()[0] not in (
        "PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "COMPLETING", "CONFIGURING")


def _wait_until(condition: Callable[[], bool], what: str, out: Path, every_s: float) -> None:
    """Poll ``condition``; after WAIT_S, fail with the queue and the jobs' error logs."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((out / SLURM_DIR).glob("*.err")))
            pytest.fail(f"{what}: not after {WAIT_S} s\nsqueue:\n{queue}\n{logs}")
        time.sleep(every_s)


def _wait_for_jobs(out: Path, *job_ids: str) -> dict[str, dict[str, str]]:
    """Wait until every job has ended; their sacct records."""
    records: dict[str, dict[str, str]] = {}

    def all_ended() -> bool:
        records.update(_accounting(*job_ids))
        return all(_ended(records.get(str(j))) for j in job_ids)

    _wait_until(all_ended, f"jobs {', '.join(map(str, job_ids))} to end", out, every_s=1.0)  # sacct is no file
    return records


def _events(out: Path, task) -> list[str]:
    return [e["event"] for e in read_jsonl(task.directory(out) / RUNS_LOG)]


def test_experiment_matrix_through_sbatch_cancel_and_resubmit(cluster, local_reference, tmp_path, capsys):
    out = tmp_path / "exp"
    first = submit_experiment(out, preset=PRESET, slurm=JOBS, progress=False, **MATRIX)
    labels = [t.label for t in first.planned]
    assert len(labels) == 4 and [t.label for t in first.submitted] == labels
    prepare_id, report_id = str(first.prepare.job_id), str(first.report.job_id)
    task_ids = [str(j.job_id) for j in first.tasks]
    array_id = task_ids[0].split("_")[0]
    # One array, one index per unfinished task, and the job scripts run this very Python (the venv's).
    assert task_ids == [f"{array_id}_{i}" for i in range(4)]
    array_script = (out / SLURM_DIR / f"{array_id}_submission.sh").read_text()
    assert f"--dependency=afterok:{prepare_id}" in array_script and "--array=0-3" in array_script
    assert f"--dependency=afterany:{array_id}" in (out / SLURM_DIR / f"{report_id}_submission.sh").read_text()
    assert sys.executable in array_script

    # Resubmitted while all of it is queued or running: nothing is submitted twice.
    capsys.readouterr()
    early = submit_experiment(out, preset=PRESET, slurm=JOBS, progress=True, **MATRIX)
    assert early.submitted == [] and early.prepare is None and early.queued == dict(zip(labels, task_ids))
    assert "4 unfinished tasks are still queued or running in earlier jobs" in capsys.readouterr().err

    # Cancel the last task once its first round is recorded, i.e. mid-run. Suspended first: scancel sends
    # SIGTERM, which submitit ignores, and kills the job only after KillWait and srun's grace (about 5 s here,
    # 30 s and more on clusters), in which a task this small finishes (measured: it did, even with
    # --signal=KILL); a suspended job is killed where it stopped, as a job that outlives the grace is.
    victim = first.submitted[-1]
    rounds_log = victim.directory(out) / "rounds.jsonl"
    _wait_until(lambda: len(read_jsonl(rounds_log)) >= 1, f"{victim.label} to finish its first round", out,
                every_s=0.05)
    subprocess.run(["scontrol", "suspend", task_ids[-1]], check=True, timeout=60)
    subprocess.run(["scancel", task_ids[-1]], check=True, timeout=60)
    jobs = _wait_for_jobs(out, prepare_id, *task_ids, report_id)

    assert [jobs[j]["State"].split()[0] for j in (prepare_id, *task_ids, report_id)] == \
        ["COMPLETED"] * 4 + ["CANCELLED", "COMPLETED"]
    # afterok: no array task started before the prepare job ended; afterany: the report after the last task.
    assert min(jobs[j]["Start"] for j in task_ids) >= jobs[prepare_id]["End"]
    assert jobs[report_id]["Start"] >= max(jobs[j]["End"] for j in task_ids)
    # Each array index ran the task recorded for it (the job returns its task's label).
    recorded = {r["id"]: r["task"] for r in read_jsonl(out / SLURM_DIR / SUBMISSIONS_LOG) if r["job"] == "task"}
    for job_id in task_ids[:-1]:
        with open(out / SLURM_DIR / f"{job_id}_0_result.pkl", "rb") as fh:
            assert pickle.load(fh) == ("success", recorded[job_id])
    # The victim was stopped mid-run: no done.json, its lock left behind; the report covers the other three.
    assert not (victim.directory(out) / DONE_FILE).exists() and victim.lock_path(out).exists()
    assert _events(out, victim) == ["start"]
    assert {(r["cell"], r["seed"]) for r in _rows(out / "results.csv")} == \
        {(t.cell.name, str(t.seed)) for t in first.planned if t != victim}

    # Resubmission: sacct says the victim's job was cancelled on this node, so its lock goes; it alone reruns,
    # resumes after its recorded rounds, and the table equals the local launcher's.
    second = submit_experiment(out, preset=PRESET, slurm=JOBS, wait=True, progress=True, **MATRIX)
    assert f"deleted the locks of 1 tasks whose job Slurm ended ({victim.label})" in capsys.readouterr().err
    assert [t.label for t in second.submitted] == [victim.label] and len(second.tasks) == 1
    assert not second.failed and not second.queued and not second.outcome.unfinished
    assert _rows(out / "results.csv") == _rows(local_reference / "results.csv")
    assert _events(out, victim) == ["start", "start", "done"]
    assert all(_events(out, t) == ["start", "done"] for t in first.planned if t != victim)
    rounds = [r["round"] for r in read_jsonl(rounds_log)]
    assert rounds == sorted(set(rounds)) == [0, 1, 2]
    assert not list((out / "locks").glob("*.lock"))

    third = submit_experiment(out, preset=PRESET, slurm=JOBS, progress=False, **MATRIX)
    assert third.submitted == [] and third.prepare is None and not third.queued


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a prepare job that fails: --device cuda without CUDA")
def test_a_failed_prepare_job_cancels_the_array_instead_of_leaving_it_queued(cluster, tmp_path):
    out = tmp_path / "fails"
    with pytest.raises(SaalError, match=r"the shared-stage job \d+ failed: .*--device cuda: torch sees no CUDA"):
        submit_experiment(out, preset=TINY, slurm=JOBS, device="cuda", wait=True, progress=False, **MATRIX)
    jobs = [r["id"] for r in read_jsonl(out / SLURM_DIR / SUBMISSIONS_LOG)]
    states = _wait_for_jobs(out, *jobs)
    assert [states[j]["State"].split()[0] for j in jobs] == ["FAILED"] + ["CANCELLED"] * 4 + ["FAILED"]
