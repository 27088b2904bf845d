"""Uncertainty heuristics: one score per image from the model's predictions.

After baal's design, a heuristic writes one thing, the per-pixel map of
:meth:`Heuristic.pixel_scores`; the base class reduces it to one score per image
(``reduction``, a constructor parameter) and owns the rest: checking the
prediction tensor, streaming batches (:meth:`~Heuristic.score_batches`, so the
pool's probabilities never sit in memory at once) and ranking. Choosing a batch
from the scores is the job of a :mod:`saal.active.queries` query, which composes
a heuristic (the top scores, or diverse picks among them).

Predictions are softmax probabilities shaped ``(B, T, C, H, W)``: ``T`` MC-dropout
samples (``T = 1`` for a deterministic pass), ``C`` classes (2 for lesion
segmentation). Entropies are in nats. With ``p̄ = mean_t p_t`` the MC-mean
probability of a pixel:

* ``entropy``  ``H(p̄) = -Σ_c p̄_c log p̄_c`` (predictive entropy);
* ``bald``     ``H(p̄) - mean_t H(p_t)`` (mutual information between the label
  and the weights, Houlsby et al. 2011 / Gal et al. 2017; needs ``T > 1``);
* ``variance`` ``mean_c Var_t(p_{t,c})``, which for two classes is the variance
  of the foreground probability (needs ``T > 1``).

Reductions over the pixels of an image:

* ``mean`` (default) -- favours images with a large uncertain area (typically a
  wide, ambiguous lesion border) over a single hard pixel;
* ``top10`` -- the mean of the 10 % most uncertain pixels: how hard the hardest
  part of the image is, whatever the lesion's size.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable

import numpy as np
import torch

from ..config import REDUCTIONS
from ..errors import SaalError


def reduce_pixels(pixel_scores: torch.Tensor, reduction: str) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B,)`` by ``reduction`` (one of :data:`REDUCTIONS`)."""
    flat = pixel_scores.flatten(1)
    if reduction == "mean":
        return flat.mean(1)
    if reduction == "top10":
        k = max(1, math.ceil(0.1 * flat.shape[1]))
        return flat.topk(k, dim=1, sorted=False).values.mean(1)
    raise SaalError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")


def _batch_positions(index: Any, batch: int) -> np.ndarray:
    """Output positions of one batch: a slice (as ``iter_predictions`` yields) or an index array."""
    if isinstance(index, slice):
        start = index.start or 0
        return np.arange(start, start + batch * (index.step or 1), index.step or 1, dtype=np.int64)
    pos = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64).reshape(-1)
    if len(pos) != batch:
        raise SaalError(f"a batch has {len(pos)} indices for {batch} predictions")
    return pos


class Heuristic:
    """Base class of the uncertainty heuristics: subclasses define :meth:`pixel_scores`.

    Parameters
    ----------
    reduction : {"mean", "top10"}
        How the per-pixel scores of an image become its score (see the module docstring).
    """

    name: ClassVar[str]
    min_samples: ClassVar[int] = 1  # MC samples T the score needs to mean anything

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise SaalError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
        self.reduction = reduction

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"

    def pixel_scores(self, probs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` float probabilities -> ``(B, H, W)`` uncertainty, higher = less sure."""
        raise NotImplementedError

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` probabilities -> ``(B,)`` scores, higher = more worth labeling."""
        return reduce_pixels(self.pixel_scores(self._check_probs(probs)), self.reduction)

    def _check_probs(self, probs: torch.Tensor) -> torch.Tensor:
        if not isinstance(probs, torch.Tensor) or probs.ndim != 5:
            shape = tuple(probs.shape) if hasattr(probs, "shape") else type(probs).__name__
            raise SaalError(f"{self.name}: predictions must be a (B, T, C, H, W) tensor, got {shape}")
        if probs.shape[2] < 2:
            raise SaalError(f"{self.name}: predictions need at least 2 class channels, got {probs.shape[2]}")
        if probs.shape[1] < self.min_samples:
            raise SaalError(f"{self.name} needs MC-dropout predictions (T >= {self.min_samples} samples), "
                            f"got T = {probs.shape[1]}; predict with mc_samples > 1")
        return probs.float()

    def score_batches(self, batches: Iterable[tuple[Any, torch.Tensor]], n: int | None = None) -> np.ndarray:
        """Stream ``(index, probs)`` batches into one float64 score per position.

        ``index`` is a slice or an index array giving each prediction's position
        in the output; ``n`` is the output length (default: the largest position
        + 1). Positions no batch covered are NaN, so a forgotten batch cannot
        pass for a confident image; a position given twice is an error.
        """
        positions, parts = [], []
        with torch.inference_mode():
            for index, probs in batches:
                scores = self.compute_score(probs)
                positions.append(_batch_positions(index, len(scores)))
                parts.append(scores.double().cpu().numpy())
        pos = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        size = int(pos.max()) + 1 if n is None and len(pos) else int(n or 0)
        if len(pos) and (pos.min() < 0 or pos.max() >= size):
            raise SaalError(f"batch positions run outside 0..{size - 1}")
        if len(np.unique(pos)) != len(pos):
            raise SaalError("a position was scored by two batches")
        out = np.full(size, np.nan)
        if len(pos):
            out[pos] = np.concatenate(parts)
        return out

    @staticmethod
    def rank(scores: np.ndarray) -> np.ndarray:
        """Positions by descending score; equal scores keep position order, NaN go last."""
        return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Categorical entropy (nats) over ``dim``; ``0 log 0 = 0``."""
    return torch.special.entr(p).sum(dim)


class Entropy(Heuristic):
    """Predictive entropy of the MC-mean probability (``reduction`` as in :class:`Heuristic`)."""

    name = "entropy"

    def pixel_scores(self, probs: torch.Tensor) -> torch.Tensor:
        return _entropy(probs.mean(1), dim=1)


class BALD(Heuristic):
    """Mutual information of MC-dropout samples: disagreement between samples, not mere doubt."""

    name = "bald"
    min_samples = 2

    def pixel_scores(self, probs: torch.Tensor) -> torch.Tensor:
        total = _entropy(probs.mean(1), dim=1)  # (B, H, W)
        expected = _entropy(probs, dim=2).mean(1)  # (B, H, W)
        return (total - expected).clamp_min(0)


class Variance(Heuristic):
    """Variance over MC-dropout samples of each class probability, averaged over classes."""

    name = "variance"
    min_samples = 2

    def pixel_scores(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.var(dim=1, correction=0).mean(1)


HEURISTICS: dict[str, type[Heuristic]] = {cls.name: cls for cls in (Entropy, BALD, Variance)}
