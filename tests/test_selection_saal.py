"""The paper's criterion: proportional quotas (largest remainder), own members nearest first, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from saal.selection import SaalStrategy, allocate
from saal.selection.cluster import interleave

SIZES = (50, 30, 15, 5)


def blobs(sizes=SIZES, dim=6, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated clusters of known sizes (centres 100 apart, unit spread)."""
    rng = np.random.default_rng(seed)
    centres = 100.0 * np.eye(len(sizes), dim)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[truth] + rng.normal(size=(truth.size, dim))
    perm = rng.permutation(truth.size)  # clusters must not be contiguous in the pool
    return x[perm].astype(np.float32), truth[perm]


def hamilton(sizes, budget):
    """Reference largest-remainder rounding (ties: larger cluster, then lower number)."""
    sizes = np.asarray(sizes)
    share = budget * sizes / sizes.sum()
    q = np.floor(share).astype(int)
    frac = share - q
    order = sorted(range(len(sizes)), key=lambda c: (-round(frac[c], 12), -sizes[c], c))
    for c in order[: budget - q.sum()]:
        q[c] += 1
    return q


def per_true_cluster(sel, truth, k=len(SIZES)):
    return np.bincount(truth[sel.indices], minlength=k)


@pytest.mark.parametrize("budget, expected", [(20, [10, 6, 3, 1]), (7, [4, 2, 1, 0]), (13, [6, 4, 2, 1]),
                                              (100, list(SIZES)), (1, [1, 0, 0, 0])])
def test_proportional_allocation_on_known_clusters(budget, expected):
    x, truth = blobs()
    sel = SaalStrategy(n_clusters=4).select(x, budget, seed=0)
    assert per_true_cluster(sel, truth).tolist() == expected
    assert sel.info["quotas"] == expected
    assert sel.info["cluster_sizes"] == list(SIZES)


def test_largest_remainder_matches_reference_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sizes = rng.integers(1, 60, size=rng.integers(1, 12))
        budget = int(rng.integers(0, sizes.sum() + 1))
        got = allocate(sizes, budget)
        assert got.sum() == budget and (got <= sizes).all()
        np.testing.assert_array_equal(got, hamilton(sizes, budget))


def test_allocation_with_overfilled_cluster_takes_from_the_others():
    sizes = np.array(SIZES)
    got = allocate(sizes, 10, have=np.array([0, 0, 0, 5]))
    assert got.tolist() == [4, 1, 0, 5]  # deficits 5, 3, 1.5 filled greedily, larger cluster first on ties
    got = allocate(sizes, 40, have=np.array([0, 0, 0, 5]))
    assert got.sum() == 40 and got[3] == 5 and (got >= [0, 0, 0, 5]).all()


def test_every_prefix_is_near_proportional():
    x, truth = blobs()
    sel = SaalStrategy(n_clusters=4).select(x, 20, seed=0)
    share = np.array(SIZES) / sum(SIZES)
    labels = truth[sel.indices]
    for m in range(1, 21):
        counts = np.bincount(labels[:m], minlength=4)
        assert np.abs(counts - m * share).max() < 1.0 + 1e-9, (m, counts)


def test_interleave_visits_each_cluster_its_quota():
    sizes = np.array(SIZES)
    seq = interleave(sizes, np.zeros(4, int), np.array([10, 6, 3, 1]))
    assert np.bincount(seq, minlength=4).tolist() == [10, 6, 3, 1]
    assert seq[:4].tolist() == [0, 1, 0, 2]


def test_own_members_nearest_to_centre_first():
    x, truth = blobs()
    s = SaalStrategy(n_clusters=4)
    cl = s.cluster(x, seed=0)
    sel = s.select(x, 20, seed=0)
    np.testing.assert_array_equal(sel.pool_clusters, cl.labels)
    for c in range(cl.k):
        mine = sel.indices[sel.cluster == c]
        assert (cl.labels[mine] == c).all()  # only its own members
        members = np.flatnonzero(cl.labels == c)
        dist = np.linalg.norm(x[members] - x[members].mean(0), axis=1)
        nearest = members[np.argsort(dist, kind="stable")][: mine.size]
        assert mine.tolist() == nearest.tolist()  # nearest first, in order
        np.testing.assert_allclose(sel.distance[sel.cluster == c], np.sort(dist)[: mine.size], rtol=1e-4)


