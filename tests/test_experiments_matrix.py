"""The experiment runner: matrix, locks, end-to-end tiny run, resumability and parallel processes."""

from __future__ import annotations

import json
import multiprocessing
import re
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from saal.cli import experiment_cmd
from saal.config import get_preset
from saal.errors import SaalError
from saal.experiments.collect import DONE_FILE, read_done
from saal.locks import FileLock, LockOwner, current_owner, is_stale, locked, read_owner
from saal.experiments.matrix import FULL_CELL, build_matrix, resolve_seeds
from saal.experiments.runner import RUNS_LOG, run_experiment
from saal.experiments.results import load_results
from saal.io import read_csv, read_jsonl

TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, pool_size=24, test_size=8, synth_n=32, base_width=8, ssl_epochs=1, ssl_batch=8,
    seg_steps=3, seg_batch=4, budgets=(2, 4), seeds=2, n_clusters=2, query="entropy",
)
DEFAULT_NAMES = ["random-ssl-entropy", "random-scratch-entropy", "saal-ssl-entropy", "saal-scratch-entropy",
                 "typiclust-ssl-entropy", "kcenter-ssl-entropy", "saal-typical-ssl-entropy",
                 "saal-typical-scratch-entropy"]  # the paper's 2 x 2, peers, then the preset's cold start x 2
# Every run in this file uses one torch thread, as worker processes do: float sums (and so the trained
# weights) depend on how a reduction is split over threads, and the comparisons below are exact.
THREADS = 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(path: Path, owner: LockOwner) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": owner.pid, "host": owner.host, "started": owner.started, "time": owner.time}))


def _rows(path: Path) -> list[dict]:
    """results.csv rows without the timing column (the only one that may differ between equal runs)."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in read_csv(path)]


# ------------------------------------------------------------------------------------------------ matrix
def test_default_matrix_is_the_papers_comparison_plus_peers():
    cells = build_matrix(TINY)
    assert [c.name for c in cells] == DEFAULT_NAMES
    assert FULL_CELL.name == "full" and FULL_CELL.init == "ssl"
    paper = get_preset("paper")
    assert {c.query for c in build_matrix(paper)} == {"representative"}
    assert {c.query for c in build_matrix(get_preset("demo"))} == {"cold-start-rule"}


def test_matrix_options_choose_cold_starts_inits_and_queries():
    cells = build_matrix(TINY, cold_starts="saal,kcenter", inits=["scratch"], queries="random,bald")
    assert [c.name for c in cells] == ["saal-scratch-random", "saal-scratch-bald", "kcenter-scratch-random",
                                       "kcenter-scratch-bald"]
    assert [c.name for c in build_matrix(TINY, cold_starts="typiclust,random")] == [
        "typiclust-ssl-entropy", "random-ssl-entropy", "random-scratch-entropy"]


@pytest.mark.parametrize("options, message", [
    ({"cold_starts": "saal,nope"}, "--cold-starts: unknown cold start 'nope'"),
    ({"cold_starts": "full"}, "'full' is not a cold start"),
    ({"cold_starts": "saal,,random"}, "--cold-starts: expected a comma-separated list"),
    ({"inits": "ssl,imagenet"}, "--inits: unknown initialisation 'imagenet'"),
    ({"queries": "entropy,entropy"}, "--queries: 'entropy' is listed twice"),
])
def test_bad_matrix_options_are_one_line_errors(options, message):
    with pytest.raises(SaalError, match=message):
        build_matrix(TINY, **options)


def test_seeds_from_count_list_or_preset():
    assert resolve_seeds(None, TINY) == [0, 1]
    assert resolve_seeds(3, TINY) == [0, 1, 2]
    assert resolve_seeds([4, 7], TINY) == [4, 7]
    for bad in (0, [1, 1], [-1]):
        with pytest.raises(SaalError, match="--seeds"):
            resolve_seeds(bad, TINY)


# ------------------------------------------------------------------------------------------------- locks
def test_lock_is_exclusive_until_released(tmp_path):
    first, second = FileLock(tmp_path / "a.lock"), FileLock(tmp_path / "a.lock")
    assert first.acquire()
    owner = read_owner(tmp_path / "a.lock")
    assert owner.pid == os.getpid() and owner.host == socket.gethostname()
    assert not second.acquire()  # held by a live process (this one)
    first.release()
    assert not (tmp_path / "a.lock").exists()
    assert second.acquire()
    second.release()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "cell.lock"
    _write_lock(path, LockOwner(pid=_dead_pid(), host=socket.gethostname(), started="", time=time.time() - 60))
    lock = FileLock(path)
    assert lock.acquire()
    assert read_owner(path).pid == os.getpid()
    lock.release()


def test_locks_of_other_hosts_and_live_processes_are_respected(tmp_path):
    me = current_owner()
    foreign = LockOwner(pid=_dead_pid(), host=me.host + "-elsewhere", started="", time=time.time())
    assert not is_stale(foreign)  # another machine's process cannot be checked from here
    _write_lock(tmp_path / "foreign.lock", foreign)
    assert not FileLock(tmp_path / "foreign.lock").acquire()
    _write_lock(tmp_path / "live.lock", me)
    assert not FileLock(tmp_path / "live.lock").acquire()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_a_reused_pid_does_not_keep_a_lock_alive():
    me = current_owner()
    assert me.started and not is_stale(me)
    assert is_stale(LockOwner(pid=me.pid, host=me.host, started=str(int(me.started) + 1), time=me.time))


# Lock-only child processes: a plain interpreter importing saal.locks (no torch) starts fast.
CLAIM = """
import os, sys, time
from pathlib import Path
from saal.locks import FileLock
lock_path, go, ready, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
ready.touch()
while not go.exists():
    time.sleep(0.01)
