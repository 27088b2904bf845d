"""The contract every cold-start strategy must honour (budget, prefix, determinism, bad input)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from saal.errors import SelectionError
from saal.selection import COLD_STARTS, ColdStartStrategy, Selection, get_cold_start, make_cold_start

NAMES = sorted(COLD_STARTS)


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    x, _ = make_blobs(n_samples=150, n_features=8, centers=5, cluster_std=1.0, random_state=3)
    return x.astype(np.float32)


def strategy(name: str) -> ColdStartStrategy:
    # n_init=2 keeps the k-means strategies fast; the contract does not depend on it
    params = {"saal": {"n_init": 2}, "saal-typical": {"n_init": 2}, "typiclust": {"n_init": 2},
              "probcover": {"n_init": 2}}.get(name, {})
    return get_cold_start(name, **params)


def test_registry_lists_every_strategy():
    assert set(COLD_STARTS) == {"saal", "saal-typical", "random", "kcenter", "typiclust", "probcover"}
    for name in NAMES:
        assert get_cold_start(name).name == name


def test_unknown_strategy_or_option_is_a_one_line_error():
    with pytest.raises(SelectionError, match="unknown cold start 'nope'"):
        get_cold_start("nope")
    with pytest.raises(SelectionError, match="has no option 'k'"):
        get_cold_start("saal", k=3)


def test_run_settings_go_to_the_strategies_that_take_them():
    assert make_cold_start("saal", n_clusters=4).n_clusters == 4
    assert make_cold_start("saal-typical", n_clusters=4).n_clusters == 4
    assert make_cold_start("saal").n_clusters == 10
    for name in ("random", "kcenter", "typiclust", "probcover"):  # no n_clusters option: the setting is not theirs
        assert type(make_cold_start(name, n_clusters=4)) is COLD_STARTS[name]
    with pytest.raises(SelectionError, match="unknown cold start"):
        make_cold_start("nope", n_clusters=4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", [1, 7, 40])
def test_exact_budget_distinct_in_range(name, budget, feats):
    sel = strategy(name).select(feats, budget, seed=0)
    assert isinstance(sel, Selection) and sel.strategy == name
    assert len(sel) == budget and sel.n_prior == 0
    assert np.unique(sel.indices).size == budget
    assert sel.indices.min() >= 0 and sel.indices.max() < len(feats)
    assert sel.cluster.shape == (budget,) and sel.distance.shape == (budget,)


@pytest.mark.parametrize("name", NAMES)
def test_already_selected_kept_first_and_budget_is_total(name, feats):
    prior = [5, 140, 77, 3]
    sel = strategy(name).select(feats, 15, already_selected=prior, seed=0)
    assert sel.indices[:4].tolist() == prior
    assert sel.n_prior == 4 and sel.new_indices.size == 11
    assert len(sel) == 15 and np.unique(sel.indices).size == 15


@pytest.mark.parametrize("name", NAMES)
def test_incremental_extension_keeps_the_earlier_list(name, feats):
    s = strategy(name)
    first = s.select(feats, 6, seed=2)
    second = s.select(feats, 20, already_selected=first.indices, seed=2)
    third = s.select(feats, 33, already_selected=second.indices, seed=2)
    assert second.indices[:6].tolist() == first.indices.tolist()
    assert third.indices[:20].tolist() == second.indices.tolist()
    assert np.unique(third.indices).size == 33


@pytest.mark.parametrize("name", ["saal", "random", "kcenter"])
def test_resumed_annotations_match_the_original_run(name, feats):
    # for these strategies the per-item cluster/distance do not depend on the call
    s = strategy(name)
    first = s.select(feats, 9, seed=4)
    more = s.select(feats, 25, already_selected=first.indices, seed=4)
    np.testing.assert_array_equal(more.cluster[:9], first.cluster)
    np.testing.assert_array_equal(more.distance[:9], first.distance)


@pytest.mark.parametrize("name", ["random", "kcenter"])
def test_extension_equals_a_fresh_larger_run(name, feats):
    s = strategy(name)
    small = s.select(feats, 10, seed=5)
    grown = s.select(feats, 30, already_selected=small.indices, seed=5)
    assert grown.indices.tolist() == s.select(feats, 30, seed=5).indices.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed(name, feats):
    a = strategy(name).select(feats, 12, seed=11)
    b = strategy(name).select(feats, 12, seed=11)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.cluster, b.cluster)
    np.testing.assert_array_equal(a.distance, b.distance)


@pytest.mark.parametrize("name", ["random", "kcenter"])
def test_seed_changes_the_draw(name, feats):
    a = strategy(name).select(feats, 12, seed=0).indices
    b = strategy(name).select(feats, 12, seed=1).indices
    assert a.tolist() != b.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_budget_equal_to_prior_returns_it(name, feats):
    sel = strategy(name).select(feats, 3, already_selected=[9, 1, 4], seed=0)
    assert sel.indices.tolist() == [9, 1, 4] and sel.new_indices.size == 0


@pytest.mark.parametrize("name", NAMES)
def test_budget_zero_is_empty(name, feats):
    sel = strategy(name).select(feats, 0)
    assert len(sel) == 0 and sel.indices.dtype == np.int64


@pytest.mark.parametrize("name", NAMES)
def test_whole_pool(name):
    x, _ = make_blobs(n_samples=30, n_features=4, centers=3, random_state=0)
    sel = strategy(name).select(x, 30, seed=0)
    assert sorted(sel.indices.tolist()) == list(range(30))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("features, budget, prior, message", [
    (np.ones((10, 3)), 11, (), "exceeds the pool size 10"),
    (np.ones((10, 3)), -1, (), "must be >= 0"),
    (np.ones((10, 3)), 2.5, (), "whole number"),
    (np.zeros((0, 3)), 0, (), "pool is empty"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), 1, (), "NaN or infinite values in 1 row.*row 1"),
    (np.array([[0.0, 1.0], [np.inf, 2.0]]), 1, (), "NaN or infinite"),
    (np.ones(10), 1, (), "2-D"),
    (np.ones((10, 3)), 3, (4, 10), "index 10 is outside the pool"),
    (np.ones((10, 3)), 3, (4, -1), "index -1 is outside the pool"),
    (np.ones((10, 3)), 3, (4, 4), "lists index 4 more than once"),
    (np.ones((10, 3)), 1, (4, 5), "smaller than the 2 already-selected"),
])
def test_bad_input_raises_selection_error(name, features, budget, prior, message):
    with pytest.raises(SelectionError, match=message):
        strategy(name).select(features, budget, already_selected=prior)


def test_identical_features_still_give_distinct_items():
    x = np.ones((25, 4), dtype=np.float32)
    for name in NAMES:
        sel = strategy(name).select(x, 10, seed=0)
        assert np.unique(sel.indices).size == 10, name
