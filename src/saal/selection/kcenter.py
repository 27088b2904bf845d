"""Greedy k-center (Sener & Savarese, ICLR 2018): the one farthest-first traversal of saal.

:func:`farthest_first` repeatedly adds the row farthest from everything chosen
so far, which 2-approximates the smallest covering radius: every image ends up
close to some annotated one. Memory is O(N): one vector holds each row's squared
distance to its nearest chosen row, updated by one matrix-vector product per
pick (no N x N matrix). Both the cold start :class:`KCenterStrategy` and the
diversity step of the uncertainty-diversity query run this same loop.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from saal.selection.base import ColdStartStrategy, Extension
from saal.selection.geometry import sqdist_to_point, squared_norms


def farthest_first(x: np.ndarray, n_new: int, *, start: Sequence[int] = (),
                   nearest_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows ``start`` (in their order), then ``n_new`` rows chosen farthest-first.

    ``nearest_sq`` (default: infinite) is each row's squared distance to points
    chosen before the call, e.g. an already labeled set; the first free pick
    is the row farthest from them (the first row when all are infinite). Ties
    go to the lower row. Returns ``(order, radius, nearest_sq)``: the rows of
    ``start`` and the new picks, each row's distance to its nearest earlier
    choice at the moment it was added (``nan`` when there was none), and the
    final squared distances (``-1`` marks chosen rows). Recording the distance
    *before* adding a row keeps a resumed traversal bit-identical to a fresh one.
    """
    sqn = squared_norms(x)
    nearest = np.full(x.shape[0], np.inf, dtype=x.dtype) if nearest_sq is None else nearest_sq.astype(x.dtype)
    order = np.empty(len(start) + n_new, dtype=np.int64)
    radius = np.full(order.size, np.nan)
    for rank in range(order.size):
        i = int(start[rank]) if rank < len(start) else int(np.argmax(nearest))
        order[rank] = i
        if np.isfinite(nearest[i]):
            radius[rank] = float(np.sqrt(nearest[i]))
        np.minimum(nearest, sqdist_to_point(x, sqn, i), out=nearest)
        nearest[i] = -1.0
    return order, radius, nearest


class KCenterStrategy(ColdStartStrategy):
    """Farthest-first traversal from ``already_selected``, or from a seeded random image when there is none.

    Each pick's ``distance`` is its distance to the nearest earlier pick when it
    was chosen, i.e. the covering radius just before it (``nan`` for the random
    first image); ``info["covering_radius"]`` is the radius after the last pick.
    No parameters.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> KCenterStrategy().select(x, 2, already_selected=[0]).indices.tolist()
    [0, 3]
    """

    name = "kcenter"

    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        start = list(prior)
        if not start and n_new:
            start = [int(np.random.default_rng(seed).integers(x.shape[0]))]
        order, radius, nearest = farthest_first(x, prior.size + n_new - len(start), start=start)
        rest = nearest[nearest >= 0]
        covering = float(np.sqrt(rest.max())) if rest.size else 0.0
        return Extension(new=order[prior.size:], distance=radius, info={"covering_radius": covering})
