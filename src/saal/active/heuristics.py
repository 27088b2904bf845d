"""Query heuristics: which unlabeled images to annotate next.

After baal's design, each heuristic is a class with one :meth:`~Heuristic.compute_score`
(higher = more worth labeling); the base class owns everything else, so a new
heuristic is a dozen lines and cannot get the bookkeeping wrong:

* :meth:`~Heuristic.score_batches` streams ``(index, probs)`` batches (as
  :func:`saal.segmentation.predict.iter_predictions` yields them), so the pool's
  probabilities never sit in memory at once; only one float per image is kept;
* :meth:`~Heuristic.rank` orders scores descending, ties by position, so the
  same scores always give the same order;
* :meth:`~Heuristic.query` picks the ``k`` best of a candidate list;
* :meth:`~Heuristic.select` is the one call the loop needs: given the
  :class:`~saal.active.pool.ActiveSet` and whatever the heuristic needs
  (scores and/or pool features), it returns exactly ``k`` unlabeled ids.

Predictions are softmax probabilities shaped ``(B, T, C, H, W)``: ``T`` MC-dropout
samples (``T = 1`` for a deterministic pass), ``C`` classes (2 for lesion
segmentation). Pixel-wise uncertainties are aggregated per image by their **mean
over all pixels**, which favours images with a large uncertain area (typically a
wide, ambiguous lesion border) over a single hard pixel; entropies are in nats.

With ``p̄ = mean_t p_t`` the MC-mean probability of a pixel:

* ``entropy``  ``H(p̄) = -Σ_c p̄_c log p̄_c`` (predictive entropy);
* ``bald``     ``H(p̄) - mean_t H(p_t)`` (mutual information between the label
  and the weights, Houlsby et al. 2011 / Gal et al. 2017; needs ``T > 1``);
* ``variance`` ``mean_c Var_t(p_{t,c})``, which for two classes is the variance
  of the foreground probability (needs ``T > 1``);
* ``random``   seeded uniform scores, no predictions needed;
* ``representative``   the cold-start cluster criterion continued over rounds
  (features only, via a :mod:`saal.selection` strategy);
* ``uncertainty-diversity``  the ``m = ceil(m_factor * k)`` most uncertain
  candidates, then ``k`` spread-out ones among them by k-center greedy on the
  features (first the most uncertain, or the farthest from the labeled set;
  then repeatedly the candidate farthest from everything chosen or labeled).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Protocol, Sequence

import numpy as np
import torch

from ..errors import SaalError, SelectionError
from .pool import ActiveSet, _name_some


class SelectionStrategy(Protocol):
    """What :class:`Representative` needs from a :mod:`saal.selection` strategy."""

    def select(self, features: np.ndarray, budget: int, already_selected: Sequence[int], seed: int) -> Any:
        """Return an object whose ``.indices`` lists ``budget`` rows, the already-selected first."""


def _check_k(k: int, available: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise SaalError(f"query size must be a non-negative integer, got {k!r}")
    if k > available:
        raise SaalError(f"cannot query {k} images: only {available} unlabeled left in the pool")
    return int(k)


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
    """Base class: subclasses define :meth:`compute_score`; ranking and picking live here."""

    name: ClassVar[str]
    needs_predictions: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False
    min_samples: int = 1  # MC samples T the score needs to mean anything

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SaalError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"

    # -- scoring -----------------------------------------------------------------------
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

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` probabilities -> ``(B,)`` scores, higher = more worth labeling."""
        raise SaalError(f"the {self.name} heuristic does not score predictions")

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

    # -- ranking and picking -------------------------------------------------------------
    @staticmethod
    def rank(scores: np.ndarray) -> np.ndarray:
        """Positions by descending score; equal scores keep position order, NaN go last."""
        return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")

    def query(self, scores: np.ndarray, candidates: Sequence, k: int) -> np.ndarray:
        """The ``k`` best ``candidates`` (ids or indices), ``scores[i]`` belonging to ``candidates[i]``."""
        cand = np.asarray(candidates)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(cand),):
            raise SaalError(f"{self.name}: {scores.shape[0] if scores.ndim else 0} scores "
                            f"for {len(cand)} candidates")
        if len(np.unique(cand)) != len(cand):
            raise SaalError(f"{self.name}: candidates must be unique")
        missing = np.isnan(scores)
        if missing.any():
            raise SaalError(f"{self.name}: no score for candidates {_name_some(cand[missing].tolist())}")
        k = _check_k(k, len(cand))
        return cand[self.rank(scores)[:k]]

    def select(self, active: ActiveSet, k: int, *, scores: np.ndarray | None = None,
               features: np.ndarray | None = None) -> list[str]:
        """Exactly ``k`` unlabeled ids of ``active``, best first.

        ``scores`` are aligned with ``active.unlabeled_ids`` (what
        :meth:`score_batches` returns for predictions over those images);
        ``features`` are ``(len(active), D)`` in pool order. Each heuristic
        reads only what its ``needs_*`` flags say.
        """
        candidates = active.unlabeled_indices
        k = _check_k(k, len(candidates))
        if k == 0:
            return []
        picked = self._pick(active, candidates, k, scores, features)
        pool = active.pool_ids
        return [pool[i] for i in picked]

    def _pick(self, active: ActiveSet, candidates: np.ndarray, k: int,
              scores: np.ndarray | None, features: np.ndarray | None) -> np.ndarray:
        """Pool positions of the ``k`` picks among ``candidates`` (the unlabeled positions)."""
        if scores is None:
            raise SaalError(f"the {self.name} heuristic needs prediction scores for the unlabeled images")
        return self.query(scores, candidates, k)


