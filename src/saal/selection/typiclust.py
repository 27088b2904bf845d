"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, "Active learning on a budget").

At small budgets the best first labels are *typical* (dense-region) and
*diverse*. TypiClust clusters the pool into ``|already selected| + budget``
k-means clusters (at most ``max_clusters``), then visits the clusters in a fixed
order, fewest labeled members first and larger clusters first among equals,
taking from each the most typical member not yet chosen. Typicality is the
inverse of the mean distance to the ``k`` nearest remaining members of the same
cluster, with ``k = min(k_neighbors, remaining // 2)`` so that a small cluster
measures density among half of itself. Clusters with fewer than
``min_cluster_size`` members are never visited. These are the authors'
published choices (20 neighbours, clusters of more than 5 images, at most 500
clusters, typicality ``1 / (mean distance + 1e-5)``).

Two cases the published method leaves open, needed on small pools: when no
cluster is large enough, every cluster is visited; when the budget goes round
the visiting order again, clusters whose members are all chosen are skipped.
``distance`` is each item's distance to its cluster centre; the clustering is
redone for every call (its size depends on the budget), so the prior items'
clusters refer to the current call.
"""

from __future__ import annotations

import numpy as np

from saal.errors import SelectionError
from saal.selection.base import ColdStartStrategy, Extension
from saal.selection.geometry import sqdist_blocks, squared_norms
from saal.selection.kmeans import MINIBATCH_ABOVE, fit_kmeans

#: Added to the mean neighbour distance before inverting it (the authors' value).
TYPICALITY_EPS = 1e-5


def typicality(x: np.ndarray, k_neighbors: int, reference: np.ndarray | None = None) -> np.ndarray:
    """``1 / (mean distance to the k nearest other rows + eps)``, ``k = min(k_neighbors, len(reference) // 2)``.

    ``reference`` (default: every row) are the rows that count as neighbours; a seeded subset of a
    large cluster estimates the same density at a fraction of the cost. A single row (no neighbour)
    gets typicality 0. Exact and brute force, in row blocks (no rows x reference matrix beyond a block).
    """
    m = x.shape[0]
    ref = np.arange(m) if reference is None else np.asarray(reference, dtype=np.int64)
    k = min(k_neighbors, ref.size // 2)
    if k < 1:
        return np.zeros(m)
    x64 = np.asarray(x, dtype=np.float64)
    y = x64[ref]
    in_reference = np.zeros(m, dtype=bool)
    in_reference[ref] = True
    mean = np.empty(m)
    for s, d2 in sqdist_blocks(x64, y, squared_norms(y)):
        nearest = np.sqrt(np.sort(np.partition(d2, k, axis=1)[:, :k + 1], axis=1))
        # a reference row finds itself first (distance 0): drop that column; the others drop their (k+1)-th
        own = in_reference[s:s + d2.shape[0], None]
        mean[s:s + d2.shape[0]] = np.where(own, nearest[:, 1:], nearest[:, :-1]).mean(axis=1)
    return 1.0 / (mean + TYPICALITY_EPS)


#: Neighbours kept per member beyond ``k_neighbors``: how many members a cluster can lose before its
#: neighbour lists are measured again.
SPARE_NEIGHBOURS = 8


def nearest_others(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n_neighbors`` nearest other rows as ``(indices, distances)``, nearest first.

    Exact and brute force in row blocks, like :func:`typicality` (no rows x rows matrix beyond a block).
    """
    m = x.shape[0]
    n = min(n_neighbors, m - 1)
    x64 = np.asarray(x, dtype=np.float64)
    index = np.empty((m, n), dtype=np.int64)
    dist = np.empty((m, n))
    for s, d2 in sqdist_blocks(x64, x64, squared_norms(x64)):
        rows = np.arange(d2.shape[0])
        d2[rows, s + rows] = np.inf  # a row is not its own neighbour
        near = np.argpartition(d2, n - 1, axis=1)[:, :n] if n < m - 1 else np.argsort(d2, axis=1)[:, :n]
        near_d2 = np.take_along_axis(d2, near, axis=1)
        order = np.argsort(near_d2, axis=1, kind="stable")
        index[s:s + rows.size] = np.take_along_axis(near, order, axis=1)
        dist[s:s + rows.size] = np.sqrt(np.take_along_axis(near_d2, order, axis=1))
    return index, dist


class RemainingDensity:
    """The typicality of a cluster's remaining members, kept up to date as members are taken.

    TypiClust measures density among the members not chosen yet, so a cluster visited again (budgets above
    the number of clusters) needs it again without the members taken since. Measuring once and then dropping
    taken members from every member's neighbour list gives the same values as :func:`typicality` on the
    remaining members at a fraction of the cost (the lists keep :data:`SPARE_NEIGHBOURS` spares; a list that
    runs short is measured again). What keeps 100,000-image pools within the 30-second target.
    """

    def __init__(self, x: np.ndarray, members: np.ndarray, k_neighbors: int):
        self.x, self.members, self.k_neighbors = x, members, k_neighbors
        self.rows = np.empty(0, dtype=np.int64)  # pool rows the lists were measured on (none yet)
        self.index, self.dist = np.empty((0, 0), dtype=np.int64), np.empty((0, 0))

    def typicality(self, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(free, typicality)``: the members not ``taken`` (in member order) and their typicality."""
        free = self.members[~taken[self.members]]
        k = min(self.k_neighbors, free.size // 2)
        if k < 1:
            return free, np.zeros(free.size)
        alive, valid = ~taken[self.rows], ~taken[self.rows[self.index]]
        if not self.rows.size or (valid[alive].sum(axis=1) < k).any():
            self.rows = free
            self.index, self.dist = nearest_others(self.x[free], self.k_neighbors + SPARE_NEIGHBOURS)
            alive, valid = np.ones(free.size, dtype=bool), np.ones(self.index.shape, dtype=bool)
        first = np.argsort(~valid[alive], axis=1, kind="stable")[:, :k]  # the k nearest still free, in order
        mean = np.take_along_axis(self.dist[alive], first, axis=1).mean(axis=1)
        return self.rows[alive], 1.0 / (mean + TYPICALITY_EPS)


class TypiclustStrategy(ColdStartStrategy):
    """TypiClust: one typical image from each of the largest, least covered clusters.

    Parameters
    ----------
    k_neighbors : int, default 20
        Neighbours that define an image's typicality (fewer in clusters smaller than twice this).
    min_cluster_size : int, default 6
        Clusters with fewer members are not visited (the authors keep clusters of more than 5).
    max_clusters : int, default 500
        Cap on the number of k-means clusters, which bounds the clustering cost at large budgets.
    n_init : int or None
        k-means restarts (None: scikit-learn's default for the pool size, see :func:`fit_kmeans`).
    minibatch_above : int
        Pools larger than this are clustered with mini-batch k-means.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.zeros((30, 2)), np.full((30, 2), 5.0)])
    >>> x += np.random.default_rng(0).normal(scale=0.1, size=x.shape)
    >>> sel = TypiclustStrategy().select(x, 2, seed=0)
    >>> sorted(int(i) // 30 for i in sel.indices)   # one image from each blob
    [0, 1]
    """

    name = "typiclust"

    def __init__(self, k_neighbors: int = 20, min_cluster_size: int = 6, max_clusters: int = 500,
                 n_init: int | None = None, minibatch_above: int = MINIBATCH_ABOVE):
        for opt, val in (("k_neighbors", k_neighbors), ("max_clusters", max_clusters)):
            if int(val) < 1:
                raise SelectionError(f"typiclust {opt} must be >= 1, got {val}")
        self.k_neighbors = int(k_neighbors)
        self.min_cluster_size = int(min_cluster_size)
        self.max_clusters = int(max_clusters)
        self.n_init = n_init
        self.minibatch_above = int(minibatch_above)

    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        k = min(prior.size + n_new, self.max_clusters)
        cl = fit_kmeans(x, k, seed, n_init=self.n_init, minibatch_above=self.minibatch_above)
        sizes = cl.sizes
        members = np.split(np.argsort(cl.labels, kind="stable"), np.cumsum(sizes)[:-1])
        labeled = np.bincount(cl.labels[prior], minlength=cl.k)
        # fewest labeled first, then largest, then lowest number; fixed for the whole call
        every = np.lexsort((np.arange(cl.k), -sizes, labeled))
        order = every[sizes[every] >= self.min_cluster_size]
        taken = np.zeros(x.shape[0], dtype=bool)
        taken[prior] = True

        def has_free(c: int) -> bool:
            return bool((~taken[members[c]]).any())

        new = np.empty(n_new, dtype=np.int64)
        score = np.full(prior.size + n_new, np.nan)
        densities: dict[int, RemainingDensity] = {}
        turn = 0
        for j in range(n_new):
            if not any(has_free(c) for c in order):  # only clusters below the size filter have images left
                order, turn = every, 0
            while not has_free(order[turn % order.size]):
                turn += 1
            c = int(order[turn % order.size])
            turn += 1
            if c not in densities:
                densities[c] = RemainingDensity(x, members[c], self.k_neighbors)
            free, typ = densities[c].typicality(taken)
            pos = int(np.argmax(typ))
            new[j] = free[pos]
            taken[free[pos]] = True
            score[prior.size + j] = typ[pos]
        chosen = np.concatenate([prior, new])
        return Extension(
            new=new,
            cluster=cl.labels[chosen],
            distance=cl.distances[chosen],
            pool_clusters=cl.labels,
            centres=cl.centres,
            info={"n_clusters": cl.k, "typicality": score.tolist()},
        )
