"""Annotation effort (issue 24): each round records how much of the previous model's proposals its masks changed,
and the run report and ``saal advise`` show it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saal.active import LoopConfig
from saal.active.annotate import preannotate
from saal.active.effort import EFFORT_FIELDS, preannotation_effort, round_effort
from saal.active.loop import LoopDir, run_simulated
from saal.advise import advise_loop, effort_table
from saal.cli.main import main
from saal.config import get_preset
from saal.data.embedded import load_embedded
from saal.errors import SaalError
from saal.io import write_json
from saal.pipeline.report import rounds_table

TINY = get_preset("demo").with_overrides(name="tiny", image_size=32, seg_steps=3, seg_batch=4, budgets=(4, 8, 12))


def test_effort_counts_the_pixels_to_change_and_the_proposals_dice():
    truth = np.zeros((3, 10, 10), bool)
    truth[:, 2:6, 2:6] = True  # a 16-pixel lesion in each image
    proposed = truth.copy()
    proposed[1, 2:6, 6:8] = True  # 8 pixels too many
    proposed[2] = False  # nothing proposed: all 16 to draw
    effort = preannotation_effort(proposed, truth)
    assert effort["effort_n"] == 3
    assert effort["effort_changed"] == pytest.approx((0 + 0.08 + 0.16) / 3)
    assert effort["effort_changed_median"] == pytest.approx(0.08)
    assert effort["effort_dice"] == pytest.approx((1 + 32 / 40 + 0) / 3)
    empty = np.zeros((1, 4, 4), bool)
    assert preannotation_effort(empty, empty)["effort_dice"] == 1.0  # no lesion, none proposed: nothing to do
    with pytest.raises(SaalError, match="one \\(N, H, W\\) shape"):
        preannotation_effort(truth[:2], truth)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A simulated run (random picks, scratch init, every model kept) in RUN/active, with its data."""
    run = tmp_path_factory.mktemp("effort") / "run"
    data = load_embedded(n=48, image_size=32, seed=0)
    pool, test = data.subset(np.arange(36)), data.subset(np.arange(36, 48))
    config = LoopConfig.from_preset(TINY, in_channels=1, cold_start="random", query="random", init="scratch",
                                    save_models=True)
    run_simulated(run / "active", pool, test, config=config, features=None, ssl_state=None, progress=False)
    write_json(run / "run.json", {"source": "embedded", "preset": TINY.to_dict(), "seed": 0})
    return run, pool, config


def test_each_round_records_the_effort_of_the_previous_models_proposals(simulated):
    run, pool, config = simulated
    loop = LoopDir(run / "active")
    rounds = loop.rounds()
    assert [r["n_labeled"] for r in rounds] == [4, 8, 12]
    assert not any(f in rounds[0] for f in EFFORT_FIELDS)  # the cold start had no model to propose
    active = loop.load_active(pool.ids)
    for r in rounds[1:]:
        asked = [k for k in active.labeled_ids if active.round_of(k) == r["round"]]
        assert r["effort_n"] == len(asked) == 4 and 0 <= r["effort_changed"] <= 1 and 0 <= r["effort_dice"] <= 1
        model = loop.load_model(f"round_{r['round'] - 1}")[0]  # what the exported batch would have shown
        proposals = preannotate(model, pool, asked, model_version="", prior=config.seg.prior,
                                threshold=config.seg.threshold, tta=config.seg.tta)
        truth = pool.masks[pool.index_of(asked)]
        changed = [np.mean(proposals.mask(k, 32, 32) != m) for k, m in zip(asked, truth)]
        assert r["effort_changed"] == pytest.approx(np.mean(changed))
    # the round's model only: a model trained since (here round 2's) measures nothing
    latest = loop.load_model("latest")
    assert round_effort(latest, pool, asked, truth, round=2, seg=config.seg) == {}


def test_report_and_advise_show_the_effort(simulated, capsys):
    run, _, _ = simulated
    rounds = LoopDir(run / "active").rounds()
    table = rounds_table(rounds)
    assert table.header[-2:] == ["proposal Dice (%)", "pixels to change (%)"]
    assert table.rows[0][-2:] == ["–", "–"] and table.rows[1][-1] == f"{100 * rounds[1]['effort_changed']:.1f}"
    assert "pixels to change" not in rounds_table([{k: v for k, v in r.items() if not k.startswith("effort")}
                                                   for r in rounds]).header
    advice = advise_loop(run / "active", TINY.budgets)
    assert [e["round"] for e in advice.effort] == [1, 2]
    assert effort_table(advice.effort).rows[0][2] == "4"
    assert main(["advise", "--run", str(run), "--crossval", "0"]) == 0
    out = capsys.readouterr().out
    assert "Annotation effort" in out and "pixels to change (%)" in out
    saved = json.loads((run / "active/advice.json").read_text())
    assert [e["round"] for e in saved["effort"]] == [1, 2]