lock = FileLock(lock_path)
won = lock.acquire()
(go.parent / f"outcome{os.getpid()}").write_text("won" if won else "lost")
if won:  # keep the lock until every process has tried
    deadline = time.monotonic() + 60
    while len(list(go.parent.glob("outcome*"))) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    lock.release()
"""

HOLD = """
import sys, time
from pathlib import Path
from saal.locks import FileLock
lock = FileLock(sys.argv[1])
assert lock.acquire()
Path(sys.argv[2]).touch()
time.sleep(1.0)
lock.release()
"""


def _wait_for(paths, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, "child processes did not start"
        time.sleep(0.02)


def test_concurrent_claims_have_exactly_one_winner(tmp_path):
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp_path / "x.lock"), str(go), str(r), "4"])
             for r in ready]
    _wait_for(ready)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    outcomes = sorted(f.read_text() for f in tmp_path.glob("outcome*"))
    assert outcomes == ["lost", "lost", "lost", "won"]
    assert not (tmp_path / "x.lock").exists()


def test_locked_waits_for_the_holder(tmp_path):
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "p.lock"), str(ready)])
    _wait_for([ready])
    seen = []
    with locked(tmp_path / "p.lock", poll_s=0.05, on_wait=seen.append) as lock:
        assert lock.held and read_owner(tmp_path / "p.lock").pid == os.getpid()
    assert holder.wait(timeout=60) == 0
    assert [o.pid for o in seen] == [holder.pid]
    assert not (tmp_path / "p.lock").exists()


# ------------------------------------------------------------------------------------------- end to end
@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """The default matrix on the tiny preset, 2 seeds, run once in this process."""
    out = tmp_path_factory.mktemp("exp") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        run_experiment(out, preset=TINY, progress=False)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.slow
def test_run_writes_one_row_per_cell_seed_and_round_plus_full(experiment):
    results = load_results(experiment / "results.csv")
    assert results.cells == DEFAULT_NAMES
    keys = sorted((r.cell, r.seed, r.round, r.n_labeled) for r in results.rows if r.cell != "full")
    assert keys == sorted((s, seed, rnd, b) for s in DEFAULT_NAMES for seed in (0, 1) for rnd, b in enumerate((2, 4)))
    full = results.full_rows
    assert [(r.seed, r.n_labeled, r.cold_start, r.init) for r in full] == [(0, 24, "full", "ssl"),
                                                                             (1, 24, "full", "ssl")]
    assert all(0.0 <= r.dice <= 1.0 for r in results.rows)
    # Cells that share a cold start and seed label the same images in round 0.
    for seed in (0, 1):
        ids = [[r["image_id"] for r in read_csv(experiment / "cells" / name / f"seed{seed}" / "labeled_round_0.csv")]
               for name in ("saal-ssl-entropy", "saal-scratch-entropy")]
        assert ids[0] == ids[1] and len(ids[0]) == 2


@pytest.mark.slow
def test_run_writes_summary_curves_and_a_self_contained_report(experiment):
    summary = (experiment / "summary.md").read_text()
    for name in DEFAULT_NAMES:
        assert name in summary
    assert "worst seed" in summary
    assert (experiment / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
    html = (experiment / "report.html").read_text()
    assert "Images selected for annotation" in html and "Prediction overlays" in html
    assert "saal cold start, seed 0: 2 images, 2 clusters" in html
    assert html.count("data:image/png;base64,") == 1 + 5 + 2  # curves, 5 cold starts, best + worst
    assert "http://" not in html and "https://" not in html and "<script" not in html


@pytest.mark.slow
def test_overlay_model_reproduces_the_cells_round_zero(experiment):
    """The report retrains the best cell's round 0; it must be the model the cell evaluated."""
    (model_dir,) = (experiment / "report" / "models").iterdir()
    name = model_dir.name.rsplit("-seed", 1)[0]
    cell_eval = read_csv(experiment / "cells" / name / "seed0" / "eval" / "round_0.csv")
    assert read_csv(model_dir / "eval" / "round_0.csv") == cell_eval


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_second_run_recomputes_nothing(experiment, one_thread):
    before = _snapshot(experiment / "cells")
    shared_before = (_snapshot(experiment / "ssl") | _snapshot(experiment / "features")
                     | _snapshot(experiment / "report"))
    rows = _rows(experiment / "results.csv")
    run_experiment(experiment, preset=TINY, progress=False)
    assert _snapshot(experiment / "cells") == before
    assert _snapshot(experiment / "ssl") | _snapshot(experiment / "features") | _snapshot(experiment / "report") \
        == shared_before
    assert _rows(experiment / "results.csv") == rows


