"""Group coverage of a selection: hand-made pools with known answers, the hypergeometric line, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from saal.errors import SaalError, SelectionError
from saal.selection import (
    EXPECTED_UNIFORM,
    coverage_table,
    get_cold_start,
    group_coverage,
    hit_probability,
    hit_rate,
)

# 10 images: a x5, b x3, c x2 (interleaved so that row order differs from group order)
GROUPS = ["a", "b", "a", "c", "a", "b", "a", "c", "b", "a"]


def test_group_coverage_counts_shares_and_hits():
    cov = group_coverage(GROUPS, [1, 3, 7, 0])  # b, c, c, a
    assert list(cov) == ["a", "b", "c"]  # most frequent first
    assert cov["a"] == {"pool": 5, "pool_share": 0.5, "selected": 1, "selected_share": 0.25, "hit": True}
    assert cov["b"] == {"pool": 3, "pool_share": 0.3, "selected": 1, "selected_share": 0.25, "hit": True}
    assert cov["c"] == {"pool": 2, "pool_share": 0.2, "selected": 2, "selected_share": 0.5, "hit": True}


def test_group_coverage_misses_and_empty_selection():
    cov = group_coverage(GROUPS, np.array([0, 2, 4]))
    assert [cov[g]["hit"] for g in "abc"] == [True, False, False]
    assert cov["a"]["selected_share"] == 1.0 and cov["c"]["selected"] == 0
    empty = group_coverage(GROUPS, [])
    assert all(not v["hit"] and v["selected"] == 0 and v["selected_share"] == 0.0 for v in empty.values())


def test_group_order_ties_broken_by_name():
    assert list(group_coverage(["z", "y", "y", "x", "z"], [0])) == ["y", "z", "x"]


def _brute_force_hit(n: int, k: int, b: int) -> float:
    """Enumerate every b-subset of a pool whose first k items form the group."""
    subsets = list(itertools.combinations(range(n), b))
    return sum(min(s) < k for s in subsets) / len(subsets) if b else 0.0


@pytest.mark.parametrize("n", [1, 5, 8])
def test_hit_probability_matches_enumeration(n):
    for k in range(n + 1):
        for b in range(n + 1):
            assert hit_probability(n, k, b) == pytest.approx(_brute_force_hit(n, k, b), abs=1e-12), (n, k, b)


def test_hit_probability_broadcasts_and_matches_closed_form_on_large_pool():
    p = hit_probability(400, np.array([20, 28, 32]), np.array([[10], [40]]))
    assert p.shape == (2, 3)
    exact = [[1 - math.comb(400 - k, b) / math.comb(400, b) for k in (20, 28, 32)] for b in (10, 40)]
    np.testing.assert_allclose(p, exact, rtol=1e-12)
    assert hit_probability(10**6, 1, 10**6) == 1.0  # no overflow on huge binomials


def test_hit_probability_agrees_with_simulation():
    rng = np.random.default_rng(0)
    draws = np.argsort(rng.random((20000, 30)), axis=1)[:, :6]  # 20000 uniform 6-subsets of 30 items
    simulated = (draws < 4).any(axis=1).mean()  # group = the first 4 items
    assert simulated == pytest.approx(float(hit_probability(30, 4, 6)), abs=0.015)


def test_coverage_table_aggregates_seeds():
    sels = {
        "s1": {2: [[0, 1], [0, 2], [3, 7]]},  # hits (a,b) (a) (c): 2, 1, 1 groups
        "s2": {2: [[3, 8]], 4: [[0, 1, 3, 2]]},
    }
    table = coverage_table(GROUPS, sels, rare_below=0.25)
    assert table.groups == ["a", "b", "c"]
    assert table.pool_count == {"a": 5, "b": 3, "c": 2}
    assert table.rare == ["c"]
    r = table.row("s1", 2)
    assert r.n_seeds == 3
    assert r.groups_hit == pytest.approx(4 / 3)
    assert r.groups_hit_std == pytest.approx(np.std([2, 1, 1]))
    assert r.hit_rate == pytest.approx({"a": 2 / 3, "b": 1 / 3, "c": 1 / 3})
    assert r.selected_share == pytest.approx({"a": 0.5, "b": 1 / 6, "c": 1 / 3})
    assert table.row("s2", 4).groups_hit == 3.0 and table.row("s2", 4).hit_rate["c"] == 1.0


def test_coverage_table_uniform_expectation_rows():
    table = coverage_table(GROUPS, {"s": {2: [[0, 1]], 5: [[0, 1, 2, 3, 4]]}})
    assert [(r.strategy, r.budget) for r in table.rows if r.strategy == EXPECTED_UNIFORM] == [
        (EXPECTED_UNIFORM, 2), (EXPECTED_UNIFORM, 5)]
    exp = table.row(EXPECTED_UNIFORM, 2)
    assert exp.hit_rate["c"] == pytest.approx(_brute_force_hit(10, 2, 2))
    assert exp.groups_hit == pytest.approx(sum(_brute_force_hit(10, k, 2) for k in (5, 3, 2)))
    assert exp.selected_share == table.pool_share and math.isnan(exp.groups_hit_std)


def test_random_strategy_converges_to_the_uniform_expectation():
    groups = ["common"] * 80 + ["rare"] * 5 + ["mid"] * 15
    feats = np.zeros((100, 2), dtype=np.float32)
    sels = {"random": {10: [get_cold_start("random").select(feats, 10, seed=s).indices for s in range(400)]}}
    table = coverage_table(groups, sels)
    got, exp = table.row("random", 10), table.row(EXPECTED_UNIFORM, 10)
    assert got.hit_rate["rare"] == pytest.approx(exp.hit_rate["rare"], abs=0.07)
    assert got.groups_hit == pytest.approx(exp.groups_hit, abs=0.1)


@pytest.mark.parametrize("selected, message", [
    ([0, 10], "index 10 is outside the pool"),
    ([-1], "index -1 is outside the pool"),
    ([3, 1, 3], "lists index 3 more than once"),
    ([0.5, 1.0], "integer pool indices"),
    ([[0, 1]], "integer pool indices"),
])
def test_group_coverage_rejects_bad_indices(selected, message):
    with pytest.raises(SaalError, match=message):
        group_coverage(GROUPS, selected)


def test_coverage_table_rejects_bad_input():
    with pytest.raises(SaalError, match="more than once"):
        coverage_table(GROUPS, {"s": {2: [[4, 4]]}})
    with pytest.raises(SaalError, match="holds 3 items, not 2"):
        coverage_table(GROUPS, {"s": {2: [[0, 1, 2]]}})
    with pytest.raises(SaalError, match="no selection given"):
        coverage_table(GROUPS, {"s": {2: []}})
    with pytest.raises(SaalError, match="budget 11"):
        coverage_table(GROUPS, {"s": {11: [list(range(10))]}})
    with pytest.raises(SaalError, match="rare_below"):
        coverage_table(GROUPS, {}, rare_below=0)
    with pytest.raises(SaalError, match="no group tags"):
        group_coverage(None, [0])
    with pytest.raises(SaalError, match="non-empty"):
        group_coverage([], [])


def test_hit_probability_rejects_impossible_sizes():
    with pytest.raises(SaalError, match="group size"):
        hit_probability(10, 11, 2)
    with pytest.raises(SaalError, match="budget"):
        hit_probability(10, 2, 11)
    with pytest.raises(SaalError, match="pool size"):
        hit_probability(0, 0, 0)


def test_hit_rate_of_a_hand_made_case():
    members = np.zeros(10, dtype=bool)
    members[[2, 7]] = True  # 2 melanomas in a pool of 10
    selections = [[2, 3, 4], [0, 1, 5], [7, 2, 9], [6, 8, 1]]  # hit, miss, hit (twice), miss
    rate = hit_rate(selections, members)
    assert (rate.budget, rate.n_selections, rate.rate) == (3, 4, 0.5)
    assert rate.mean_count == pytest.approx(3 / 4) and rate.expected_count == pytest.approx(3 * 2 / 10)
    # chance of >= 1 of 2 members among 3 of 10 drawn without replacement: 1 - C(8,3)/C(10,3) = 1 - 56/120
    assert rate.chance == pytest.approx(1 - 56 / 120)
    with pytest.raises(SelectionError, match="same size"):
        hit_rate([[1, 2], [3]], members)
    with pytest.raises(SelectionError, match="outside the pool"):
        hit_rate([[1, 12]], members)
