"""The human-in-the-loop path does what the README says: the run's own plan continues, typos cost nothing,
and no crash, bad file or second process leaves the run wrong (issue 22)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saal.active import loop as loop_module
from saal.active.heuristics import Entropy
from saal.active.queries import Representative
from saal.cli.main import main
from saal.config import get_preset
from saal.errors import SaalError
from saal.io import read_csv, read_json, write_csv
from saal.pipeline import (import_annotations, loop_dir, pool_features, query_next, run_loop_config, select_images,
                           ssl_weights, train_model)
from saal.segmentation import iter_predictions
from saal.selection import make_cold_start
from saal.workspace import LOCK_FILE, open_workspace, run_lock

pytestmark = pytest.mark.slow  # stages end to end on a tiny run

TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8), n_clusters=3)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny run with its pretraining done; tests work on copies of it."""
    run = tmp_path_factory.mktemp("base") / "run"
    ssl_weights(open_workspace(run, preset=TINY, progress=False), progress=False)
    return run


@pytest.fixture
def run(pretrained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pretrained, copy)
    return copy


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


def draw_masks(batch: Path, ws, *, invert: set[str] = frozenset()) -> None:
    """Play the annotator: the ground truth of every exported image into masks/ (inverted for ``invert``)."""
    for row in read_csv(batch / "manifest.csv"):
        mask = ws.pool.masks[ws.pool.ids.index(row["image_id"])].astype(bool)
        mask = ~mask if row["image_id"] in invert else mask
        Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).save(batch / "masks" / f"{row['image_id']}.png")


def annotated_first_batch(run: Path):
    """Select 4 images, export them and draw their masks; the workspace and the batch folder."""
    ws = open_workspace(run, progress=False)
    select_images(ws, 4, progress=False)
    query_next(ws)
    batch = run / "annotate/round_0"
    draw_masks(batch, ws)
    return ws, batch


def round_ids(run: Path, r: int) -> list[str]:
    state = read_json(run / "active/state.json")
    return [e["id"] for e in state["labeled"] if e["round"] == r]


# ------------------------------------------------------------------------------ the run's own plan
def test_query_continues_the_cold_start_and_k_that_select_chose(run):
    r = str(run)
    assert main(["select", "--run", r, "--budget", "4", "--cold-start", "typiclust", "--clusters", "2", "-q"]) == 0
    assert main(["query", "--run", r, "--oracle", "-q"]) == 0
    assert main(["train", "--run", r, "-q"]) == 0
    assert main(["query", "--run", r, "--oracle", "-q"]) == 0  # the default query: cold-start-rule

    ws = open_workspace(run, progress=False)
    feats = pool_features(ws, progress=False)
    first = ws.pool.index_of(round_ids(run, 0))

    def continued(cold_start: str, k: int) -> set[str]:
        rule = Representative(make_cold_start(cold_start, n_clusters=k), seed=ws.seed, name="cold-start-rule")
        return {ws.pool.ids[i] for i in rule.extend(feats, first, 4)}

    assert set(round_ids(run, 1)) == continued("typiclust", 2)
    assert continued("typiclust", 2) != continued(TINY.cold_start, TINY.n_clusters)  # the rules tell apart
    rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["cold_start"] == "typiclust"
    assert read_json(run / "selection/plan.json") == {"cold_start": "typiclust", "n_clusters": 2, "weights": None}
    assert run_loop_config(ws).n_clusters == 2 and run_loop_config(ws).cold_start == "typiclust"


def test_select_keeps_its_k_and_refuses_another(run, capsys):
    r = str(run)
    assert main(["select", "--run", r, "--budget", "4", "--clusters", "2", "-q"]) == 0
    assert main(["select", "--run", r, "--budget", "6", "-q"]) == 0  # grows with the recorded k
    assert read_json(run / "selection/plan.json")["n_clusters"] == 2
    capsys.readouterr()
    assert main(["select", "--run", r, "--budget", "8", "--clusters", "5", "-q"]) == 2
    assert "n_clusters=2" in one_line_error(capsys)
    assert len(read_csv(run / "selection.csv")) == 6


