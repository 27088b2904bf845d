"""The learning curve: Dice against the number of labels, fitted as an inverse power law, with a bootstrap.

``dice(n) = a - b * n**(-c)`` is the standard model of learning curves (Figueroa et al., 2012, "Predicting sample
size required for classification performance"; Hestness et al., 2017): ``a`` is the plateau the curve approaches,
``b * n**(-c)`` the part more labels still remove. An active-learning run gives only a handful of points (3 to 5
rounds), so the parameters are constrained to what makes a forecast sensible:

* ``a <= 1`` (Dice cannot exceed 1) and ``b >= 0`` (more labels never lower the expected Dice), so every
  forecast is non-decreasing and at most 1;
* ``C_MIN <= c <= C_MAX``. Below ``C_MIN`` the curve is indistinguishable from a straight line in log n; above
  ``C_MAX`` (gains shrinking more than four-fold per doubling of the labels) from a plateau already reached.

For a fixed ``c`` the model is linear in ``(a, b)``, so the fit profiles the least-squares error over a grid of
``c`` and solves ``(a, b)`` in closed form under the bounds: no starting point, no local minimum, and thousands
of bootstrap refits in one vectorised pass. A curve needs at least three rounds (three parameters).

The interval resamples test images, not rounds: every round was scored on the same test images
(``eval/round_N.csv``), so one resample of them, applied to all rounds at once, gives one plausible set of round
means, and refitting each such set shows how far the forecast moves with the test sample. It does not see the
training noise of the rounds themselves (another seed would give another curve), so it is a lower bound on the
forecast's uncertainty; ``benchmarks/bench_advisor.py`` measures its real coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SaalError

C_MIN, C_MAX = 0.05, 2.0
#: Exponents tried by the profile fit: steps of 0.01, finer than the noise of any few-round curve.
C_GRID = np.round(np.arange(C_MIN, C_MAX + 1e-9, 0.01), 2)
#: Rounds a curve needs: one per parameter.
MIN_POINTS = 3


def power_law(n, a, b, c):
    """``a - b * n**(-c)``, broadcast over every argument."""
    return a - b * np.power(np.asarray(n, dtype=float), -np.asarray(c, dtype=float))


@dataclass(frozen=True)
class Curve:
    """A fitted inverse power law ``a - b * n**(-c)``."""

    a: float
    b: float
    c: float

    def __call__(self, n) -> np.ndarray:
        return power_law(n, self.a, self.b, self.c)

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "c": self.c}


def fit_many(n, dice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``(a, b, c)`` of each row of ``dice`` (``(B, R)``, or ``(R,)``) against labels ``n`` (``(R,)``).

    Returns three arrays of shape ``(B,)`` (``()`` for one curve). For each ``c`` of :data:`C_GRID` the best
    ``(a, b)`` with ``a <= 1``, ``b >= 0`` lies in the interior or on an edge of that box; all four candidates
    (free, ``b = 0``, ``a = 1``, both) are solved in closed form, clipped into the box, and the lowest error wins.
    """
    n = np.asarray(n, dtype=float)
    y = np.asarray(dice, dtype=float)
    if n.ndim != 1 or y.shape[-1] != len(n):
        raise SaalError(f"need one Dice per label count, got {y.shape[-1]} Dice for {len(n)} counts")
    if len(np.unique(n)) < MIN_POINTS or np.any(n <= 0):
        raise SaalError(f"a learning curve needs at least {MIN_POINTS} different positive label counts, got "
                        f"{sorted(set(n.tolist()))}")
    x = np.power(n[None, :], -C_GRID[:, None])[None]                   # (1, G, R)
    y3 = y.reshape(-1, 1, len(n))                                      # (B, 1, R)
    xm, ym = x.mean(-1), y3.mean(-1)                                   # (1, G), (B, 1)
    sxx = ((x - xm[..., None]) ** 2).sum(-1)
    sxy = ((x - xm[..., None]) * (y3 - ym[..., None])).sum(-1)         # (B, G)
    b_free = -sxy / sxx
    a_free = ym + b_free * xm
    b_top = ((1.0 - y3) * x).sum(-1) / (x * x).sum(-1)                 # a = 1: y = 1 - b x
    a_cand = np.stack(np.broadcast_arrays(a_free, ym, np.ones_like(a_free), np.ones_like(a_free)))
    b_cand = np.stack(np.broadcast_arrays(b_free, np.zeros_like(b_free), b_top, np.zeros_like(b_free)))
    a_cand, b_cand = np.minimum(a_cand, 1.0), np.maximum(b_cand, 0.0)  # (4, B, G)
    sse = ((y3[None] - (a_cand[..., None] - b_cand[..., None] * x[None])) ** 2).sum(-1)
    flat = sse.transpose(1, 0, 2).reshape(len(y3), -1)                 # (B, 4 * G)
    best = flat.argmin(-1)
    k, g = np.divmod(best, len(C_GRID))
    rows = np.arange(len(y3))
    a, b, c = a_cand[k, rows, g], b_cand[k, rows, g], C_GRID[g]
    shape = y.shape[:-1]
    return a.reshape(shape), b.reshape(shape), c.reshape(shape)


def fit_curve(n, dice) -> Curve:
    """The inverse power law closest (least squares) to the points ``(n, dice)``, within the bounds."""
    a, b, c = fit_many(n, dice)
    return Curve(float(a), float(b), float(c))


def bootstrap_means(per_image: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Round means of ``n_boot`` resamples of the test images: ``(n_boot, R)`` from ``per_image`` ``(R, T)``.

    One resample of the ``T`` test images is applied to every round, keeping the rounds paired. Images with no
    Dice in some round (NaN) are ignored in that round's mean.
    """
    per_image = np.asarray(per_image, dtype=float)
    idx = np.random.default_rng(seed).integers(0, per_image.shape[1], size=(n_boot, per_image.shape[1]))
    return np.nanmean(per_image[:, idx], axis=-1).T
