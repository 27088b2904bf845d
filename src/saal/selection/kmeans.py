"""Seeded k-means with a canonical cluster numbering, shared by the clustering strategies.

Two things matter beyond "run sklearn": (1) the same seed and features give the
same clusters *with the same numbers*, so a selection can be resumed and its
manifest compared across runs; (2) it must work for 100,000 x 512 features in
seconds, so large pools use mini-batch k-means.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

from saal.errors import SelectionError
from saal.selection.geometry import distances_to_centres

# Above this many points full Lloyd k-means (n_init restarts over the whole
# pool) costs tens of seconds; mini-batch k-means gives near-identical
# partitions in about one.
MINIBATCH_ABOVE = 20_000


@dataclass(frozen=True, eq=False)
class Clustering:
    """A partition of the pool: cluster 0 is the largest (ties: the one holding the lowest index)."""

    labels: np.ndarray  # (N,) int64 in 0..k-1
    centres: np.ndarray  # (k, D)
    distances: np.ndarray  # (N,) distance of each point to its own centre

    @property
    def k(self) -> int:
        return int(self.centres.shape[0])

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)


def count_distinct(x: np.ndarray) -> int:
    """Number of distinct rows (k-means cannot make more non-empty clusters than this)."""
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1])))
    return int(np.unique(rows.ravel()).size)


def fit_kmeans(x: np.ndarray, k: int, seed: int, *, n_init: int | None = None,
               minibatch_above: int = MINIBATCH_ABOVE) -> Clustering:
    """k-means into ``min(k, distinct rows)`` clusters, renumbered by decreasing size.

    ``n_init`` restarts (default 10 for full k-means; for mini-batch 3, or 1
    above 50 clusters) keep the lowest-inertia run. Empty clusters (possible
    with mini-batch) are dropped.
    """
    if k < 1:
        raise SelectionError(f"number of clusters must be >= 1, got {k}")
    k_eff = min(int(k), count_distinct(x))
    # scikit-learn's k-means++ seeding is several times slower on float32 (it
    # re-computes distances in float64 chunks), so fit in float64 throughout.
    x64 = np.asarray(x, dtype=np.float64)
    if x.shape[0] > minibatch_above:
        # restarts cost linearly in k and matter little with many clusters
        restarts = n_init or (3 if k_eff <= 50 else 1)
        model = MiniBatchKMeans(n_clusters=k_eff, n_init=restarts, random_state=seed, batch_size=4096)
    else:
        model = KMeans(n_clusters=k_eff, n_init=n_init or 10, random_state=seed)
    with warnings.catch_warnings():
        # Near-duplicate features can make k-means report fewer distinct
        # clusters; the empty ones are dropped below, so the warning is noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x64)
    del x64
    raw = np.asarray(model.labels_, dtype=np.int64)
    used, first, sizes = np.unique(raw, return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))  # by size descending, then first member
    remap = np.empty(int(raw.max()) + 1, dtype=np.int64)
    remap[used[order]] = np.arange(used.size)
    labels = remap[raw]
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)[used[order]]
    return Clustering(labels, centres, distances_to_centres(x, labels, centres))