def test_a_point_near_another_centre_is_never_picked_for_that_cluster():
    # cluster B's outlier sits close to A's centre: the reference criterion (rank all images
    # against every centre) would give it to A and could pick it twice; members-only never does
    a = np.random.default_rng(1).normal(size=(20, 2))
    b = np.random.default_rng(2).normal(size=(20, 2)) + [50.0, 0.0]
    x = np.vstack([a, b]).astype(np.float32)
    sel = SaalStrategy(n_clusters=2).select(x, 40, seed=0)
    assert sorted(sel.indices.tolist()) == list(range(40))
    assert all((sel.pool_clusters[i] == c) for i, c in zip(sel.indices, sel.cluster))


def test_resume_matches_quotas_of_the_larger_budget():
    x, truth = blobs()
    s = SaalStrategy(n_clusters=4)
    first = s.select(x, 7, seed=3)
    more = s.select(x, 20, already_selected=first.indices, seed=3)
    assert more.indices[:7].tolist() == first.indices.tolist()
    assert per_true_cluster(more, truth).tolist() == [10, 6, 3, 1]
    assert set(more.indices.tolist()) == set(s.select(x, 20, seed=3).indices.tolist())


def test_resume_after_foreign_prior_overfilling_a_cluster():
    x, truth = blobs()
    small = np.flatnonzero(truth == 3)  # all 5 members of the smallest cluster
    sel = SaalStrategy(n_clusters=4).select(x, 20, already_selected=small, seed=0)
    counts = per_true_cluster(sel, truth)
    assert counts.sum() == 20 and counts[3] == 5
    assert counts[:3].tolist() == allocate(np.array(SIZES), 20, have=np.array([0, 0, 0, 5]))[:3].tolist()


def test_clusters_clipped_to_distinct_points():
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), [6, 3, 1], axis=0)
    sel = SaalStrategy(n_clusters=10).select(x, 5, seed=0)
    assert sel.info["n_clusters"] == 3
    assert sel.info["quotas"] == [3, 2, 0]  # shares 3, 1.5, 0.5: the tie goes to the larger cluster
    assert np.unique(sel.indices).size == 5


def test_cluster_numbers_are_by_decreasing_size():
    x, _ = blobs(sizes=(5, 50, 15, 30))
    cl = SaalStrategy(n_clusters=4).cluster(x, seed=0)
    assert cl.sizes.tolist() == [50, 30, 15, 5]
    assert cl.centres.shape == (4, x.shape[1])


def test_saal_typical_keeps_the_quotas_and_takes_the_densest_members():
    from saal.selection import SaalTypicalStrategy
    from saal.selection.typiclust import typicality

    rng = np.random.default_rng(3)
    # cluster A: a dense core off-centre plus a sparse halo that pulls the centre away from the core
    core = rng.normal([0.0, 0.0], 0.05, (40, 2))
    halo = rng.normal([1.5, 0.0], 0.6, (20, 2))
    other = rng.normal([20.0, 20.0], 0.3, (30, 2))
    x = np.concatenate([core, halo, other])
    paper = SaalStrategy(n_clusters=2, n_init=3).select(x, 6, seed=0)
    typical = SaalTypicalStrategy(n_clusters=2, n_init=3).select(x, 6, seed=0)
    assert typical.info["quotas"] == paper.info["quotas"]  # same clusters, same shares
    assert typical.cluster.tolist() == paper.cluster.tolist()  # same interleaving
    big = np.flatnonzero(typical.pool_clusters == 0)
    picked = [i for i, c in zip(typical.indices, typical.cluster) if c == 0]
    ranking = big[np.argsort(-typicality(x[big], 20), kind="stable")]
    assert picked == ranking[:len(picked)].tolist()  # the densest members first
    assert all(i < 40 for i in picked)  # ... which lie in the dense core, not the halo
    more = SaalTypicalStrategy(n_clusters=2, n_init=3).select(x, 9, already_selected=typical.indices, seed=0)
    assert more.indices[:6].tolist() == typical.indices.tolist()


def test_saal_typical_estimates_the_density_of_a_large_cluster_from_a_seeded_subset():
    from saal.selection import SaalTypicalStrategy

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(8, 1, (100, 3))])
    small = SaalTypicalStrategy(n_clusters=2, max_reference=50, n_init=2)
    a, b = small.select(x, 6, seed=0), small.select(x, 6, seed=0)
    assert a.indices.tolist() == b.indices.tolist()  # the subsets are seeded
    exact = SaalTypicalStrategy(n_clusters=2, n_init=2).select(x, 6, seed=0)
    assert a.cluster.tolist() == exact.cluster.tolist()  # same quotas; members chosen by an estimate of density
    centre = x[:300].mean(axis=0)
    assert all(np.linalg.norm(x[i] - centre) < 1.5 for i, c in zip(a.indices, a.cluster) if c == 0)  # dense core