def _pool_features(features: np.ndarray | None, n_pool: int | None, who: str) -> np.ndarray:
    """Validated ``(n_pool, D)`` float features (any row count when ``n_pool`` is None)."""
    if features is None:
        raise SaalError(f"the {who} heuristic needs image features (the selection stage's features.npy)")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or (n_pool is not None and features.shape[0] != n_pool):
        raise SaalError(f"{who}: features must be (pool size {n_pool or 'N'}, D), got {features.shape}")
    if not np.isfinite(features).all():
        raise SaalError(f"{who}: features contain NaN or infinite values")
    return features


class Random(Heuristic):
    """Uniform random picks: the baseline every strategy must beat.

    :meth:`select` draws from a generator seeded by ``(seed, number labeled)``,
    so each round gets fresh draws and a resumed run repeats its picks exactly,
    whatever object makes them. :meth:`compute_score` (for scoring predictions
    like the other heuristics) draws from one generator seeded at construction.
    """

    name = "random"
    needs_predictions = False

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self._rng = np.random.default_rng(self.seed)

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._rng.random(len(probs)))

    def _pick(self, active, candidates, k, scores, features):
        rng = np.random.default_rng([self.seed, active.n_labeled])
        return self.query(rng.random(len(candidates)), candidates, k)


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Categorical entropy (nats) over ``dim``; ``0 log 0 = 0``."""
    return torch.special.entr(p).sum(dim)


class Entropy(Heuristic):
    """Predictive entropy of the MC-mean probability, averaged over pixels."""

    name = "entropy"

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        p = self._check_probs(probs)
        return _entropy(p.mean(1), dim=1).flatten(1).mean(1)


class BALD(Heuristic):
    """Mutual information of MC-dropout samples: disagreement between samples, not mere doubt."""

    name = "bald"
    min_samples = 2

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        p = self._check_probs(probs)
        total = _entropy(p.mean(1), dim=1)  # (B, H, W)
        expected = _entropy(p, dim=2).mean(1)  # (B, H, W)
        return (total - expected).clamp_min(0).flatten(1).mean(1)


class Variance(Heuristic):
    """Variance over MC-dropout samples of each class probability, averaged over classes and pixels."""

    name = "variance"
    min_samples = 2

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        p = self._check_probs(probs)
        return p.var(dim=1, correction=0).flatten(1).mean(1)


class Representative(Heuristic):
    """The paper's continuation: the next images by the selection stage's cluster criterion.

    Wraps a :mod:`saal.selection` strategy (``select(features, budget,
    already_selected, seed)``; default: the paper's k-means criterion,
    :class:`~saal.selection.cluster.SaalStrategy`), asking it for the labeled
    set plus ``k``, so each round extends the labeled set the way the cold start
    chose it (same seed, same clustering).
    """

    name = "representative"
    needs_predictions = False
    needs_features = True

    def __init__(self, strategy: SelectionStrategy | None = None, seed: int = 0):
        super().__init__(seed)
        if strategy is None:  # imported here: k-means pulls in scikit-learn, which other heuristics never need
            from ..selection.cluster import SaalStrategy

            strategy = SaalStrategy()
        if not callable(getattr(strategy, "select", None)):
            raise SaalError(f"representative: strategy {strategy!r} has no select(features, budget, "
                            "already_selected, seed) method")
        self.strategy = strategy

    def __repr__(self) -> str:
        return f"Representative(strategy={self.strategy!r}, seed={self.seed})"

    def query_from_features(self, features: np.ndarray, labeled_indices: Sequence[int], k: int,
                            seed: int | None = None) -> np.ndarray:
        """Pool rows of ``k`` new images to label, given the pool ``features`` and the labeled rows."""
        features = _pool_features(features, None, self.name)
        labeled = np.asarray(labeled_indices, dtype=np.int64).reshape(-1)
        in_range = not len(labeled) or (labeled.min() >= 0 and labeled.max() < len(features))
        if not in_range or len(np.unique(labeled)) != len(labeled):
            raise SaalError(f"{self.name}: labeled indices must be unique rows of the {len(features)} features")
        k = _check_k(k, len(features) - len(labeled))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        selection = self.strategy.select(features, len(labeled) + k, labeled.tolist(),
                                         self.seed if seed is None else int(seed))
        chosen = np.asarray(selection.indices, dtype=np.int64).reshape(-1)
        new = chosen[len(labeled):]
        if (len(chosen) != len(labeled) + k or set(chosen[:len(labeled)].tolist()) != set(labeled.tolist())
                or len(np.unique(new)) != k or np.isin(new, labeled).any()):
            raise SelectionError(f"selection strategy {self.strategy!r} did not return the {len(labeled)} labeled "
                                 f"rows followed by {k} new ones")
        return new

    def _pick(self, active, candidates, k, scores, features):
        features = _pool_features(features, len(active), self.name)
        return self.query_from_features(features, active.labeled_indices, k)


class UncertaintyDiversity(Heuristic):
    """Uncertain *and* diverse: the top ``m = ceil(m_factor k)`` by uncertainty, then k-center greedy.

    Pure uncertainty sampling tends to pick near-duplicates (the same hard
    lesion type many times); spreading the picks over the feature space of the
    most uncertain images avoids paying twice for one lesson.
    """

    name = "uncertainty-diversity"
    needs_features = True

    def __init__(self, uncertainty: str = "entropy", m_factor: float = 5.0, seed: int = 0):
        super().__init__(seed)
        if uncertainty not in ("entropy", "bald"):
            raise SaalError(f"uncertainty must be 'entropy' or 'bald', got {uncertainty!r}")
        if not m_factor >= 1:
            raise SaalError(f"m_factor must be at least 1 (top m = m_factor * k candidates), got {m_factor!r}")
        self.uncertainty = QUERY_STRATEGIES[uncertainty](seed=seed)
        self.min_samples = self.uncertainty.min_samples
        self.m_factor = float(m_factor)

    def __repr__(self) -> str:
        return f"UncertaintyDiversity(uncertainty={self.uncertainty.name!r}, m_factor={self.m_factor})"

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        return self.uncertainty.compute_score(probs)

    def query_diverse(self, scores: np.ndarray, features: np.ndarray, k: int,
                      labeled_features: np.ndarray | None = None) -> np.ndarray:
        """Positions (into ``scores``/``features`` rows) of ``k`` diverse picks among the most uncertain."""
        scores = np.asarray(scores, dtype=np.float64)
        if np.isnan(scores).any():
            raise SaalError(f"{self.name}: some candidates have no score")
        if len(features) != len(scores):
            raise SaalError(f"{self.name}: {len(features)} feature rows for {len(scores)} scores")
        k = _check_k(k, len(scores))
        m = min(len(scores), max(k, math.ceil(self.m_factor * k)))
        top = self.rank(scores)[:m]
        x = torch.as_tensor(np.asarray(features)[top], dtype=torch.float64)
        if labeled_features is not None and len(labeled_features):
            ref = torch.as_tensor(np.asarray(labeled_features), dtype=torch.float64)
            dist = torch.cdist(x, ref).min(1).values
        else:
            dist = torch.full((m,), math.inf, dtype=torch.float64)  # first pick: the most uncertain
        picked = []
        for _ in range(k):
            j = int(torch.argmax(dist))  # first maximum: ties go to the more uncertain
            picked.append(j)
            dist = torch.minimum(dist, torch.linalg.vector_norm(x - x[j], dim=1))
            dist[j] = -math.inf
        return top[np.asarray(picked, dtype=np.int64)]

    def _pick(self, active, candidates, k, scores, features):
        features = _pool_features(features, len(active), self.name)
        if scores is None:
            raise SaalError(f"the {self.name} heuristic needs prediction scores for the unlabeled images")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(candidates),):
            raise SaalError(f"{self.name}: {len(scores)} scores for {len(candidates)} unlabeled images")
        labeled = active.labeled_indices
        return candidates[self.query_diverse(scores, features[candidates], k, features[labeled])]


QUERY_STRATEGIES: dict[str, type[Heuristic]] = {
    cls.name: cls for cls in (Random, Entropy, BALD, Variance, Representative, UncertaintyDiversity)
}


def get_heuristic(name: str, **kwargs: Any) -> Heuristic:
    """Build the heuristic registered as ``name`` (``seed=`` and class options as keywords)."""
    if name not in QUERY_STRATEGIES:
        raise SaalError(f"unknown query strategy {name!r}; choose from {', '.join(QUERY_STRATEGIES)}")
    return QUERY_STRATEGIES[name](**kwargs)
