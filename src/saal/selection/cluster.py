"""The paper's criterion: k-means clusters, a proportional share of the budget each,
and within a cluster the members nearest its centre first.

Zhao et al. (EMBC 2022) cluster the self-supervised bottleneck features (k = 10)
and take, from every cluster, the images closest to its centre, the number per
cluster following the cluster's share of the pool. Done carefully:

* **Allocation** -- cluster ``c`` of size ``n_c`` deserves ``B * n_c / N`` of a
  budget ``B``; whole numbers come from largest-remainder (Hamilton) rounding, so
  the quotas sum to exactly ``B`` and never exceed a cluster's size. Ties in the
  remainder go to the larger cluster, then the lower cluster number.
* **Members only** -- a cluster's picks are its *own* members, nearest to its
  centre first (ties: lower index), so no image can be picked twice.
* **Order** -- the picks are interleaved so that every prefix of the list is
  itself close to proportional: position ``m`` goes to the cluster with the
  largest shortfall ``m * n_c / N - (picks so far)`` among those with quota
  left (ties: larger cluster, lower number). Cutting the list anywhere thus
  gives a sensible smaller selection.
* **Incremental** -- given earlier picks (``already_selected``), the same seed
  reproduces the same clustering; each cluster keeps what it has, and the new
  units go one at a time to the cluster furthest below its share of the total
  (which is the Hamilton allocation whenever no cluster is over-full, and
  simply skips clusters that earlier picks already over-filled).
"""

from __future__ import annotations

import heapq

import numpy as np

from saal.errors import SelectionError
from saal.selection.base import ColdStartStrategy, Extension, check_features
from saal.selection.kmeans import MINIBATCH_ABOVE, Clustering, fit_kmeans


def allocate(sizes: np.ndarray, budget: int, have: np.ndarray | None = None) -> np.ndarray:
    """Per-cluster counts summing to ``budget``: proportional to ``sizes``, at least ``have``.

    Units go one at a time to the cluster with the largest deficit
    ``budget * n_c / N - count_c`` (exact integer arithmetic; ties: larger
    cluster, lower number) that still has unpicked members. Starting from zero
    this is exactly largest-remainder rounding: every cluster first reaches
    ``floor(share)`` (its deficit is >= 1 until then) and the leftover units go
    to the largest fractional remainders.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    have = np.zeros_like(sizes) if have is None else np.asarray(have, dtype=np.int64)
    n = int(sizes.sum())
    if not 0 <= int(have.sum()) <= budget <= n or (have > sizes).any():
        raise ValueError(f"cannot allocate {budget} among sizes {sizes.tolist()} holding {have.tolist()}")
    counts = np.maximum(have, (budget * sizes) // n)
    if counts.sum() > budget:  # earlier picks over-fill some clusters: fill the rest greedily from scratch
        counts = have.copy()
    heap = [(-(budget * int(s) - int(c) * n), -int(s), i)
            for i, (s, c) in enumerate(zip(sizes, counts)) if c < s]
    heapq.heapify(heap)
    for _ in range(budget - int(counts.sum())):
        _, neg_size, i = heapq.heappop(heap)
        counts[i] += 1
        if counts[i] < sizes[i]:
            heapq.heappush(heap, (-(budget * int(sizes[i]) - int(counts[i]) * n), neg_size, i))
    return counts


def interleave(sizes: np.ndarray, have: np.ndarray, quotas: np.ndarray) -> np.ndarray:
    """Cluster of each new position so that every prefix stays near-proportional.

    Position ``m`` (1-based over the whole list, earlier picks included) goes to
    the cluster with quota left and the largest ``m * n_c - count_c * N``;
    ties to the larger cluster, then the lower number.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    counts = np.asarray(have, dtype=np.int64).copy()
    left = np.asarray(quotas, dtype=np.int64) - counts
    n = int(sizes.sum())
    total = int(counts.sum())
    seq = np.empty(int(left.sum()), dtype=np.int64)
    for j in range(seq.size):
        m = total + j + 1
        key = np.where(left > 0, m * sizes - counts * n, np.iinfo(np.int64).min)
        tied = np.flatnonzero(key == key.max())
        c = tied[np.argmax(sizes[tied])]
        seq[j] = c
        counts[c] += 1
        left[c] -= 1
    return seq


