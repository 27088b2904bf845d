"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022, "Active learning through a covering lens").

Each selected image "covers" the ball of radius ``delta`` around it; ProbCover
greedily picks the image whose ball holds the most not-yet-covered images
(max coverage on the delta-ball graph). ``delta`` is either given or chosen by
the paper's purity heuristic: with k-means pseudo-labels (``n_classes``
clusters), a ball is *pure* when all its points share a label, and ``delta`` is
the largest radius for which at least ``purity`` (0.95) of the balls are pure.
Once everything is covered, the remaining picks are a seeded random draw
(recorded as ``info["full_coverage_at"]``).

Memory and time limits (why the knobs exist), for N images of dimension D:

* purity is estimated on ``purity_sample`` (2000) seeded query points against
  the whole pool: ``purity_sample x N x D`` work, no N x N matrix;
* candidate ball centres are all images up to ``max_candidates`` (10,000), a
  seeded random subset beyond that (coverage is still counted over the whole
  pool): building the graph costs ``candidates x N x D``;
* the graph is stored sparse (int32 indices); a heuristic ``delta`` is lowered
  until the estimated mean ball size is at most ``max_avg_degree`` (200), and a
  graph over ``4 x max_avg_degree`` edges per candidate is refused (a given
  ``delta`` that large raises :class:`~saal.errors.SelectionError`). At the
  defaults the graph stays under ~100 MB for any N.

Items get no cluster (-1) and no distance (``nan``); ``info`` reports
``delta``, the covered fraction and the graph size.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from saal.errors import SelectionError
from saal.selection.base import ColdStartStrategy, Extension
from saal.selection.geometry import sqdist_blocks, squared_norms
from saal.selection.kmeans import MINIBATCH_ABOVE, fit_kmeans


def purity_delta(x: np.ndarray, sqn: np.ndarray, labels: np.ndarray, queries: np.ndarray,
                 purity: float, max_avg_degree: int) -> tuple[float, dict]:
    """The largest delta with >= ``purity`` pure balls among ``queries``, then capped by ball size.

    A query's ball is pure while delta is below its distance to the nearest
    point of another pseudo-label, so the purity-``p`` delta is a quantile of
    those distances. The cap keeps the mean ball size (counted against the
    whole pool, each query keeping its ``4 x max_avg_degree`` nearest
    distances) at most ``max_avg_degree``; a query whose kept distances are all
    inside delta counts as covering the whole pool (a pessimistic estimate).
    """
    n = x.shape[0]
    m = min(n, 4 * max_avg_degree)
    other = np.empty(queries.size)
    near = np.empty((queries.size, m))
    for s, d2 in sqdist_blocks(x[queries], x, sqn):
        q = queries[s:s + d2.shape[0]]
        other[s:s + q.size] = np.where(labels[None, :] != labels[q, None], d2, np.inf).min(axis=1)
        near[s:s + q.size] = np.sort(np.partition(d2, m - 1, axis=1)[:, :m], axis=1)
    other = np.sqrt(other)
    near = np.sqrt(near)
    j = int(np.floor((1.0 - purity) * queries.size))
    ranked = np.sort(other)
    delta = float(np.nextafter(ranked[min(j, ranked.size - 1)], 0.0))

    def mean_ball(d: float) -> float:
        counts = (near <= d).sum(axis=1).astype(np.float64)
        counts[near[:, -1] <= d] = n if m < n else m
        return float(counts.mean())

    pure_delta = delta
    if mean_ball(delta) > max_avg_degree:
        values = np.unique(near)
        lo, hi = 0, int(np.searchsorted(values, delta, side="right"))  # values[:hi] <= delta
        while lo < hi:  # the last value that keeps the mean ball size within the cap
            mid = (lo + hi) // 2
            if mean_ball(float(values[mid])) <= max_avg_degree:
                lo = mid + 1
            else:
                hi = mid
        delta = float(values[lo - 1]) if lo else 0.0
    if not np.isfinite(delta):  # one pseudo-label only and a small pool: the ball holding everything
        delta = float(near.max())
    return delta, {"purity_delta": pure_delta if np.isfinite(pure_delta) else None}


def ball_graph(x: np.ndarray, sqn: np.ndarray, centres: np.ndarray, delta: float,
               max_edges: int) -> sparse.csr_matrix:
    """Sparse ``len(centres) x N`` 0/1 matrix: ``[i, j] = 1`` when ``|x_centres[i] - x_j| <= delta``."""
    r2 = delta * delta
    cols: list[np.ndarray] = []
    counts = np.zeros(centres.size, dtype=np.int64)
    total = 0
    for s, d2 in sqdist_blocks(x[centres], x, sqn):
        hit = d2 <= r2
        # the centre itself is always inside its ball (guards against rounding)
        hit[np.arange(d2.shape[0]), centres[s:s + d2.shape[0]]] = True
        rows, c = np.nonzero(hit)
        total += c.size
        if total > max_edges:
            raise SelectionError(
                f"probcover delta={delta:.4g} puts more than {max_edges} pairs in the ball graph; "
                "use a smaller delta (or a larger max_avg_degree)"
            )
        counts[s:s + d2.shape[0]] = np.bincount(rows, minlength=d2.shape[0])
        cols.append(c.astype(np.int32))
    indptr = np.concatenate([[0], np.cumsum(counts)])
    col = np.concatenate(cols) if cols else np.zeros(0, np.int32)
    data = np.ones(col.size, dtype=np.int32)
    return sparse.csr_matrix((data, col, indptr), shape=(centres.size, x.shape[0]))


