"""One home for defaults and one place that validates: the presets, the constraint table and what derives from them."""

from __future__ import annotations

from dataclasses import fields

import pytest

from saal import config
from saal.active import LoopConfig
from saal.active.heuristics import REDUCTIONS
from saal.active.queries import QUERIES, make_query
from saal.config import DEFAULTS, PARAMETER_CONSTRAINTS, PRESETS, Preset, check_options, get_preset
from saal.errors import SaalError
from saal.runtime import Stream, stream_seed
from saal.segmentation import AUGMENTATIONS, LOSSES, SegConfig
from saal.segmentation.trainer import TRAIN_MODES
from saal.selection import COLD_STARTS, make_cold_start
from saal.ssl import OBJECTIVES, PretrainConfig
from saal.ssl.pretrain import LR_SCHEDULES


def test_every_choice_is_what_its_registry_implements():
    assert config.COLD_STARTS == tuple(COLD_STARTS)
    assert config.QUERIES == tuple(QUERIES)
    assert config.SSL_OBJECTIVES == tuple(OBJECTIVES)
    assert config.SSL_SCHEDULES == tuple(LR_SCHEDULES)
    assert (config.LOSSES, config.AUGMENTATIONS, config.TRAIN_MODES, config.REDUCTIONS) == (
        LOSSES, AUGMENTATIONS, TRAIN_MODES, REDUCTIONS)
    for name in config.COLD_STARTS:
        make_cold_start(name, n_clusters=3)
    for name in config.QUERIES:
        assert make_query(name, cold_start="typiclust").name in (name, "entropy")  # TopScores names its heuristic


def test_every_preset_field_has_a_constraint_and_every_preset_meets_them():
    assert {f.name for f in fields(Preset)} == set(PARAMETER_CONSTRAINTS)
    for preset in PRESETS.values():
        assert Preset.from_record(preset.to_dict()) == preset


@pytest.mark.parametrize("field, value, message", [
    ("ssl_objective", "contastive", "--objective 'contastive': choose one of genesis"),
    ("query", "entrpy", "--query 'entrpy': choose one of"),
    ("cold_start", "typiclst", "--cold-start 'typiclst'"),
    ("n_clusters", 0, "--clusters 0: must be an integer >= 1"),
    ("seg_steps", 2.5, "--steps 2.5: must be an integer"),
    ("dropout", 1.0, "dropout 1.0: must be a number >= 0 and < 1"),
    ("ssl_lr", float("nan"), "ssl_lr nan: must be a finite number"),
    ("budgets", (20, 10), "must be increasing positive label counts"),
    ("seg_tta", "yes", "must be true or false"),
    ("channels", "colour", "channels 'colour': choose one of gray, rgb"),
    ("query_reduction", "top5", "--reduction 'top5'"),
])
def test_a_bad_setting_is_one_line_naming_the_option(field, value, message):
    with pytest.raises(SaalError, match=message.replace("(", r"\(").replace("+", r"\+")) as caught:
        DEFAULTS.with_overrides(**{field: value})
    assert "\n" not in str(caught.value)
    with pytest.raises(SaalError, match="unknown preset setting 'quary'"):
        DEFAULTS.with_overrides(quary="entropy")
    with pytest.raises(SaalError, match="--finetune 'contine'"):
        check_options(finetune="contine")


def test_the_lower_settings_take_their_defaults_from_the_demo_preset():
    assert DEFAULTS is get_preset("demo") and Preset(name="demo") == DEFAULTS
    loop = LoopConfig(budgets=(10,))
    assert (loop.cold_start, loop.query, loop.reduction, loop.init, loop.n_clusters, loop.mc_samples) == (
        DEFAULTS.cold_start, DEFAULTS.query, DEFAULTS.query_reduction, DEFAULTS.init, DEFAULTS.n_clusters,
        DEFAULTS.mc_samples)
    assert LoopConfig.from_preset(DEFAULTS, in_channels=1, budgets=(10,)) == loop
    assert SegConfig() == SegConfig.from_preset(DEFAULTS, in_channels=1)
    assert PretrainConfig() == PretrainConfig.from_preset(DEFAULTS)
    with pytest.raises(SaalError, match="--query 'bogus'"):
        LoopConfig(budgets=(10,), query="bogus")


def test_a_record_made_before_a_setting_existed_keeps_the_value_it_ran_with():
    old = {k: v for k, v in get_preset("paper").to_dict().items()
           if k not in ("ssl_objective", "ssl_schedule", "query_reduction")}
    assert Preset.from_record({**old, "name": "old"}).ssl_objective == "genesis"  # today's default: contrastive
    assert Preset.from_record({**old, "name": "old"}).ssl_schedule == "step"
    assert LoopConfig.from_dict({"budgets": [10]}).reduction == "mean"


def test_random_streams_never_meet():
    assert len({int(s) for s in Stream}) == len(Stream)
    round_seeds = {LoopConfig(budgets=(10,), seed=s).round_seed(r) for s in range(30) for r in range(1000)}
    assert len(round_seeds) == 30 * 1000  # distinct across seeds and rounds
    with pytest.raises(SaalError, match="round 1000"):
        LoopConfig(budgets=(10,)).round_seed(1000)
    streams = {stream_seed(s, key, i) for s in range(30) for key in Stream for i in range(50)}
    assert len(streams) == 30 * len(Stream) * 50 and not streams & round_seeds
    # the random query's draw and the stop set's are different streams even where their old keys met
    assert stream_seed(0, Stream.RANDOM_QUERY, int(Stream.STOP_SET)) != stream_seed(0, Stream.STOP_SET)
