"""k-center, TypiClust and ProbCover behave as their papers describe."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from saal.errors import SelectionError
from saal.selection import KCenterStrategy, ProbCoverStrategy, RandomStrategy, TypiclustStrategy
from saal.selection.typiclust import RemainingDensity, typicality


def covering_radius(x, chosen):
    d = np.linalg.norm(x[:, None, :] - x[chosen][None, :, :], axis=2)
    return d.min(axis=1).max()


def separated(sizes, dim=5, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = 60.0 * np.eye(len(sizes), dim)[truth] + spread * rng.normal(size=(truth.size, dim))
    perm = rng.permutation(truth.size)
    return x[perm], truth[perm]


# ---- k-center -----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_kcenter_covers_better_than_random(seed):
    x, _ = make_blobs(n_samples=300, n_features=5, centers=8, cluster_std=2.0, random_state=seed)
    k = KCenterStrategy().select(x, 12, seed=seed)
    r = RandomStrategy().select(x, 12, seed=seed)
    assert covering_radius(x, k.indices) <= covering_radius(x, r.indices)
    assert k.info["covering_radius"] == pytest.approx(covering_radius(x, k.indices), rel=1e-6)


def test_kcenter_picks_the_farthest_point_each_time():
    x, _ = make_blobs(n_samples=120, n_features=3, centers=4, random_state=1)
    sel = KCenterStrategy().select(x, 10, seed=0)
    assert np.isnan(sel.distance[0])
    for r in range(1, 10):
        d = np.linalg.norm(x[:, None] - x[sel.indices[:r]][None], axis=2).min(axis=1)
        assert sel.indices[r] == int(np.argmax(d))
        assert sel.distance[r] == pytest.approx(d.max(), rel=1e-6)
    assert (np.diff(sel.distance[1:]) <= 1e-9).all()  # the radius only shrinks


def test_kcenter_starts_from_prior():
    x, _ = make_blobs(n_samples=100, n_features=3, centers=3, random_state=2)
    sel = KCenterStrategy().select(x, 4, already_selected=[7, 50], seed=0)
    d = np.linalg.norm(x[:, None] - x[[7, 50]][None], axis=2).min(axis=1)
    assert sel.indices[2] == int(np.argmax(d))
    assert sel.distance[1] == pytest.approx(np.linalg.norm(x[7] - x[50]), rel=1e-6)


# ---- TypiClust -----------------------------------------------------------------

def test_typiclust_one_point_from_each_of_the_largest_clusters():
    x, truth = separated((60, 40, 30, 20))
    sel = TypiclustStrategy(n_init=2).select(x, 4, seed=0)
    assert sorted(truth[sel.indices].tolist()) == [0, 1, 2, 3]
    assert truth[sel.indices].tolist() == [0, 1, 2, 3]  # largest cluster first


def test_typiclust_picks_the_most_typical_member():
    x, truth = separated((60, 40, 30, 20))
    sel = TypiclustStrategy(n_init=2).select(x, 4, seed=0)
    for i in sel.indices:
        members = np.flatnonzero(truth == truth[i])
        assert i == members[int(np.argmax(typicality(x[members], 20)))]


def test_typicality_is_the_authors_formula():
    x = np.random.default_rng(0).normal(size=(30, 4))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    ref = 1.0 / (np.sort(d, axis=1)[:, 1:6].mean(axis=1) + 1e-5)
    np.testing.assert_allclose(typicality(x, 5), ref, rtol=1e-6)
    # k = min(k_neighbors, n // 2): 8 rows measure density among their 4 nearest
    ref8 = 1.0 / (np.sort(d[:8, :8], axis=1)[:, 1:5].mean(axis=1) + 1e-5)
    np.testing.assert_allclose(typicality(x[:8], 20), ref8, rtol=1e-6)
    assert typicality(x[:1], 20).tolist() == [0.0]


def test_typiclust_second_visit_takes_the_most_typical_remaining_member():
    x, truth = separated((40, 30))
    sel = TypiclustStrategy(n_init=2).select(x, 4, seed=0)  # 4 clusters over 2 blobs: sizes decide
    for rank, i in enumerate(sel.indices):
        same = np.flatnonzero(sel.cluster[:rank] == sel.cluster[rank])
        members = np.flatnonzero(sel.pool_clusters == sel.cluster[rank])
        free = np.setdiff1d(members, sel.indices[same])
        assert i == free[int(np.argmax(typicality(x[free], 20)))]



def test_remaining_density_equals_typicality_of_the_remaining_members():
    """Neighbour lists measured once, then thinned as members are taken, give the values measured afresh,
    also after the spare neighbours run out (measured again) and down to a single member left."""
    x = np.random.default_rng(3).normal(size=(50, 6))
    members = np.arange(5, 45)
    density = RemainingDensity(x, members, k_neighbors=6)
    taken = np.zeros(50, dtype=bool)
    order = np.random.default_rng(4).permutation(members)
    for step, i in enumerate(order):
        free, typ = density.typicality(taken)
        np.testing.assert_array_equal(free, members[~taken[members]])
        np.testing.assert_allclose(typ, typicality(x[free], 6), rtol=1e-12, err_msg=f"after {step} taken")
        taken[i] = True

def test_typiclust_skips_covered_clusters():
    x, truth = separated((60, 40, 30, 20))
    prior = [int(np.flatnonzero(truth == 0)[0])]
    sel = TypiclustStrategy(n_init=2).select(x, 4, already_selected=prior, seed=0)
    assert sorted(truth[sel.new_indices].tolist()) == [1, 2, 3]


def test_typiclust_skips_tiny_clusters_while_larger_ones_remain():
    x, truth = separated((40, 30, 20, 3))
    sel = TypiclustStrategy(n_init=2).select(x, 4, seed=0)
    assert 3 not in truth[sel.indices].tolist()  # the 3-point cluster is below min_cluster_size=6
    assert sorted(truth[sel.indices].tolist()) == [0, 0, 1, 2]  # the largest cluster gets the spare pick


def test_typiclust_bad_option():
    with pytest.raises(SelectionError, match="k_neighbors must be >= 1"):
        TypiclustStrategy(k_neighbors=0)


# ---- ProbCover -----------------------------------------------------------------

def test_probcover_first_pick_covers_the_most_points():
    x, _ = make_blobs(n_samples=150, n_features=3, centers=3, cluster_std=2.0, random_state=0)
    delta = 2.5
    sel = ProbCoverStrategy(delta=delta).select(x, 3, seed=0)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    ball = (d <= delta)
    assert ball[sel.indices[0]].sum() == ball.sum(axis=1).max()
    uncovered = ~ball[sel.indices[0]]
    assert ball[sel.indices[1]][uncovered].sum() == (ball[:, uncovered]).sum(axis=1).max()
    covered = ball[sel.indices].any(axis=0).mean()
    assert sel.info["coverage"] == pytest.approx(covered)


def test_probcover_purity_delta_separates_clusters_and_covers_them_one_each():
    x, truth = separated((50, 40, 30, 20), spread=1.0)
    sel = ProbCoverStrategy(n_classes=4, n_init=2).select(x, 6, seed=0)
    assert sorted(truth[sel.indices[:4]].tolist()) == [0, 1, 2, 3]
    assert sel.info["coverage"] == 1.0 and sel.info["full_coverage_at"] == 5
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    same = truth[:, None] == truth[None, :]
    ball = d <= sel.info["delta"]
    assert d[same].max() <= sel.info["delta"]  # every cluster fits in one ball
    pure = ~(ball & ~same).any(axis=1)
    assert pure.mean() >= 0.95  # the purity criterion holds ...
    assert (~(d <= sel.info["delta"] * 1.01) | same).all(axis=1).mean() < 0.95  # ... and delta is the largest such


def test_probcover_caps_the_ball_size():
    x = np.random.default_rng(0).normal(size=(200, 3))
    sel = ProbCoverStrategy(n_classes=1, max_avg_degree=10).select(x, 5, seed=0)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    assert (d <= sel.info["delta"]).sum(axis=1).mean() <= 10


def test_probcover_refuses_a_huge_given_delta():
    x = np.random.default_rng(0).normal(size=(100, 3))
    with pytest.raises(SelectionError, match="smaller delta"):
        ProbCoverStrategy(delta=100.0, max_avg_degree=5).select(x, 3)


@pytest.mark.parametrize("kw, msg", [({"delta": -1.0}, "delta must be"), ({"purity": 0.0}, "purity must be")])
def test_probcover_bad_options(kw, msg):
    with pytest.raises(SelectionError, match=msg):
        ProbCoverStrategy(**kw)
