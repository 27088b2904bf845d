"""The stages wired together on a run directory: saal run, the human-in-the-loop cycle, resume after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saal.active import run_simulated
from saal.active import loop as loop_module
from saal.cli.main import main
from saal.config import get_preset
from saal.data.synth import write_isic_layout
from saal.errors import SaalError
from saal.io import read_csv, write_json
from saal.pipeline import (describe_run, import_annotations, pool_features, query_next, run_all, run_loop_config,
                           select_images, train_model)
from saal.pipeline.report import warm_up_caption
from saal.render.html import inline
from saal.ssl import describe_objective
from saal.workspace import open_workspace

pytestmark = pytest.mark.slow  # every test here runs stages end to end

TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8), n_clusters=3)



@pytest.fixture(scope="module")
def shared_run(tmp_path_factory) -> Path:
    """One tiny `run_all` whose files several tests read."""
    run = tmp_path_factory.mktemp("run")
    ws = open_workspace(run, preset=TINY, progress=False)
    run_all(ws, progress=False)
    return run


def test_run_all_writes_every_stage(shared_run):
    run = shared_run
    for rel in ("run.json", "split/pool.csv", "split/test.csv", "ssl/weights.pt", "features/features.npy",
                "selection.csv", "selection/selected.png", "selection/pool_map.png", "ssl/samples.png",
                "active/state.json", "active/labeled_round_0.csv", "active/labeled_round_1.csv",
                "active/eval/round_1.csv", "active/learning_curve.png", "report.html"):
        assert (run / rel).is_file(), rel
    rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
    assert [(r["round"], r["n_labeled"]) for r in rounds] == [(0, 4), (1, 8)]
    assert all(0 <= r["dice"] <= 1 and r["steps"] == 3 for r in rounds)
    # the loop read the cold-start plan: round 0 labeled exactly the manifest's images
    plan = [r["image_id"] for r in read_csv(run / "selection.csv")]
    assert [r["image_id"] for r in read_csv(run / "active/labeled_round_0.csv")] == plan
    labeled = read_csv(run / "active/labeled_round_1.csv")
    assert len({r["image_id"] for r in labeled}) == 8 and set(plan) <= {r["image_id"] for r in labeled}
    report = (run / "report.html").read_text()
    assert report.count('<div class="card">') == 4  # the cold-start images, one card each
    for image_id in plan:  # each shown in colour and as the model's input, in rank order
        assert report.count(f'alt="{image_id}"') == 1
    assert [report.index(f"#{rank} {image_id}") for rank, image_id in enumerate(plan, start=1)] == sorted(
        report.index(f"#{rank} {image_id}") for rank, image_id in enumerate(plan, start=1))
    rounds_table = report[report.index("<table>"):report.index("</table>")]
    assert rounds_table.count("<tr>") == 1 + 2  # header + one row per round
    for caption in ("Pool map", "Self-supervised warm-up", "Final model (8 labels): best and worst"):
        assert caption in report
    caption = report.split("<h2>Learning curve</h2>")[1].split("</figure>")[0]
    assert "over seeds" not in caption and "full supervision" not in caption  # a single run has neither


def test_report_caption_says_what_the_pretraining_trained(shared_run):
    # the demo preset's objective: genesis+contrastive, which restores (decoder trained) and matches views
    caption = warm_up_caption(open_workspace(shared_run, progress=False))
    assert caption == f"Self-supervised warm-up (genesis+contrastive). {describe_objective('genesis+contrastive')}"
    assert f"<figcaption>{inline(caption)}</figcaption>" in (shared_run / "report.html").read_text()
    assert "damaged input | restored | original" in caption and "the decoder was not trained" not in caption
    assert "random views" in caption


def test_report_caption_follows_the_objective_of_the_pretraining(tmp_path):
    ws = open_workspace(tmp_path, preset=TINY.with_overrides(ssl_objective="genesis"), progress=False)
    caption = warm_up_caption(ws)  # no pretraining finished yet: the preset's objective
    assert caption.startswith("Self-supervised warm-up (genesis). The encoder and the decoder learned to restore")
    assert caption.endswith("damaged input | restored | original.") and "view" not in caption
    write_json(ws.path("ssl", "model.json"), {"training": {"objective": "contrastive"}})  # as a finished one records
    assert warm_up_caption(ws) == f"Self-supervised warm-up (contrastive). {describe_objective('contrastive')}"


def test_rerun_recomputes_nothing(shared_run):
    before = {p: p.stat().st_mtime_ns for p in shared_run.rglob("*.pt")}
    ws = open_workspace(shared_run, progress=False)
    rounds = run_all(ws, progress=False).rounds
    assert len(rounds) == 2
    assert {p: p.stat().st_mtime_ns for p in shared_run.rglob("*.pt")} == before


def test_reopening_with_other_options_is_refused(shared_run):
    with pytest.raises(SaalError, match="disagrees.*--preset cpu"):
        open_workspace(shared_run, preset="cpu", progress=False)
    with pytest.raises(SaalError, match="--seed 3"):
        open_workspace(shared_run, seed=3, progress=False)


def test_selection_extends_and_never_reorders(tmp_path):
    ws = open_workspace(tmp_path / "run", preset=TINY, progress=False)
    first = select_images(ws, 5, progress=False)
    more = select_images(ws, 9, progress=False)
    assert more.ids[:5] == first.ids and len(set(more.ids)) == 9 and more.new_ids == more.ids[5:]
    with pytest.raises(SaalError, match=f"made with cold_start='{TINY.cold_start}'"):
        select_images(ws, 9, cold_start="random", progress=False)
    with pytest.raises(SaalError, match="budget"):
        select_images(ws, 37, progress=False)


def _crash_on_round(monkeypatch, crash_round: int):
    real = loop_module.train_segmentation

    def train(labeled, config, **kw):
        if kw["seed"] % 1000 == crash_round:
            raise KeyboardInterrupt("simulated kill")
        return real(labeled, config, **kw)

    monkeypatch.setattr(loop_module, "train_segmentation", train)


def test_resume_after_a_crash_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    ws = open_workspace(tmp_path / "run", preset=TINY, progress=False)
    feats = pool_features(ws, progress=False)
    config = run_loop_config(ws, budgets=(4, 8, 12), query="entropy", init="scratch", seed=1)
    args = dict(pool=ws.pool, test=ws.test, config=config, features=feats, ssl_state=None, progress=False)
    straight = run_simulated(tmp_path / "straight", **args)

    _crash_on_round(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_simulated(tmp_path / "crashed", **args)
    state = json.loads((tmp_path / "crashed/state.json").read_text())
    assert len(state["labeled"]) == 12  # round 2's labels were committed before its training died
    monkeypatch.undo()
    resumed = run_simulated(tmp_path / "crashed", **args)
    for a, b in zip(straight, resumed):
        assert a["n_labeled"] == b["n_labeled"] and a["dice"] == pytest.approx(b["dice"], abs=1e-6)
    for r in range(3):
        ids = lambda d: [row["image_id"] for row in read_csv(d / f"labeled_round_{r}.csv")]  # noqa: E731
        assert ids(tmp_path / "straight") == ids(tmp_path / "crashed")
    with pytest.raises(SaalError, match="other settings"):
        run_simulated(tmp_path / "crashed", **{**args, "config": run_loop_config(ws, budgets=(4, 8, 12), query="random",
                                                                                 init="scratch", seed=1)})


def _draw_masks(batch: Path, ws, *, size=None, value=255):
    """Play the annotator: save the ground-truth mask of every exported image into masks/."""
    for row in read_csv(batch / "manifest.csv"):
        i = ws.pool.ids.index(row["image_id"])
        mask = (ws.pool.masks[i] * value).astype(np.uint8)
        img = Image.fromarray(mask)
        if size is not None:
            img = img.resize((size, size))
        img.save(batch / "masks" / f"{row['image_id']}_segmentation.png")


def test_human_in_the_loop_cycle_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    ws = open_workspace(run, preset=TINY, progress=False)
    r = str(run)
    assert main(["query", "--run", r, "-q"]) == 2  # nothing selected yet
    assert "saal select" in capsys.readouterr().err
    assert main(["select", "--run", r, "--budget", "4", "-q"]) == 0
    assert main(["train", "--run", r, "-q"]) == 2  # nothing labeled yet
    assert main(["query", "--run", r, "-q"]) == 0
    batch = run / "annotate/round_0"
    assert len(list(batch.glob("images/*.png"))) == 4 and (batch / "masks").is_dir()
    assert main(["query", "--run", r, "-q"]) == 2  # the batch still waits for its masks
    assert "waits for 4 mask" in capsys.readouterr().err

    _draw_masks(batch, ws, value=128)  # not binary
    assert main(["annotate", "import", str(batch), "--run", r, "-q"]) == 2
    _draw_masks(batch, ws, size=40)  # wrong size
    assert main(["annotate", "import", str(batch), "--run", r, "-q"]) == 2
    assert not (run / "active/state.json").exists()  # nothing recorded from the rejected imports
    _draw_masks(batch, ws)
    assert main(["annotate", "import", str(batch), "--run", r, "-q"]) == 0
    assert import_annotations(ws, batch).added == []  # a second import adds nothing

    assert main(["train", "--run", r, "-q"]) == 0
    out = capsys.readouterr().out
    assert "round 0: trained on 4 labeled images" in out and "Dice" in out
    assert main(["query", "--run", r, "-q"]) == 0  # the default query: the cold start continued
    second = run / "annotate/round_1"
    ids = [row["image_id"] for row in read_csv(second / "manifest.csv")]
    assert len(ids) == 4 and not set(ids) & {row["image_id"] for row in read_csv(run / "selection.csv")}
    _draw_masks(second, ws)
    assert main(["annotate", "import", str(second), "--run", r, "-q"]) == 0
    assert main(["train", "--run", r, "-q"]) == 0
    rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
    assert [(x["round"], x["n_labeled"]) for x in rounds] == [(0, 4), (1, 8)]
    # the imported masks are what training used
    saved = np.asarray(Image.open(run / "active/labels" / f"{ids[0]}.png")) >= 128
    assert np.array_equal(saved, ws.pool.masks[ws.pool.ids.index(ids[0])].astype(bool))


def test_query_needs_a_model_trained_on_the_current_labels(tmp_path):
    ws = open_workspace(tmp_path / "run", preset=TINY, progress=False)
    select_images(ws, 4, progress=False)
    query_next(ws, oracle=True)
    with pytest.raises(SaalError, match="run 'saal train' first"):
        query_next(ws, query="entropy")
    train_model(ws, init="scratch", progress=False)
    nxt = query_next(ws, query="bald", k=3, oracle=True)
    assert nxt.round == 1 and len(nxt.ids) == 3 and nxt.batch_dir is None


def test_unlabeled_folder_selects_but_cannot_simulate(tmp_path):
    data = tmp_path / "unlabeled"
    write_isic_layout(tmp_path / "synth", n=20, size=48, seed=3)
    (data / "images").mkdir(parents=True)
    for p in (tmp_path / "synth").rglob("ISIC_*.jpg"):
        (data / "images" / p.name).write_bytes(p.read_bytes())
    preset = TINY.with_overrides(pool_size=None)
    ws = open_workspace(tmp_path / "run", data=data, preset=preset, progress=False)
    assert ws.test is None and len(ws.pool) == 20
    result = select_images(ws, 5, progress=False)
    assert len(result.ids) == 5 and all(Path(r["path"]).parent == data / "images"
                                        for r in read_csv(result.manifest))
    with pytest.raises(SaalError, match="has none"):
        run_all(ws, progress=False)
    assert sorted(p.name for p in data.iterdir()) == ["images"]  # nothing written into the user's data
    with pytest.raises(SaalError, match="inside the data folder"):
        open_workspace(data / "run", data=data, preset=preset, progress=False)



def test_describe_run_says_how_many_images_the_pool_holds(tmp_path):
    ws = open_workspace(tmp_path / "run", preset=TINY, progress=False)
    line = describe_run(ws, query="random")
    assert line.startswith(f"pool: {len(ws.pool)} images to choose from, test: {len(ws.test)} ")
    assert f"{TINY.cold_start} cold start" in line and "random queries" in line and f"{TINY.ssl_objective} " in line

def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    assert main(["select", "--run", str(tmp_path / "r")]) == 2  # --budget missing
    err = capsys.readouterr().err
    assert "--budget" in err and "Traceback" not in err
    assert main(["train", "--run", str(tmp_path / "nothing")]) == 2
    assert "not a saal run directory" in capsys.readouterr().err


def test_a_run_with_every_recipe_setting_through_set(tmp_path, capsys):
    """Colour segmenter on gray features, strong augmentation, lesion prior, TTA, l2 features, trained transfer
    after contrastive pretraining."""
    tiny = ["image_size=32", "synth_n=48", "pool_size=36", "test_size=12", "ssl_epochs=1", "seg_steps=3",
            "seg_batch=4", "budgets=4,8", "n_clusters=3"]
    recipe = ["channels=rgb", "feature_channels=gray", "seg_augment=strong", "seg_prior=lesion", "seg_tta=true",
              "feature_norm=l2", "seg_transfer=trained", "ssl_objective=contrastive"]
    assert main(["run", "--run", str(tmp_path / "other"), "--set", "channels=purple", "-q"]) == 2
    assert "--set channels=purple" in capsys.readouterr().err and not (tmp_path / "other").exists()
    run = tmp_path / "recipe"
    assert main(["run", "--run", str(run), "-q", *[a for s in tiny + recipe for a in ("--set", s)]]) == 0
    rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rounds] == [4, 8]
    recorded = json.loads((run / "run.json").read_text())["preset"]
    assert recorded["channels"] == "rgb" and recorded["feature_channels"] == "gray" and recorded["seg_tta"] is True
    config = json.loads((run / "active/config.json").read_text())
    assert config["seg"]["in_channels"] == 3 and config["seg"]["prior"] == "lesion" and config["seg"]["tta"]
    assert config["seg"]["augment"] == "strong"
    assert config["seg"]["transfer"] == "encoder"  # the contrastive pretraining trained no decoder
    ws = open_workspace(run, progress=False)
    assert ws.pool.channels == 3 and ws.feature_pool.channels == 1 and ws.test.channels == 3
    assert json.loads((run / "ssl/model.json").read_text())["unet"]["in_channels"] == 1
    assert np.allclose(np.linalg.norm(pool_features(ws, progress=False), axis=1), 1, atol=1e-5)