def members_first(clustering: Clustering, rank_key: np.ndarray, taken: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Fill the positions of ``seq`` (one cluster number each) with that cluster's
    next untaken member, lowest ``rank_key`` first (ties: lower index)."""
    n = clustering.labels.size
    order = np.lexsort((np.arange(n), rank_key, clustering.labels))
    order = order[~taken[order]]
    starts = np.searchsorted(clustering.labels[order], np.arange(clustering.k))
    # occurrence number of each position within its cluster, in sequence order
    by_cluster = np.argsort(seq, kind="stable")
    first_pos = np.searchsorted(seq[by_cluster], seq[by_cluster])
    occurrence = np.empty(seq.size, dtype=np.int64)
    occurrence[by_cluster] = np.arange(seq.size) - first_pos
    return order[starts[seq] + occurrence]


class SaalStrategy(ColdStartStrategy):
    """k-means, proportional quotas, nearest-to-centre members (the paper's cold start).

    Parameters
    ----------
    n_clusters : int, default 10
        k of k-means (the paper's value); fewer when the pool has fewer distinct feature rows.
    n_init : int or None
        k-means restarts (None: 10 for full k-means, fewer for mini-batch; see :func:`fit_kmeans`).
    minibatch_above : int
        Pools larger than this are clustered with mini-batch k-means.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.zeros((40, 2)), np.full((10, 2), 5.0)])
    >>> x += np.random.default_rng(0).normal(scale=0.1, size=x.shape)
    >>> sel = SaalStrategy(n_clusters=2).select(x, 5, seed=0)
    >>> sel.cluster.tolist()   # 4 from the cluster of 40, 1 from the cluster of 10
    [0, 0, 1, 0, 0]
    """

    name = "saal"

    def __init__(self, n_clusters: int = 10, n_init: int | None = None,
                 minibatch_above: int = MINIBATCH_ABOVE):
        if int(n_clusters) < 1:
            raise SelectionError(f"n_clusters must be >= 1, got {n_clusters}")
        self.n_clusters = int(n_clusters)
        self.n_init = n_init
        self.minibatch_above = int(minibatch_above)

    def cluster(self, features, seed: int = 0) -> Clustering:
        """The clustering :meth:`select` uses for these features and seed."""
        return self._cluster(check_features(features), seed)

    def _cluster(self, x: np.ndarray, seed: int) -> Clustering:
        return fit_kmeans(x, self.n_clusters, seed, n_init=self.n_init, minibatch_above=self.minibatch_above)

    def rank_key(self, x: np.ndarray, clustering: Clustering, clusters: np.ndarray) -> np.ndarray:
        """Within a cluster, members with a lower key are taken first: the distance to the centre.

        Only the keys of ``clusters`` (those that receive picks) are read.
        """
        return clustering.distances

    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        cl = self._cluster(x, seed)
        sizes = cl.sizes
        have = np.bincount(cl.labels[prior], minlength=cl.k)
        budget = prior.size + n_new
        quotas = allocate(sizes, budget, have)
        taken = np.zeros(x.shape[0], dtype=bool)
        taken[prior] = True
        new = members_first(cl, self.rank_key(x, cl, np.flatnonzero(quotas > have)), taken,
                            interleave(sizes, have, quotas))
        chosen = np.concatenate([prior, new])
        return Extension(
            new=new,
            cluster=cl.labels[chosen],
            distance=cl.distances[chosen],
            pool_clusters=cl.labels,
            centres=cl.centres,
            info={"n_clusters": cl.k, "cluster_sizes": sizes.tolist(), "quotas": quotas.tolist()},
        )


class SaalTypicalStrategy(SaalStrategy):
    """The paper's proportional quotas, but each cluster's *most typical* members first.

    The centre of a k-means cluster can fall between sub-groups, so the member
    nearest to it may be an in-between, unrepresentative image; TypiClust's
    typicality (inverse mean distance to the nearest members of the same cluster,
    :func:`~saal.selection.typiclust.typicality`) picks the densest part of the
    cluster instead. Quotas, interleaving and incremental extension are the
    paper's (:class:`SaalStrategy`); ``distance`` stays the distance to the centre.

    Parameters
    ----------
    n_clusters, n_init, minibatch_above
        As in :class:`SaalStrategy`.
    k_neighbors : int, default 20
        Neighbours that define typicality (half the cluster when it is smaller than twice this).
    max_reference : int, default 2000
        A cluster larger than this measures its members' density against a seeded subset of this
        many members (exact below it): what keeps 100,000-image pools within seconds.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.zeros((40, 2)), np.full((10, 2), 5.0)])
    >>> x += np.random.default_rng(0).normal(scale=0.1, size=x.shape)
    >>> SaalTypicalStrategy(n_clusters=2).select(x, 5, seed=0).cluster.tolist()
    [0, 0, 1, 0, 0]
    """

    name = "saal-typical"

    def __init__(self, n_clusters: int = 10, k_neighbors: int = 20, max_reference: int = 2000,
                 n_init: int | None = None, minibatch_above: int = MINIBATCH_ABOVE):
        super().__init__(n_clusters, n_init, minibatch_above)
        if int(k_neighbors) < 1 or int(max_reference) < 2:
            raise SelectionError(f"saal-typical needs k_neighbors >= 1 and max_reference >= 2, got {k_neighbors} "
                                 f"and {max_reference}")
        self.k_neighbors = int(k_neighbors)
        self.max_reference = int(max_reference)

    def rank_key(self, x: np.ndarray, clustering: Clustering, clusters: np.ndarray) -> np.ndarray:
        """Minus each member's typicality within its own cluster (the whole cluster, so extensions agree)."""
        from saal.selection.typiclust import typicality

        key = np.zeros(x.shape[0])
        for c in clusters:
            members = np.flatnonzero(clustering.labels == c)
            reference = None
            if members.size > self.max_reference:  # seeded by the cluster: the same subset in every call
                reference = np.sort(np.random.default_rng(int(c)).choice(members.size, self.max_reference,
                                                                         replace=False))
            key[members] = -typicality(x[members], self.k_neighbors, reference)
        return key
