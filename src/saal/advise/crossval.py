"""A learning curve without a test split: cross-validation on the labeled images.

A team that labels its own images often has no test masks, yet the labeled images themselves can score a model
that did not see them. The labeled set is split into ``folds`` folds; for each fold and each fraction ``f`` of
:data:`FRACTIONS` a model is trained on the first ``f`` of the other folds' images (a fixed, seeded order, so the
smaller training sets are nested in the larger ones and the curve is not jagged by which images each size got)
and scores the held-out fold. Every labeled image is thus scored once per size by a model that never saw it,
which gives the same ``(sizes, images)`` table of per-image Dice the test split gives: the same fit and the same
bootstrap (over the labeled images) apply.

The largest size is ``(folds - 1) / folds`` of the labeled set, so the curve stops short of the current labels
and its forecast reaches further than a test-split curve's; and the held-out images were chosen by the queries
(hard, or typical), not drawn at random, so the level of the curve can differ from a random test set's. Its
shape, how fast Dice still grows per doubling, is what the advice uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import SaalError
from ..runtime import Stream, stream_seed

FOLDS = 3
#: Shares of the other folds' images a model is trained on: three sizes, a doubling apart.
FRACTIONS = (0.25, 0.5, 1.0)
#: Below this many training images at the smallest size the curve would be noise.
MIN_TRAIN = 2


@dataclass(frozen=True)
class CrossvalFit:
    """One model of the plan: trained on ``train`` (positions in the labeled set), scored on ``held_out``."""

    size_index: int
    fold: int
    train: np.ndarray
    held_out: np.ndarray


def crossval_sizes(n: int, folds: int = FOLDS, fractions=FRACTIONS) -> list[int]:
    """Training-set sizes of the plan for ``n`` labeled images (the same for every fold)."""
    if folds < 2:
        raise SaalError(f"cross-validation needs at least 2 folds, got {folds}")
    smallest_train = n - -(-n // folds)  # the fold sizes differ by at most one: the largest fold leaves this many
    sizes = [int(np.floor(f * smallest_train)) for f in fractions]
    if n < folds or sizes[0] < MIN_TRAIN or len(set(sizes)) < len(sizes):
        raise SaalError(f"{n} labeled images are too few for a {folds}-fold cross-validated learning curve "
                        f"(the smallest model would train on {max(sizes[0], 0)} images)")
    return sizes


def crossval_plan(n: int, *, folds: int = FOLDS, fractions=FRACTIONS, seed: int = 0) -> list[CrossvalFit]:
    """Every model to train: ``len(fractions) x folds`` of them, each fold's training order fixed by ``seed``."""
    sizes = crossval_sizes(n, folds, fractions)
    rng = np.random.default_rng(stream_seed(seed, Stream.CROSSVAL_FOLDS))
    fold_of = rng.permutation(n) % folds
    plan = []
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        order = rng.permutation(np.flatnonzero(fold_of != fold))
        plan += [CrossvalFit(s, fold, np.sort(order[:size]), held_out) for s, size in enumerate(sizes)]
    return plan


def crossval_dice(score: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int, *, folds: int = FOLDS,
                  fractions=FRACTIONS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes, per_image)``: training sizes ``(R,)`` and held-out Dice ``(R, n)`` of every labeled image.

    ``score(train, held_out)`` trains a model on the positions ``train`` and returns the Dice of each
    position of ``held_out``, in that order.
    """
    sizes = np.array(crossval_sizes(n, folds, fractions))
    per_image = np.full((len(sizes), n), np.nan)
    for fit in crossval_plan(n, folds=folds, fractions=fractions, seed=seed):
        dice = np.asarray(score(fit.train, fit.held_out), dtype=float)
        if dice.shape != fit.held_out.shape:
            raise SaalError(f"score returned {dice.shape[0] if dice.ndim else 'no'} Dice for "
                            f"{len(fit.held_out)} held-out images")
        per_image[fit.size_index, fit.held_out] = dice
    return sizes, per_image
