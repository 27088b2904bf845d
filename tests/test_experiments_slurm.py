"""The Slurm launcher (through submitit's local executor), --report-only and the --device option."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from saal.cli import experiment_cmd
from saal.config import get_preset
from saal.errors import SaalError
from saal.experiments.collect import DONE_FILE
from saal.experiments.matrix import build_matrix
from saal.experiments.runner import RUNS_LOG, run_experiment
from saal.experiments.slurm import (SLURM_DIR, SUBMISSIONS_LOG, SlurmOptions, free_locks_of_ended_jobs,
                                    parse_slurm_options, queued_tasks, submit_experiment)
from saal.experiments.tasks import plan_tasks
from saal.io import append_jsonl, read_csv, read_jsonl
from saal.runtime import check_device, resolve_device, use_device

# 2 cells x 2 seeds, no full-supervision reference: 4 tasks of a few optimisation steps on 32 px images.
TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, pool_size=24, test_size=8, synth_n=32, base_width=8, ssl_epochs=1, ssl_batch=8,
    seg_steps=3, seg_batch=4, budgets=(2, 4), seeds=2, n_clusters=2, query="entropy",
)
MATRIX = dict(cold_starts="random,saal", inits="ssl", full_seeds=0)
# One torch thread here and in every job (cpus=1): float sums depend on the threads, and the comparison is exact.
LOCAL_JOBS = SlurmOptions(cluster="local", time_min=10, cpus=1)


def _rows(path: Path) -> list[dict]:
    """results.csv rows without the timing column (the only one that may differ between equal runs)."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in read_csv(path)]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a command group, as in saal.cli.main
    experiment_cmd.register(app)
    return app


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The tiny matrix with the local launcher, in this process, one thread, no report."""
    out = tmp_path_factory.mktemp("local") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(out, preset=TINY, report=False, progress=False, **MATRIX)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.slow
def test_slurm_jobs_match_the_local_launcher_and_resubmit_only_what_is_missing(local_run, tmp_path):
    out = tmp_path / "slurm"
    first = submit_experiment(out, preset=TINY, slurm=LOCAL_JOBS, progress=False, **MATRIX)
    assert len(first.planned) == len(first.submitted) == 4 and not first.failed
    assert first.outcome is not None and not first.outcome.unfinished
    assert _rows(out / "results.csv") == _rows(local_run / "results.csv")
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    assert list((out / SLURM_DIR).glob("*_log.out"))  # submitit's logs live in OUT/slurm/
    assert not list((out / "locks").glob("*.lock"))

    again = submit_experiment(out, preset=TINY, slurm=LOCAL_JOBS, progress=False, **MATRIX)
    assert again.submitted == [] and again.prepare is None and again.report is None

    missing = out / "cells" / "saal-ssl-entropy" / "seed1"
    (missing / DONE_FILE).unlink()
    third = submit_experiment(out, preset=TINY, slurm=LOCAL_JOBS, progress=False, **MATRIX)
    assert [t.label for t in third.submitted] == ["saal-ssl-entropy seed 1"]
    assert _rows(out / "results.csv") == _rows(local_run / "results.csv")
    assert [e["event"] for e in read_jsonl(missing / RUNS_LOG)] == ["start", "done", "start", "done"]
    jobs = [r["job"] for r in read_jsonl(out / SLURM_DIR / "submissions.jsonl")]
    assert jobs == ["prepare"] + ["task"] * 4 + ["report", "prepare", "task", "report"]


@pytest.mark.slow
def test_report_only_writes_what_exists_and_names_the_unfinished(local_run, tmp_path):
    out = tmp_path / "partial"
    shutil.copytree(local_run, out)
    (out / "cells" / "random-ssl-entropy" / "seed0" / DONE_FILE).unlink()
    result = CliRunner().invoke(_app(), ["experiment", "--out", str(out), "--report-only", "--no-progress",
                                         "--cold-starts", "random,saal", "--inits", "ssl", "--full-seeds", "0"])
    assert isinstance(result.exception, SaalError), result.output
    assert "1 of 4 planned tasks are unfinished (random-ssl-entropy seed 0)" in str(result.exception)
    rows = read_csv(out / "results.csv")
    assert {(r["cell"], r["seed"]) for r in rows} == {("random-ssl-entropy", "1"), ("saal-ssl-entropy", "0"),
                                                      ("saal-ssl-entropy", "1")}
    assert (out / "report.html").is_file() and "Dice at 2 labeled images" in result.output
    assert not (out / "cells" / "random-ssl-entropy" / "seed0" / DONE_FILE).exists()  # reported, not run


def test_report_only_needs_an_experiment(tmp_path):
    result = CliRunner().invoke(_app(), ["experiment", "--out", str(tmp_path / "none"), "--report-only"])
    assert isinstance(result.exception, SaalError) and "no experiment here" in str(result.exception)


@pytest.mark.parametrize("options, message", [
    (dict(gpus=-1), "--slurm-gpus"), (dict(time_min=0), "--slurm-time"), (dict(mem_gb=0), "--slurm-mem"),
    (dict(cpus=0), "--slurm-cpus"), (dict(array_parallelism=0), "--slurm-array-parallelism"),
    (dict(extra=(("dependency", "afterok:1"),)), "sets the jobs' dependencies itself"),
])
def test_bad_slurm_options_are_one_line_errors(options, message):
    with pytest.raises(SaalError, match=message):
        SlurmOptions(**options).validated()


def test_slurm_pass_through_options_are_key_value_pairs():
    assert parse_slurm_options(["qos=high", "--account=lab", "mail-type=END"]) == (
        ("qos", "high"), ("account", "lab"), ("mail_type", "END"))
    for bad in ("qos", "=high", "qos="):
        with pytest.raises(SaalError, match="--slurm-option: expected KEY=VALUE"):
            parse_slurm_options([bad])


def test_slurm_options_need_the_slurm_launcher(tmp_path):
    result = CliRunner().invoke(_app(), ["experiment", "--out", str(tmp_path / "x"), "--slurm-gpus", "1"])
    assert isinstance(result.exception, SaalError) and "--slurm-gpus: applies to --launcher slurm only" \
        in str(result.exception)


def test_missing_submitit_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    with pytest.raises(SaalError, match=r"pip install 'saal\[slurm\]'"):
        submit_experiment(tmp_path / "x", preset=TINY, progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine is a Slurm cluster")
def test_slurm_launcher_without_slurm_is_an_error_before_reading_data(tmp_path):
    with pytest.raises(SaalError, match="--launcher slurm: .*submit from a machine of the cluster"):
        submit_experiment(tmp_path / "x", preset=TINY, progress=False)
    assert not (tmp_path / "x" / "run.json").exists()


def test_device_option_sets_what_auto_means(monkeypatch):
    monkeypatch.setenv("SAAL_DEVICE", "auto")  # restored after the test, whatever use_device sets
    with pytest.raises(SaalError, match="--device: choose auto, cpu, cuda"):
        check_device("tpu")
    use_device("cpu")
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(SaalError, match="--device cuda: torch sees no CUDA device"):
            use_device("cuda")



def test_resubmission_frees_only_locks_of_jobs_slurm_ended_on_the_lock_holders_node(tmp_path):
    tasks = plan_tasks(build_matrix(TINY, cold_starts="random", inits="ssl"), [0, 1, 2], [0], full_seeds=0)
    append_jsonl(tmp_path / SLURM_DIR / SUBMISSIONS_LOG,
                 [{"job": "task", "id": f"7_{i}", "task": t.label} for i, t in enumerate(tasks)])
    for task in tasks:
        path = task.lock_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"pid": 1, "host": "node1.cluster", "started": "", "time": 0.0}))
    states = {"7_0": ("TIMEOUT", "node1"), "7_1": ("RUNNING", "node1"), "7_2": ("CANCELLED by 42", "node2")}
    assert free_locks_of_ended_jobs(tmp_path, tasks, states.__getitem__) == [tasks[0].label]
    # running: kept; ended, but the lock was taken on another node (a process that claimed the task since): kept
    assert [t.lock_path(tmp_path).exists() for t in tasks] == [False, True, True]


def test_resubmission_leaves_a_task_to_its_earlier_job_while_slurm_still_holds_it(tmp_path):
    tasks = plan_tasks(build_matrix(TINY, cold_starts="random", inits="ssl"), [0, 1, 2], [0], full_seeds=0)
    append_jsonl(tmp_path / SLURM_DIR / SUBMISSIONS_LOG,
                 [{"job": "task", "id": f"7_{i}", "task": t.label} for i, t in enumerate(tasks)]
                 + [{"job": "task", "id": "9_0", "task": tasks[2].label}])  # task 2 resubmitted since
    # squeue lists 7_0 (pending) and 7_2 (running): only task 0's last job is among them
    assert queued_tasks(tmp_path, tasks, {"7_0", "7_2"}) == {tasks[0].label: "7_0"}
    assert queued_tasks(tmp_path, tasks, set()) == {}


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a job that fails: --device cuda without CUDA")
def test_a_failed_job_is_named_by_its_error_not_by_its_log_path(tmp_path):
    # submitit's message ends with the log paths; the error is the last line of the traceback above them
    with pytest.raises(SaalError, match=r"the shared-stage job \S+ failed: \S*SaalError: --device cuda: torch "
                                        r"sees no CUDA device.* \(log: .*_log\.err\)$"):
        submit_experiment(tmp_path / "x", preset=TINY, slurm=LOCAL_JOBS, device="cuda", progress=False, **MATRIX)