@pytest.mark.slow
def test_damaged_partial_and_stale_locked_cells_are_resumed(experiment, tmp_path, one_thread):
    out = tmp_path / "copy"
    shutil.copytree(experiment, out)
    cells = out / "cells"
    # 1. a damaged done marker: the loop folder is complete, so nothing is retrained
    (cells / "saal-ssl-entropy" / "seed0" / DONE_FILE).write_text('{"cell": {"cold_')
    finished_rounds = _snapshot(cells / "saal-ssl-entropy" / "seed0" / "eval")
    # 2. killed during round 1: round 1's labels are committed, its record is not
    partial = cells / "random-scratch-entropy" / "seed1"
    (partial / DONE_FILE).unlink()
    rounds = read_jsonl(partial / "rounds.jsonl")
    (partial / "rounds.jsonl").write_text(json.dumps(rounds[0]) + "\n")
    # 3. killed before its first round, leaving its lock behind
    stale = cells / "kcenter-ssl-entropy" / "seed1"
    shutil.rmtree(stale)
    _write_lock(out / "locks" / "kcenter-ssl-entropy-seed1.lock",
                LockOwner(pid=_dead_pid(), host=socket.gethostname(), started="", time=time.time() - 600))

    run_experiment(out, preset=TINY, progress=False)

    assert _rows(out / "results.csv") == _rows(experiment / "results.csv")
    assert read_done(cells / "saal-ssl-entropy" / "seed0") is not None
    assert _snapshot(cells / "saal-ssl-entropy" / "seed0" / "eval") == finished_rounds
    assert [r["round"] for r in read_jsonl(partial / "rounds.jsonl")] == [0, 1]
    assert [e["event"] for e in read_jsonl(partial / RUNS_LOG)] == ["start", "done", "start", "done"]
    assert not (out / "locks" / "kcenter-ssl-entropy-seed1.lock").exists()


@pytest.mark.slow
def test_cli_prints_the_smallest_budget_and_output_paths(experiment, one_thread):
    app = typer.Typer()
    app.callback()(lambda: None)  # a command group, as in saal.cli.main
    experiment_cmd.register(app)
    result = CliRunner().invoke(app, ["experiment", "--out", str(experiment), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Dice at 2 labeled images" in result.output
    assert all(name in result.output for name in DEFAULT_NAMES)
    assert str(experiment / "report.html") in result.output
    bad = CliRunner().invoke(app, ["experiment", "--out", str(experiment), "--cold-starts", "nope"])
    assert isinstance(bad.exception, SaalError) and "--cold-starts" in str(bad.exception)


def _child_run(out: str, workers: int) -> None:
    torch.set_num_threads(THREADS)
    run_experiment(out, preset=TINY, cold_starts="random,saal", inits="ssl", workers=workers, report=False,
                   progress=False)


@pytest.mark.slow
def test_parallel_processes_share_the_work_and_match_one_process(experiment, tmp_path):
    """Two independent processes start at once on a new directory, one of them with two workers."""
    out = tmp_path / "parallel"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child_run, args=(str(out), workers)) for workers in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0]

    names = {"random-ssl-entropy", "saal-ssl-entropy", "full"}
    expected = [r for r in _rows(experiment / "results.csv") if r["cell"] in names]
    assert _rows(out / "results.csv") == expected
    runs = [read_jsonl(out / "cells" / name / f"seed{seed}" / RUNS_LOG) for name in names for seed in (0, 1)]
    assert all([e["event"] for e in log] == ["start", "done"] for log in runs)  # each cell ran exactly once
    assert (out / "features" / "features.npy").read_bytes() == (experiment / "features" / "features.npy").read_bytes()
    assert not list((out / "locks").glob("*.lock"))


