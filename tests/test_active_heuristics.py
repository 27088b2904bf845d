"""Query heuristics: scores, ranking, streaming, and the k-ids-never-labeled guarantee."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from saal.active import (BALD, QUERY_STRATEGIES, ActiveSet, Entropy, Heuristic, Random, Representative,
                         UncertaintyDiversity, Variance, get_heuristic)
from saal.errors import SaalError


def probs_from_fg(fg: torch.Tensor) -> torch.Tensor:
    """Foreground probabilities (B, T, H, W) -> two-class softmax tensor (B, T, 2, H, W)."""
    return torch.stack([1 - fg, fg], dim=2)


def random_probs(b: int, t: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 2, size, size, generator=g).mul(3).softmax(dim=2)


class NearestFirstStrategy:
    """A tiny stand-in for a saal.selection strategy: rows nearest the feature mean first."""

    def select(self, features, budget, already_selected, seed):
        prior = list(already_selected)
        order = np.argsort(np.linalg.norm(features - features.mean(0), axis=1), kind="stable")
        new = [i for i in order if i not in prior][: budget - len(prior)]
        return SimpleNamespace(indices=np.array(prior + new, dtype=np.int64))


def make_heuristic(name: str, seed: int = 0) -> Heuristic:
    if name == "representative":
        return get_heuristic(name, strategy=NearestFirstStrategy(), seed=seed)
    return get_heuristic(name, seed=seed)


def select_inputs(active: ActiveSet, features: np.ndarray):
    probs = random_probs(len(active), 3, seed=1)[active.unlabeled_indices]
    return probs, features


# -- scores --------------------------------------------------------------------------------
def test_entropy_ranks_a_half_probability_image_above_a_confident_one():
    fg = torch.stack([torch.full((1, 4, 4), 0.5), torch.full((1, 4, 4), 0.99), torch.full((1, 4, 4), 0.02)])
    scores = Entropy().compute_score(probs_from_fg(fg))
    assert scores[0] == pytest.approx(math.log(2), rel=1e-5)  # maximal binary entropy, in nats
    assert Heuristic.rank(scores.numpy()).tolist() == [0, 2, 1]


def test_entropy_uses_the_mc_mean_and_averages_over_pixels():
    # two samples at 0.1 and 0.9 average to 0.5: entropy of the mean is maximal
    fg = torch.tensor([0.1, 0.9]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert Entropy().compute_score(probs_from_fg(fg)).item() == pytest.approx(math.log(2), rel=1e-5)
    # half of the pixels uncertain -> half the score
    fg = torch.tensor([[0.5, 0.5], [1.0, 1.0]]).view(1, 1, 2, 2)
    assert Entropy().compute_score(probs_from_fg(fg)).item() == pytest.approx(math.log(2) / 2, rel=1e-5)


@pytest.mark.parametrize("cls", [BALD, Variance])
def test_mc_heuristics_are_zero_for_identical_samples_and_positive_when_they_disagree(cls):
    same = probs_from_fg(torch.full((1, 4, 3, 3), 0.3))
    differ = probs_from_fg(torch.tensor([0.1, 0.9, 0.2, 0.8]).view(1, 4, 1, 1).expand(1, 4, 3, 3))
    scores = cls().compute_score(torch.cat([same, differ]))
    assert scores[0].item() == pytest.approx(0.0, abs=1e-6)
    assert scores[1].item() > 0.05


def test_bald_and_variance_values():
    fg = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)  # two certain but opposite samples
    assert BALD().compute_score(probs_from_fg(fg)).item() == pytest.approx(math.log(2), rel=1e-5)
    assert Variance().compute_score(probs_from_fg(fg)).item() == pytest.approx(0.25)


@pytest.mark.parametrize("cls", [BALD, Variance])
def test_mc_heuristics_need_several_samples(cls):
    with pytest.raises(SaalError, match="MC-dropout.*T = 1"):
        cls().compute_score(random_probs(2, 1))


def test_bad_prediction_shape_is_a_clear_error():
    with pytest.raises(SaalError, match=r"\(B, T, C, H, W\)"):
        Entropy().compute_score(torch.rand(2, 2, 8, 8))


@pytest.mark.parametrize("cls", [Entropy, BALD, Variance])
def test_streaming_scores_equal_one_shot_scores(cls):
    probs = random_probs(10, 3, seed=4)
    h = cls()
    whole = h.compute_score(probs).double().numpy()
    slices = [(slice(i, min(i + 3, 10)), probs[i:i + 3]) for i in range(0, 10, 3)]
    assert np.allclose(h.score_batches(iter(slices)), whole)
    perm = np.random.default_rng(0).permutation(10)
    shuffled = [(perm[i:i + 4], probs[perm[i:i + 4]]) for i in range(0, 10, 4)]
    assert np.allclose(h.score_batches(shuffled), whole)


def test_score_batches_marks_unscored_positions_and_refuses_overlaps():
    probs = random_probs(4, 1)
    scores = Entropy().score_batches([(np.array([0, 2]), probs[:2])], n=4)
    assert np.isnan(scores[[1, 3]]).all() and np.isfinite(scores[[0, 2]]).all()
    with pytest.raises(SaalError, match="two batches"):
        Entropy().score_batches([(slice(0, 2), probs[:2]), (np.array([1, 2]), probs[2:])])


# -- ranking and query -----------------------------------------------------------------------
def test_rank_is_descending_with_ties_by_position_and_nan_last():
    assert Heuristic.rank(np.array([0.2, np.nan, 0.5, 0.2, 0.5])).tolist() == [2, 4, 0, 3, 1]


def test_query_returns_the_best_candidates():
    h = Entropy()
    assert h.query([0.1, 0.9, 0.5], ["x", "y", "z"], 2).tolist() == ["y", "z"]
    assert h.query([0.1, 0.9, 0.5], [7, 3, 5], 0).tolist() == []
    with pytest.raises(SaalError, match="cannot query 4 images: only 3"):
        h.query([0.1, 0.9, 0.5], [7, 3, 5], 4)
    with pytest.raises(SaalError, match="no score for candidates 3"):
        h.query([0.1, np.nan, 0.5], [7, 3, 5], 1)


@pytest.mark.parametrize("name", list(QUERY_STRATEGIES))
def test_every_strategy_returns_k_unlabeled_ids_deterministically(name):
    pool = [f"img{i}" for i in range(20)]
    features = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    picks = []
    for _ in range(2):
        active = ActiveSet(pool)
        active.label(["img0", "img5", "img7"], round=0, source="cold-start")
        h = make_heuristic(name, seed=3)
        probs, feats = select_inputs(active, features)
        scores = h.score_batches([(slice(0, len(probs)), probs)]) if h.needs_predictions else None
        chosen = h.select(active, 6, scores=scores, features=feats if h.needs_features else None)
        assert len(chosen) == 6 and len(set(chosen)) == 6
        assert not set(chosen) & set(active.labeled_ids)
        assert h.select(active, 0, scores=scores, features=feats) == []
        with pytest.raises(SaalError, match="only 17 unlabeled"):
            h.select(active, 18, scores=scores, features=feats)
        active.label(chosen, round=1)  # they really are unlabeled pool ids
        picks.append(chosen)
    assert picks[0] == picks[1]


def test_random_depends_on_the_seed_and_needs_no_predictions():
    pool = [str(i) for i in range(50)]
    a = Random(seed=1).select(ActiveSet(pool), 5)
    b = Random(seed=2).select(ActiveSet(pool), 5)
    assert a != b and Random.needs_predictions is False


def test_random_resumes_identically_with_a_fresh_object():
    pool = [str(i) for i in range(50)]
    run = Random(seed=4)
    active = ActiveSet(pool)
    first = run.select(active, 5)
    active.label(first, round=0)
    second = run.select(active, 5)
    resumed = ActiveSet.from_state_dict(active.state_dict())
    assert Random(seed=4).select(resumed, 5) == second
    assert Random(seed=4).select(ActiveSet(pool), 5) == first


def test_prediction_heuristics_ask_for_scores():
    with pytest.raises(SaalError, match="needs prediction scores"):
        Entropy().select(ActiveSet(["a", "b"]), 1)


def test_registry_names_and_unknown_name():
    assert set(QUERY_STRATEGIES) == {"random", "entropy", "bald", "variance", "representative",
                                     "uncertainty-diversity"}
    with pytest.raises(SaalError, match="unknown query strategy 'bold'.*bald"):
        get_heuristic("bold")


# -- feature-based ---------------------------------------------------------------------------
def test_uncertainty_diversity_skips_a_duplicate_of_its_first_pick():
    # items 0 and 1: identical features, most uncertain; item 2 distinct and uncertain; item 3 confident
    scores = np.array([0.9, 0.9, 0.8, 0.1])
    features = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])
    h = UncertaintyDiversity(m_factor=1.5)  # m = 3: the confident item 3 is never a candidate
    assert h.query_diverse(scores, features, 2).tolist() == [0, 2]
    assert Entropy().query(scores, np.arange(4), 2).tolist() == [0, 1]  # plain entropy takes the duplicate


def test_uncertainty_diversity_moves_away_from_the_labeled_set():
    active = ActiveSet(["l", "u0", "u1", "u2"])
    active.label(["l"], round=0)
    features = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [0.0, 0.2]])
    chosen = UncertaintyDiversity(m_factor=3).select(active, 1, scores=np.array([0.9, 0.5, 0.8]),
                                                     features=features)
    assert chosen == ["u1"]  # the uncertain candidates near the labeled image add little


def test_uncertainty_diversity_with_bald_needs_mc_samples():
    h = UncertaintyDiversity(uncertainty="bald")
    with pytest.raises(SaalError, match="MC-dropout"):
        h.compute_score(random_probs(2, 1))
    assert h.compute_score(random_probs(2, 3)).shape == (2,)


def test_representative_extends_the_labeled_set_with_the_strategy():
    features = np.array([[0.0], [10.0], [1.0], [-2.0], [0.5]], dtype=np.float32)  # mean 1.9
    rep = Representative(strategy=NearestFirstStrategy())
    assert rep.query_from_features(features, [2], 2).tolist() == [4, 0]
    active = ActiveSet(list("abcde"))
    active.label(["c"], round=0, source="cold-start")
    assert rep.select(active, 2, features=features) == ["e", "a"]
    with pytest.raises(SaalError, match="features"):
        rep.select(active, 2)


def test_representative_refuses_a_strategy_that_breaks_the_contract():
    class Forgetful:
        def select(self, features, budget, already_selected, seed):
            return SimpleNamespace(indices=np.arange(budget))  # ignores already_selected

    with pytest.raises(SaalError, match="did not return"):
        Representative(strategy=Forgetful()).query_from_features(np.eye(4), [3], 1)


def test_representative_defaults_to_the_papers_cluster_strategy():
    pytest.importorskip("saal.selection.cluster")
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.1, (15, 3)), rng.normal(5, 0.1, (15, 3))]).astype(np.float32)
    rep = Representative(seed=0)
    first = rep.query_from_features(features, [], 4)
    more = rep.query_from_features(features, first, 4)
    assert len(set(first) | set(more)) == 8
    assert rep.query_from_features(features, first, 4).tolist() == more.tolist()  # same seed, same picks
