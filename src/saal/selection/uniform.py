"""Random selection: the baseline every other strategy has to beat."""

from __future__ import annotations

import numpy as np

from saal.selection.base import ColdStartStrategy, Extension


class RandomStrategy(ColdStartStrategy):
    """A seeded permutation of the pool, read from the front.

    The permutation depends on the seed and the pool size only, so a larger
    budget with the same seed extends a smaller one; items already selected
    (by this or any other strategy) are skipped. No parameters.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((100, 1))
    >>> small = RandomStrategy().select(x, 3, seed=1).indices
    >>> RandomStrategy().select(x, 5, seed=1).indices[:3].tolist() == small.tolist()
    True
    """

    name = "random"

    def _extend(self, x: np.ndarray, prior: np.ndarray, n_new: int, seed: int) -> Extension:
        perm = np.random.default_rng(seed).permutation(x.shape[0])
        taken = np.zeros(x.shape[0], dtype=bool)
        taken[prior] = True
        return Extension(new=perm[~taken[perm]][:n_new])