def test_a_stage_uses_the_pretraining_the_run_holds(tmp_path, capsys):
    run = tmp_path / "run"
    open_workspace(run, preset=TINY, progress=False)
    assert main(["pretrain", "--run", str(run), "--epochs", "2", "-q"]) == 0
    capsys.readouterr()
    assert main(["select", "--run", str(run), "--budget", "4", "-q"]) == 0
    assert "as it was made (epochs=2" in capsys.readouterr().err
    assert read_json(run / "ssl/model.json")["training"]["epochs"] == 2  # not redone with the preset's 1


# ------------------------------------------------------------------------------ typos cost nothing
def test_typos_are_refused_in_one_line_before_anything_is_written(run, tmp_path, capsys):
    new = tmp_path / "new"
    for argv in (["pretrain", "--objective", "contastive"], ["select", "--budget", "4", "--cold-start", "typiclst"],
                 ["run", "--query", "entrpy"], ["run", "--train", "semy"], ["select", "--budget", "0"],
                 ["pretrain", "--preset", "dmo"], ["pretrain", "--seed", "-1"]):
        assert main([*argv, "--run", str(new), "-q"]) == 2, argv
        one_line_error(capsys)
        assert not new.exists(), argv

    fresh = tmp_path / "fresh"
    open_workspace(fresh, preset=TINY, progress=False)
    recorded = (fresh / "run.json").read_text()
    assert main(["select", "--run", str(fresh), "--budget", "4", "--cold-start", "bogus", "-q"]) == 2
    assert "--cold-start 'bogus'" in one_line_error(capsys)
    assert not (fresh / "ssl").exists()  # refused before pretraining, not after
    assert main(["pretrain", "--run", str(fresh), "--objective", "contastive", "-q"]) == 2
    one_line_error(capsys)
    assert (fresh / "run.json").read_text() == recorded

    r = str(run)
    assert main(["select", "--run", r, "--budget", "4", "-q"]) == 0
    assert main(["query", "--run", r, "--oracle", "-q", "--query", "entrpy"]) == 2
    one_line_error(capsys)
    assert main(["train", "--run", r, "-q", "--finetune", "contine"]) == 2
    one_line_error(capsys)
    assert not (run / "active").exists()
    assert main(["query", "--run", r, "--oracle", "-q"]) == 0  # the right spelling works in the same run
    assert main(["train", "--run", r, "-q", "--finetune", "continue"]) == 0
    with pytest.raises(SaalError, match="--query 'entrpy'"):
        run_loop_config(open_workspace(run, progress=False), query="entrpy")


# ------------------------------------------------------------------------------ options end to end
def test_finetune_continue_starts_from_the_previous_rounds_model(run, monkeypatch):
    ws = open_workspace(run, progress=False)
    select_images(ws, 4, progress=False)
    query_next(ws, oracle=True)
    train_model(ws, progress=False)
    query_next(ws, oracle=True)
    previous = {k: v.clone() for k, v in loop_dir(ws).load_model("latest")[0].state_dict().items()}
    seen = []
    real = loop_module.train_segmentation

    def spy(labeled, seg, **kw):
        seen.append((kw["init_state"], kw["transfer"]))
        return real(labeled, seg, **kw)

    monkeypatch.setattr(loop_module, "train_segmentation", spy)
    train_model(ws, finetune="continue", progress=False)
    train_model(ws, finetune="restart", progress=False)
    (cont, cont_transfer), (restart, restart_transfer) = seen
    assert cont_transfer == "full" and all(torch.equal(cont[k], previous[k]) for k in previous)
    ssl = torch.load(run / "ssl/weights.pt", weights_only=True)
    assert restart_transfer != "full" and all(torch.equal(restart[k], ssl[k]) for k in ssl)