def test_budgets_must_fit_the_pool_and_workers_be_positive(tmp_path):
    with pytest.raises(SaalError, match="largest budget 40 of the tiny preset exceeds the pool of 24"):
        run_experiment(tmp_path / "big", preset=TINY.with_overrides(budgets=(2, 40)), progress=False)
    with pytest.raises(SaalError, match="--workers"):
        run_experiment(tmp_path / "w", preset=TINY, workers=0, progress=False)


@pytest.mark.slow
def test_pretraining_seeds_are_replicates_with_their_own_folders(tmp_path, one_thread):
    out = tmp_path / "ssl2"
    run_experiment(out, preset=TINY, seeds=2, cold_starts="random,saal", inits="ssl", ssl_seeds=2, full_seeds=1,
                   progress=False, seed=5)
    for folder in ("ssl/weights.pt", "features/features.npy", "pretraining/seed6/ssl/weights.pt",
                   "pretraining/seed6/features/features.npy"):
        assert (out / folder).is_file(), folder
    assert not (out / "pretraining" / "seed5").exists()  # the run's own pretraining keeps ssl/ and features/
    assert sorted(p.name for p in (out / "cells" / "saal-ssl-entropy").iterdir()) == [
        "seed0", "seed1", "ssl6-seed0", "ssl6-seed1"]
    assert sorted(p.name for p in (out / "cells" / "full").iterdir()) == ["seed0", "ssl6-seed0"]  # full_seeds=1
    results = load_results(out / "results.csv")
    assert results.ssl_seeds == [5, 6]
    assert sorted(results.curves("saal-ssl-entropy")) == [(5, 0), (5, 1), (6, 0), (6, 1)]
    # the two pretraining runs differ, so their features (and the saal picks) may differ; random picks do not
    own = read_csv(out / "cells" / "random-ssl-entropy" / "seed0" / "labeled_round_0.csv")
    other = read_csv(out / "cells" / "random-ssl-entropy" / "ssl6-seed0" / "labeled_round_0.csv")
    assert [r["image_id"] for r in own] == [r["image_id"] for r in other]
    assert not np.array_equal(np.load(out / "features" / "features.npy"),
                              np.load(out / "pretraining" / "seed6" / "features" / "features.npy"))
    summary = (out / "summary.md").read_text()
    assert "replicates (2 pretraining runs x seeds)" in summary
    assert "## Spread by source: pretraining run vs seed" in summary and "| saal-ssl-entropy | 2 | 2 x 2 |" in summary
    assert re.search(r"\| saal-ssl-entropy \| 2 \| [^|]+ \| \d/4 \|", summary)  # paired over the 4 replicates


@pytest.mark.slow
def test_a_finished_cell_grows_to_more_budgets_without_redoing_its_rounds(tmp_path, one_thread):
    out = tmp_path / "grow"
    short = TINY.with_overrides(budgets=(2,))
    run_experiment(out, preset=short, seeds=1, cold_starts="random", inits="scratch", report=False, progress=False)
    cell = out / "cells" / "random-scratch-entropy" / "seed0"
    first = (cell / "eval" / "round_0.csv").read_bytes(), (cell / "eval" / "round_0.csv").stat().st_mtime_ns
    with pytest.raises(SaalError, match="preset settings differ"):  # not an extension: refused, never mixed
        run_experiment(out, preset=short.with_overrides(seg_steps=4), seeds=1, cold_starts="random",
                       inits="scratch", report=False, progress=False)
    run_experiment(out, preset=TINY, seeds=1, cold_starts="random", inits="scratch", report=False, progress=False)
    assert ((cell / "eval" / "round_0.csv").read_bytes(), (cell / "eval" / "round_0.csv").stat().st_mtime_ns) == first
    rows = [r for r in _rows(out / "results.csv") if r["cell"] == "random-scratch-entropy"]
    assert [r["n_labeled"] for r in rows] == ["2", "4"]
    assert json.loads((cell / "config.json").read_text())["budgets"] == [2, 4]