class ProbCoverStrategy(ColdStartStrategy):
    """ProbCover: greedy maximum coverage of delta-balls (see the module docstring for the limits).

    Parameters
    ----------
    delta : float or None
        Ball radius in feature units; None: the purity heuristic chooses it.
    purity : float, default 0.95
        Share of pure balls the heuristic's delta must keep.
    n_classes : int, default 10
        k-means clusters that serve as pseudo-labels for the purity heuristic.
    purity_sample : int, default 2000
        Query points the purity is estimated on.
    max_candidates : int, default 10000
        Ball centres considered (a seeded subset of larger pools).
    max_avg_degree : int, default 200
        Cap on the estimated mean ball size (memory bound of the ball graph).
    n_init, minibatch_above
        k-means settings of the pseudo-labels, as in :class:`~saal.selection.cluster.SaalStrategy`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.zeros((20, 1)), np.full((5, 1), 9.0)])
    >>> ProbCoverStrategy(delta=1.0).select(x, 2).indices.tolist()   # the big ball first, then the other
    [0, 20]
    """

    name = "probcover"

    def __init__(self, delta: float | None = None, purity: float = 0.95, n_classes: int = 10,
                 purity_sample: int = 2000, max_candidates: int = 10_000, max_avg_degree: int = 200,
                 n_init: int | None = None, minibatch_above: int = MINIBATCH_ABOVE):
        if delta is not None and not (np.isfinite(delta) and delta >= 0):
            raise SelectionError(f"probcover delta must be a finite number >= 0, got {delta}")
        if not 0.0 < purity <= 1.0:
            raise SelectionError(f"probcover purity must be in (0, 1], got {purity}")
        for opt, val in (("n_classes", n_classes), ("purity_sample", purity_sample),
                         ("max_candidates", max_candidates), ("max_avg_degree", max_avg_degree)):
            if int(val) < 1:
                raise SelectionError(f"probcover {opt} must be >= 1, got {val}")
        self.delta = None if delta is None else float(delta)
        self.purity = float(purity)
        self.n_classes = int(n_classes)
        self.purity_sample = int(purity_sample)
        self.max_candidates = int(max_candidates)
        self.max_avg_degree = int(max_avg_degree)
        self.n_init = n_init
        self.minibatch_above = int(minibatch_above)

    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        n = x.shape[0]
        rng = np.random.default_rng(seed)
        sqn = squared_norms(x)
        queries = np.sort(rng.choice(n, size=min(n, self.purity_sample), replace=False))
        candidates = np.sort(rng.choice(n, size=min(n, self.max_candidates), replace=False))
        fallback = rng.permutation(n)
        info: dict = {}
        if self.delta is None:
            labels = fit_kmeans(x, self.n_classes, seed, n_init=self.n_init,
                                minibatch_above=self.minibatch_above).labels
            delta, extra = purity_delta(x, sqn, labels, queries, self.purity, self.max_avg_degree)
            info.update(extra)
        else:
            delta = self.delta
        max_edges = 4 * self.max_avg_degree * max(candidates.size, prior.size)
        covered = np.zeros(n, dtype=bool)
        if prior.size:
            covered[ball_graph(x, sqn, prior, delta, max_edges).indices] = True
        graph = ball_graph(x, sqn, candidates, delta, max_edges)
        reverse = graph.T.tocsr()  # point -> the candidate balls holding it
        degree = graph @ (~covered).astype(np.int32)
        selected = np.zeros(n, dtype=bool)
        selected[prior] = True
        degree[selected[candidates]] = -1
        new = np.empty(n_new, dtype=np.int64)
        j = 0
        while j < n_new:
            c = int(np.argmax(degree))
            if degree[c] <= 0:
                break
            i = int(candidates[c])
            ball = graph.indices[graph.indptr[c]:graph.indptr[c + 1]]
            fresh = ball[~covered[ball]]
            covered[fresh] = True
            degree -= np.bincount(reverse[fresh].indices, minlength=candidates.size).astype(degree.dtype)
            degree[c] = -1
            selected[i] = True
            new[j] = i
            j += 1
        info["full_coverage_at"] = None
        if j < n_new:  # everything is covered: the rest is a seeded random draw
            info["full_coverage_at"] = int(prior.size + j + 1)
            new[j:] = fallback[~selected[fallback]][: n_new - j]
        info.update(delta=delta, coverage=float(covered.mean()), n_candidates=int(candidates.size),
                    n_edges=int(graph.nnz))
        return Extension(new=new, info=info)