def test_top10_reduction_reaches_the_query(run):
    ws = open_workspace(run, progress=False)
    select_images(ws, 4, progress=False)
    query_next(ws, oracle=True)
    train_model(ws, progress=False)
    model = loop_dir(ws).load_model("latest")[0]
    active = loop_dir(ws).load_active(ws.pool.ids)
    unlabeled = ws.pool.subset(active.unlabeled_indices)

    def top(reduction: str) -> list[str]:
        scores = Entropy(reduction).score_batches(iter_predictions(model, unlabeled, device="cpu"), n=len(unlabeled))
        return [unlabeled.ids[i] for i in np.argsort(-scores, kind="stable")[:6]]

    assert set(top("top10")) != set(top("mean"))  # the two scores rank differently here
    picked = query_next(ws, query="entropy", reduction="top10", k=6, oracle=True).ids
    assert set(picked) == set(top("top10"))


# ------------------------------------------------------------------------------ reliability
def test_a_second_process_is_refused_and_a_killed_holder_does_not_block(run, capsys):
    _, batch = annotated_first_batch(run)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from saal.workspace import run_lock
        with run_lock({str(run)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["annotate", "import", str(batch), "--run", str(run), "-q"]) == 2
        assert "in use by another saal command" in one_line_error(capsys)
        assert not (run / "active/state.json").exists()
    finally:
        holder.kill()  # kill -9: the lock file stays behind, its process gone
        holder.wait()
    assert (run / LOCK_FILE).exists()
    assert main(["annotate", "import", str(batch), "--run", str(run), "-q"]) == 0
    assert len(read_json(run / "active/state.json")["labeled"]) == 4 and not (run / LOCK_FILE).exists()


def test_the_lock_is_reentrant_within_a_process(run):
    with run_lock(run):
        with run_lock(run):
            assert (run / LOCK_FILE).exists()
        assert (run / LOCK_FILE).exists()
    assert not (run / LOCK_FILE).exists()


def test_a_training_killed_before_its_record_blocks_the_next_query(run, monkeypatch):
    ws = open_workspace(run, progress=False)
    select_images(ws, 4, progress=False)
    query_next(ws, oracle=True)

    def killed(self, record):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(loop_module.LoopDir, "save_record", killed)
        with pytest.raises(KeyboardInterrupt):
            train_model(ws, progress=False)
    assert (run / "active/models/latest.pt").is_file() and not (run / "active/rounds.jsonl").exists()
    with pytest.raises(SaalError, match="stopped before it was recorded"):
        query_next(ws, oracle=True)
    assert not (run / "annotate").exists() and len(read_json(run / "active/state.json")["labeled"]) == 4
    train_model(ws, progress=False)
    assert query_next(ws, oracle=True).round == 1


def test_damaged_files_are_one_line_errors(run, tmp_path, capsys):
    r = str(run)
    assert main(["select", "--run", r, "--budget", "4", "-q"]) == 0
    assert main(["query", "--run", r, "--oracle", "-q"]) == 0
    assert main(["train", "--run", r, "-q"]) == 0
    capsys.readouterr()
    for name, damage in (("active/pending.json", b'{"round": 0, "ids": ["a'),
                         ("active/rounds.jsonl", b'{"round": 0, "n_lab'),
                         ("active/models/latest.pt", b"this is not a weights file\n"),
                         ("run.json", b'{"source": "embedded", "pre')):
        path = run / name
        kept = path.read_bytes()
        path.write_bytes(damage)
        assert main(["query", "--run", r, "--oracle", "-q"]) == 2, name
        assert Path(name).name in one_line_error(capsys)
        path.write_bytes(kept)

    class Evil:
        def __reduce__(self):
            return (print, ("this would have run",))

    evil = tmp_path / "evil.pt"
    torch.save({"weights": Evil()}, evil)
    other = tmp_path / "other"
    open_workspace(other, preset=TINY, progress=False)
    assert main(["select", "--run", str(other), "--budget", "4", "--weights", str(evil), "-q"]) == 2
    assert "refused to load" in one_line_error(capsys)


def test_temporary_files_of_killed_writes_are_removed(run):
    (run / "active").mkdir()
    stale = [run / ".run.json.x1y2.tmp", run / "active/.state.json.abc.tmp"]
    for path in stale:
        path.write_text("half")
    (run / "annotate/.round_0.zz.tmp/images").mkdir(parents=True)
    select_images(open_workspace(run, progress=False), 4, progress=False)
    assert not any(p.exists() for p in stale) and not (run / "annotate/.round_0.zz.tmp").exists()


def test_imports_belong_to_the_batch_the_run_asked_for(run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(run, other)
    ws, ws_other = open_workspace(run, progress=False), open_workspace(other, progress=False)
    select_images(ws, 4, progress=False)
    select_images(ws_other, 4, cold_start="random", progress=False)
    query_next(ws)
    query_next(ws_other)
    batch = run / "annotate/round_0"
    draw_masks(batch, ws)
    assert set(round_ids_of_batch(batch)) != set(round_ids_of_batch(other / "annotate/round_0"))
    assert main(["annotate", "import", str(batch), "--run", str(other), "-q"]) == 2
    assert "not a batch this run asked for" in one_line_error(capsys)
    assert not (other / "active/state.json").exists()

    for round, message in (("7", "not a batch this run asked for"), ("-3", "not a round number")):
        forged = tmp_path / f"forged{round}"
        shutil.copytree(batch, forged)
        rows = read_csv(forged / "manifest.csv")
        write_csv(forged / "manifest.csv", [{**row, "round": round} for row in rows], list(rows[0]))
        assert main(["annotate", "import", str(forged), "--run", str(run), "-q"]) == 2
        assert message in one_line_error(capsys)
    empty = tmp_path / "empty"
    shutil.copytree(batch, empty)
    write_csv(empty / "manifest.csv", [], list(read_csv(batch / "manifest.csv")[0]))
    assert main(["annotate", "import", str(empty), "--run", str(run), "-q"]) == 2
    assert "lists no images" in one_line_error(capsys)
    assert main(["annotate", "import", str(tmp_path / "nowhere"), "--run", str(run), "-q"]) == 2
    assert "not found" in one_line_error(capsys)
    assert not (run / "active/state.json").exists()

    assert main(["annotate", "import", str(batch), "--batch", str(batch), "--run", str(run), "-q"]) == 0
    assert len(read_json(run / "active/state.json")["labeled"]) == 4


def round_ids_of_batch(batch: Path) -> list[str]:
    return [row["image_id"] for row in read_csv(batch / "manifest.csv")]


def test_a_moved_run_still_finds_its_batch(run, tmp_path):
    ws = open_workspace(run, progress=False)
    select_images(ws, 4, progress=False)
    query_next(ws, format="labelstudio")
    assert read_json(run / "active/pending.json")["batch_dir"] == "annotate/round_0"
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    ws = open_workspace(moved, progress=False)
    draw_masks(moved / "annotate/round_0", ws)
    assert len(import_annotations(ws, moved / "annotate/round_0").added) == 4


def test_corrected_masks_replace_imported_ones_and_keep_the_old(run, capsys):
    ws, batch = annotated_first_batch(run)
    assert len(import_annotations(ws, batch).added) == 4
    fixed = round_ids_of_batch(batch)[0]
    draw_masks(batch, ws, invert={fixed})
    before = loop_dir(ws).read_label(fixed)
    assert main(["annotate", "import", str(batch), "--run", str(run)]) == 0
    assert "1 masks differ" in capsys.readouterr().out
    assert np.array_equal(loop_dir(ws).read_label(fixed), before)
    assert main(["annotate", "import", str(batch), "--run", str(run), "--replace"]) == 0
    assert "replaced 1 masks" in capsys.readouterr().out
    assert np.array_equal(loop_dir(ws).read_label(fixed), ~before)
    kept = run / "active/labels/replaced" / f"{fixed}.0.png"
    assert np.array_equal(np.asarray(Image.open(kept)) >= 128, before)
    assert [json.loads(x)["image_id"] for x in (kept.parent / "replaced.jsonl").read_text().splitlines()] == [fixed]
    assert len(read_json(run / "active/state.json")["labeled"]) == 4  # nothing counted twice


def test_embedded_runs_export_batches_below_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open_workspace("runs/x", preset=TINY, progress=False)
    assert main(["select", "--run", "runs/x", "--budget", "4", "-q"]) == 0
    assert main(["query", "--run", "runs/x", "-q"]) == 0
    assert len(list(Path("runs/x/annotate/round_0/images").iterdir())) == 4
