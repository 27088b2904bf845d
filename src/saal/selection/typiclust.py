"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, "Active learning on a budget").

At small budgets the best first labels are *typical* (dense-region) and
*diverse*. TypiClust clusters the pool into ``|already selected| + budget``
k-means clusters, then repeatedly takes the largest cluster not yet holding a
selected item and adds its most typical member, typicality being the inverse
mean distance to the ``k_neighbors`` (20) nearest neighbours within the cluster.
Clusters smaller than ``min_cluster_size`` (5) are skipped while larger ones
remain; the number of clusters is capped at ``max_clusters`` (500) to bound the
k-means cost, beyond which a cluster can receive a second item (the least
covered, largest cluster goes first). These three defaults are the values of
the authors' published setup. ``distance`` is each item's distance to its
cluster centre; the clustering is redone for every call (its size depends on
the budget), so the prior items' clusters refer to the current call.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from saal.errors import SelectionError
from saal.selection.base import ColdStartStrategy, Extension
from saal.selection.kmeans import MINIBATCH_ABOVE, fit_kmeans


def mean_knn_distance(x: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of each row to its ``k`` nearest other rows (exact, brute force)."""
    m = x.shape[0]
    k = min(k, m - 1)
    if k < 1:
        return np.zeros(m)
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
    dist, _ = nn.kneighbors(x)
    # column 0 is the point itself (or an exact duplicate: also distance 0)
    return dist[:, 1:].mean(axis=1)


class TypiclustStrategy(ColdStartStrategy):
    name = "typiclust"

    def __init__(self, k_neighbors: int = 20, min_cluster_size: int = 5, max_clusters: int = 500,
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
        covered = np.bincount(cl.labels[prior], minlength=cl.k)
        free = sizes - covered
        taken = np.zeros(x.shape[0], dtype=bool)
        taken[prior] = True
        knn_mean: dict[int, np.ndarray] = {}
        new = np.empty(n_new, dtype=np.int64)
        typicality = np.full(prior.size + n_new, np.nan)
        for j in range(n_new):
            eligible = free > 0
            big = eligible & (sizes >= self.min_cluster_size)
            ok = big if big.any() else eligible
            # least covered first, then largest, then lowest number
            c = int(np.lexsort((np.arange(cl.k), -sizes, covered, ~ok))[0])
            if c not in knn_mean:
                knn_mean[c] = mean_knn_distance(x[members[c]], self.k_neighbors)
            mine = members[c]
            score = np.where(taken[mine], np.inf, knn_mean[c])
            pos = int(np.argmin(score))  # most typical = smallest mean kNN distance
            i = int(mine[pos])
            new[j] = i
            taken[i] = True
            covered[c] += 1
            free[c] -= 1
            typicality[prior.size + j] = 1.0 / score[pos] if score[pos] > 0 else np.inf
        chosen = np.concatenate([prior, new])
        return Extension(
            new=new,
            cluster=cl.labels[chosen],
            distance=cl.distances[chosen],
            pool_clusters=cl.labels,
            centres=cl.centres,
            info={"n_clusters": cl.k, "typicality": typicality.tolist()},
        )
