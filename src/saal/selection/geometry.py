"""Euclidean distances without an N x N matrix.

The strategies must run on pools of 100,000 images, where a full distance
matrix (40 GB in float32) is out of the question. These helpers compute
distances from one point, or from a small block of points, to the whole pool
with the ``|x|^2 + |y|^2 - 2 x.y`` expansion (one BLAS product per block).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

# Rows of a query block: block x N float32 stays ~50 MB at N = 100k.
BLOCK = 128


def squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def sqdist_to_point(x: np.ndarray, sqn: np.ndarray, i: int) -> np.ndarray:
    """Squared distances from row ``i`` to every row of ``x`` (clamped at 0).

    Always computed the same way (one matrix-vector product), so a point's
    distance to a given centre is bit-identical whichever call computes it:
    that is what keeps greedy selections reproducible when resumed.
    """
    d = sqn + sqn[i] - 2.0 * (x @ x[i])
    np.maximum(d, 0.0, out=d)
    return d


def sqdist_blocks(q: np.ndarray, x: np.ndarray, sqn_x: np.ndarray | None = None,
                  block: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, D2)`` with ``D2`` the squared distances of ``q[start:start+block]`` to all ``x``."""
    if sqn_x is None:
        sqn_x = squared_norms(x)
    for s in range(0, q.shape[0], block):
        qb = q[s:s + block]
        d = squared_norms(qb)[:, None] + sqn_x[None, :] - 2.0 * (qb @ x.T)
        np.maximum(d, 0.0, out=d)
        yield s, d


def distances_to_centres(x: np.ndarray, labels: np.ndarray, centres: np.ndarray, block: int = 8192) -> np.ndarray:
    """Exact Euclidean distance of every row of ``x`` to ``centres[labels[row]]`` (in row blocks)."""
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], block):
        diff = x[s:s + block] - centres[labels[s:s + block]]
        out[s:s + block] = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
    return out
