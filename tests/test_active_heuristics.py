"""Uncertainty heuristics: one score per image, the reduction over pixels, streaming, ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saal.active import BALD, HEURISTICS, Entropy, Heuristic, Variance
from saal.errors import SaalError


def probs_from_fg(fg: torch.Tensor) -> torch.Tensor:
    """Foreground probabilities (B, T, H, W) -> two-class softmax tensor (B, T, 2, H, W)."""
    return torch.stack([1 - fg, fg], dim=2)


def random_probs(b: int, t: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 2, size, size, generator=g).mul(3).softmax(dim=2)


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


def test_reduction_is_a_parameter_of_every_heuristic():
    # one image: a quarter of the pixels at p = 0.5, the rest certain
    fg = torch.ones(1, 1, 4, 4)
    fg[0, 0, :2, :2] = 0.5
    probs = probs_from_fg(fg)
    assert Entropy().compute_score(probs).item() == pytest.approx(math.log(2) / 4, rel=1e-5)
    # top10: the mean of the ceil(1.6) = 2 most uncertain pixels, both at p = 0.5
    assert Entropy(reduction="top10").compute_score(probs).item() == pytest.approx(math.log(2), rel=1e-5)
    for cls in HEURISTICS.values():
        assert cls(reduction="top10").reduction == "top10"
    with pytest.raises(SaalError, match="unknown reduction 'median'"):
        Entropy(reduction="median")


def test_rank_is_descending_with_ties_by_position_and_nan_last():
    assert Heuristic.rank(np.array([0.2, np.nan, 0.5, 0.2, 0.5])).tolist() == [2, 4, 0, 3, 1]
