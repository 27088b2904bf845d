"""Queries: which unlabeled images to annotate next, as a batch of ``k``.

A query owns the bookkeeping every rule must get right (candidates are exactly
the unlabeled images, exactly ``k`` distinct ids come back, input sizes are
checked); a subclass writes one method, :meth:`Query._pick`, which chooses ``k``
positions among the candidates from what it needs: uncertainty scores of a
:mod:`~saal.active.heuristics` heuristic, pool features, or nothing.

* ``random``      uniform picks (seeded by the seed and the number labeled);
* ``entropy``, ``bald``, ``variance``  the ``k`` highest scores of that heuristic (:class:`TopScores`);
* ``uncertainty-diversity``  the ``m = ceil(m_factor k)`` most uncertain candidates (entropy),
  then ``k`` spread-out ones among them by greedy k-center on the features (:class:`Diverse`);
* ``representative``  the paper's continuation: the next images by its cluster criterion on the
  features (:class:`Representative` with the ``saal`` rule);
* ``cold-start-rule``  the run's own cold start continued the same way (e.g. TypiClust, which
  re-clusters the pool into labeled + k clusters and takes the most typical image of each
  uncovered one): label-free picks that keep the cold start's coverage growing;
* ``cluster-entropy``  TypiClust's clusters with the model's doubt: the pool in labeled + k
  k-means clusters, and from each of the least covered clusters its *most uncertain* image
  (:class:`ClusterUncertainty`): coverage and uncertainty in one batch.

:func:`make_query` builds a query from its name and the run's settings.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from ..config import DEFAULTS, check_options
from ..errors import SaalError, SelectionError, name_some
from ..runtime import Stream, stream_seed
from ..selection.geometry import sqdist_blocks
from ..selection.kcenter import farthest_first
from ..selection.registry import make_cold_start
from .heuristics import BALD, Entropy, Heuristic, Variance
from .pool import ActiveSet


class ColdStartRule(Protocol):
    """What :class:`Representative` needs from a :mod:`saal.selection` strategy."""

    def select(self, features: np.ndarray, budget: int, already_selected: Sequence[int], seed: int) -> Any:
        """Return an object whose ``.indices`` lists ``budget`` rows, the already-selected first."""


def check_k(k: int, available: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise SaalError(f"query size must be a non-negative integer, got {k!r}")
    if k > available:
        raise SaalError(f"cannot query {k} images: only {available} unlabeled left in the pool")
    return int(k)


def top_k(scores: np.ndarray, candidates: Sequence, k: int, who: str = "query") -> np.ndarray:
    """The ``k`` best ``candidates`` (ids or indices), ``scores[i]`` belonging to ``candidates[i]``.

    Ties keep candidate order, so the same scores always give the same picks.
    """
    cand = np.asarray(candidates)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(cand),):
        raise SaalError(f"{who}: {scores.shape[0] if scores.ndim else 0} scores for {len(cand)} candidates")
    if len(np.unique(cand)) != len(cand):
        raise SaalError(f"{who}: candidates must be unique")
    missing = np.isnan(scores)
    if missing.any():
        raise SaalError(f"{who}: no score for candidates {name_some(cand[missing].tolist())}")
    k = check_k(k, len(cand))
    return cand[Heuristic.rank(scores)[:k]]


def pool_features(features: np.ndarray | None, n_pool: int, who: str) -> np.ndarray:
    """Validated ``(n_pool, D)`` float features."""
    if features is None:
        raise SaalError(f"the {who} query needs image features (the selection stage's features.npy)")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != n_pool:
        raise SaalError(f"{who}: features must be (pool size {n_pool}, D), got {features.shape}")
    if not np.isfinite(features).all():
        raise SaalError(f"{who}: features contain NaN or infinite values")
    return features


class Query:
    """Base class: validates, delegates the choice to :meth:`_pick`, maps positions to ids.

    ``heuristic`` is the uncertainty heuristic whose scores the query reads
    (None: it needs no predictions).
    """

    name: ClassVar[str]
    needs_features: ClassVar[bool] = False

    def __init__(self, heuristic: Heuristic | None = None, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SaalError(f"seed must be a non-negative integer, got {seed!r}")
        self.heuristic = heuristic
        self.seed = int(seed)

    @property
    def needs_predictions(self) -> bool:
        return self.heuristic is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(heuristic={self.heuristic!r}, seed={self.seed})"

    def select(self, active: ActiveSet, k: int, *, scores: np.ndarray | None = None,
               features: np.ndarray | None = None) -> list[str]:
        """Exactly ``k`` unlabeled ids of ``active``, best first.

        ``scores`` are the heuristic's scores aligned with ``active.unlabeled_ids``
        (what :meth:`Heuristic.score_batches` returns for predictions over those
        images); ``features`` are ``(len(active), D)`` in pool order.
        """
        candidates = active.unlabeled_indices
        k = check_k(k, len(candidates))
        if k == 0:
            return []
        if self.needs_predictions:
            if scores is None:
                raise SaalError(f"the {self.name} query needs prediction scores for the unlabeled images")
            scores = np.asarray(scores, dtype=np.float64)
            if scores.shape != (len(candidates),):
                raise SaalError(f"{self.name}: {len(scores)} scores for {len(candidates)} unlabeled images")
        if self.needs_features:
            features = pool_features(features, len(active), self.name)
        picked = self._pick(active, candidates, k, scores, features)
        pool = active.pool_ids
        return [pool[i] for i in picked]

    def _pick(self, active: ActiveSet, candidates: np.ndarray, k: int, scores: np.ndarray | None,
              features: np.ndarray | None) -> np.ndarray:
        """Pool positions of ``k`` picks among ``candidates`` (the unlabeled positions, ascending)."""
        raise NotImplementedError


class RandomQuery(Query):
    """Uniform random picks: the baseline every query must beat.

    The draw is the :attr:`~saal.runtime.Stream.RANDOM_QUERY` stream of ``(seed, number labeled)``, so each
    round gets fresh draws and a resumed run repeats its picks exactly, whatever object makes them.
    """

    name = "random"

    def __init__(self, seed: int = 0):
        super().__init__(None, seed)

    def _pick(self, active, candidates, k, scores, features):
        rng = np.random.default_rng(stream_seed(self.seed, Stream.RANDOM_QUERY, active.n_labeled))
        return top_k(rng.random(len(candidates)), candidates, k, self.name)


class TopScores(Query):
    """The ``k`` unlabeled images with the highest scores of ``heuristic``."""

    def __init__(self, heuristic: Heuristic, seed: int = 0):
        super().__init__(heuristic, seed)
        self.name = heuristic.name

    def _pick(self, active, candidates, k, scores, features):
        return top_k(scores, candidates, k, self.name)


class Diverse(Query):
    """Uncertain *and* diverse: the top ``m = ceil(m_factor k)`` by ``heuristic``, then greedy k-center.

    Pure uncertainty sampling tends to pick near-duplicates (the same hard
    lesion type many times); spreading the picks over the feature space of the
    most uncertain images avoids paying twice for one lesson. The traversal
    starts from the labeled images (the first pick is the candidate farthest
    from them; with none labeled, the most uncertain one).
    """

    name = "uncertainty-diversity"
    needs_features = True

    def __init__(self, heuristic: Heuristic | None = None, m_factor: float = 5.0, seed: int = 0):
        if not m_factor >= 1:
            raise SaalError(f"m_factor must be at least 1 (top m = m_factor * k candidates), got {m_factor!r}")
        super().__init__(heuristic or Entropy(), seed)
        self.m_factor = float(m_factor)

    def __repr__(self) -> str:
        return f"Diverse(heuristic={self.heuristic!r}, m_factor={self.m_factor})"

    def diverse(self, scores: np.ndarray, features: np.ndarray, k: int,
                labeled_features: np.ndarray | None = None) -> np.ndarray:
        """Positions (into ``scores``/``features`` rows) of ``k`` diverse picks among the most uncertain."""
        scores = np.asarray(scores, dtype=np.float64)
        if np.isnan(scores).any():
            raise SaalError(f"{self.name}: some candidates have no score")
        if len(features) != len(scores):
            raise SaalError(f"{self.name}: {len(features)} feature rows for {len(scores)} scores")
        k = check_k(k, len(scores))
        m = min(len(scores), max(k, math.ceil(self.m_factor * k)))
        top = Heuristic.rank(scores)[:m]
        x = np.asarray(features, dtype=np.float64)[top]
        nearest = None
        if labeled_features is not None and len(labeled_features):
            ref = np.asarray(labeled_features, dtype=np.float64)
            nearest = np.concatenate([d2.min(axis=1) for _, d2 in sqdist_blocks(x, ref)])
        order, _, _ = farthest_first(x, k, nearest_sq=nearest)
        return top[order]

    def _pick(self, active, candidates, k, scores, features):
        return candidates[self.diverse(scores, features[candidates], k, features[active.labeled_indices])]


class Representative(Query):
    """The paper's continuation: the next images by a cold-start rule on the pool features.

    ``rule`` is a :mod:`saal.selection` strategy (``select(features, budget,
    already_selected, seed)``; default: the paper's k-means criterion with 10
    clusters). It is asked for the labeled set plus ``k``, so each round extends
    the labeled set the way the cold start chose it (same seed, same clustering).
    ``name`` is the query it serves: ``representative`` (the paper's rule) or
    ``cold-start-rule`` (the run's own cold start).
    """

    name = "representative"
    needs_features = True

    def __init__(self, rule: ColdStartRule | None = None, seed: int = 0, name: str = "representative"):
        super().__init__(None, seed)
        self.name = name
        rule = rule if rule is not None else make_cold_start("saal")
        if not callable(getattr(rule, "select", None)):
            raise SaalError(f"representative: rule {rule!r} has no select(features, budget, already_selected, "
                            "seed) method")
        self.rule = rule

    def __repr__(self) -> str:
        return f"Representative(rule={self.rule!r}, seed={self.seed}, name={self.name!r})"

    def extend(self, features: np.ndarray, labeled_indices: Sequence[int], k: int) -> np.ndarray:
        """Pool rows of ``k`` new images to label, given the pool ``features`` and the labeled rows."""
        labeled = np.asarray(labeled_indices, dtype=np.int64).reshape(-1)
        in_range = not len(labeled) or (labeled.min() >= 0 and labeled.max() < len(features))
        if not in_range or len(np.unique(labeled)) != len(labeled):
            raise SaalError(f"{self.name}: labeled indices must be unique rows of the {len(features)} features")
        k = check_k(k, len(features) - len(labeled))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        chosen = np.asarray(self.rule.select(features, len(labeled) + k, labeled.tolist(), self.seed).indices,
                            dtype=np.int64).reshape(-1)
        new = chosen[len(labeled):]
        if (len(chosen) != len(labeled) + k or set(chosen[:len(labeled)].tolist()) != set(labeled.tolist())
                or len(np.unique(new)) != k or np.isin(new, labeled).any()):
            raise SelectionError(f"the rule {self.rule!r} did not return the {len(labeled)} labeled rows followed "
                                 f"by {k} new ones")
        return new

    def _pick(self, active, candidates, k, scores, features):
        return self.extend(features, active.labeled_indices, k)


class ClusterUncertainty(Query):
    """The most uncertain image of each of the least covered clusters.

    The pool features are clustered into ``labeled + k`` k-means clusters (as TypiClust does; at most
    ``max_clusters``); clusters are visited fewest labeled members first, larger first among equals,
    and each visit takes the unlabeled member with the highest ``heuristic`` score. Uncertainty alone
    piles the batch into the one region the model finds hard; coverage alone ignores what the model
    already knows; this asks the model's question in every region the labels do not reach yet.
    """

    name = "cluster-entropy"
    needs_features = True

    def __init__(self, heuristic: Heuristic | None = None, max_clusters: int = 500, seed: int = 0):
        super().__init__(heuristic or Entropy(), seed)
        self.max_clusters = int(max_clusters)

    def _pick(self, active, candidates, k, scores, features):
        from ..selection.kmeans import fit_kmeans

        n_labeled = active.n_labeled
        cl = fit_kmeans(np.asarray(features, dtype=np.float32), min(n_labeled + k, self.max_clusters), self.seed)
        labeled = np.bincount(cl.labels[active.labeled_indices], minlength=cl.k)
        order = np.lexsort((np.arange(cl.k), -cl.sizes, labeled))
        score = np.full(len(active), -np.inf)
        score[candidates] = scores
        picked: list[int] = []
        taken = np.zeros(len(active), dtype=bool)
        taken[active.labeled_indices] = True
        while len(picked) < k:  # one pass per round of visits; later passes revisit the clusters in the same order
            for c in order:
                if len(picked) == k:
                    break
                free = np.flatnonzero((cl.labels == c) & ~taken)
                if free.size:
                    i = int(free[np.argmax(score[free])])  # first maximum: ties go to the lower row
                    picked.append(i)
                    taken[i] = True
        return np.asarray(picked, dtype=np.int64)


#: Each query name and how a run builds it from its settings (seed, n_clusters, reduction, cold start).
QUERIES: dict[str, Callable[..., Query]] = {
    "random": lambda seed, n_clusters, reduction, cold_start: RandomQuery(seed=seed),
    "entropy": lambda seed, n_clusters, reduction, cold_start: TopScores(Entropy(reduction), seed=seed),
    "bald": lambda seed, n_clusters, reduction, cold_start: TopScores(BALD(reduction), seed=seed),
    "variance": lambda seed, n_clusters, reduction, cold_start: TopScores(Variance(reduction), seed=seed),
    "uncertainty-diversity": lambda seed, n_clusters, reduction, cold_start: Diverse(Entropy(reduction), seed=seed),
    "representative": lambda seed, n_clusters, reduction, cold_start: Representative(
        make_cold_start("saal", n_clusters=n_clusters), seed=seed),
    "cold-start-rule": lambda seed, n_clusters, reduction, cold_start: Representative(
        make_cold_start(cold_start, n_clusters=n_clusters), seed=seed, name="cold-start-rule"),
    "cluster-entropy": lambda seed, n_clusters, reduction, cold_start: ClusterUncertainty(Entropy(reduction),
                                                                                         seed=seed),
}


def make_query(name: str, *, seed: int = 0, n_clusters: int = DEFAULTS.n_clusters,
               reduction: str = DEFAULTS.query_reduction, cold_start: str = DEFAULTS.cold_start) -> Query:
    """The query called ``name`` as a run configures it.

    ``n_clusters`` is the k of the clustering rules, ``cold_start`` the run's cold start (which the
    ``cold-start-rule`` query continues), ``reduction`` how the uncertainty heuristics score an image.
    """
    check_options(query=name, cold_start=cold_start, query_reduction=reduction, n_clusters=n_clusters)
    return QUERIES[name](seed=seed, n_clusters=n_clusters, reduction=reduction, cold_start=cold_start)
