"""Core-set selection by greedy k-center (Sener & Savarese, ICLR 2018).

Repeatedly add the pool item farthest from everything selected so far, which
2-approximates the smallest covering radius: every image ends up close to some
annotated one. Memory is O(N): one vector holds each item's squared distance to
its nearest selected item, updated by one matrix-vector product per pick (no
N x N matrix). Each pick's ``distance`` is that nearest-selected distance at
the moment it was chosen, i.e. the covering radius just before it; the first
item of a fresh selection (a seeded random point) has ``nan``.
"""

from __future__ import annotations

import numpy as np

from saal.selection.base import ColdStartStrategy, Extension
from saal.selection.geometry import sqdist_to_point, squared_norms


class KCenterStrategy(ColdStartStrategy):
    """Farthest-first traversal starting from ``already_selected`` (or a seeded random point)."""

    name = "kcenter"

    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        n = x.shape[0]
        sqn = squared_norms(x)
        # squared distance to the nearest selected item; -1 marks selected items
        nearest = np.full(n, np.inf, dtype=x.dtype)
        distance = np.full(prior.size + n_new, np.nan)

        def add(rank: int, i: int) -> None:
            # Record the radius before adding i, exactly as a fresh run would
            # have when it picked i: this keeps resumed runs bit-identical.
            if np.isfinite(nearest[i]):
                distance[rank] = float(np.sqrt(nearest[i]))
            np.minimum(nearest, sqdist_to_point(x, sqn, int(i)), out=nearest)
            nearest[i] = -1.0

        for rank, i in enumerate(prior):
            add(rank, int(i))
        new = np.empty(n_new, dtype=np.int64)
        for j in range(n_new):
            i = int(np.random.default_rng(seed).integers(n)) if prior.size + j == 0 else int(np.argmax(nearest))
            new[j] = i
            add(prior.size + j, i)
        rest = nearest[nearest >= 0]
        radius = float(np.sqrt(rest.max())) if rest.size else 0.0
        return Extension(new=new, distance=distance, info={"covering_radius": radius})
