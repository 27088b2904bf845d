"""Queries: the next batch of k unlabeled ids, from scores, features or neither."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from saal.active import QUERIES, ActiveSet, Diverse, RandomQuery, Representative, make_query
from saal.active.queries import top_k
from saal.errors import SaalError


def random_probs(b: int, t: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 2, size, size, generator=g).mul(3).softmax(dim=2)


class NearestFirstRule:
    """A tiny stand-in for a saal.selection strategy: rows nearest the feature mean first."""

    def select(self, features, budget, already_selected, seed):
        prior = list(already_selected)
        order = np.argsort(np.linalg.norm(features - features.mean(0), axis=1), kind="stable")
        new = [i for i in order if i not in prior][: budget - len(prior)]
        return SimpleNamespace(indices=np.array(prior + new, dtype=np.int64))


def test_top_k_returns_the_best_candidates():
    assert top_k([0.1, 0.9, 0.5], ["x", "y", "z"], 2).tolist() == ["y", "z"]
    assert top_k([0.1, 0.9, 0.5], [7, 3, 5], 0).tolist() == []
    with pytest.raises(SaalError, match="cannot query 4 images: only 3"):
        top_k([0.1, 0.9, 0.5], [7, 3, 5], 4)
    with pytest.raises(SaalError, match="no score for candidates 3"):
        top_k([0.1, np.nan, 0.5], [7, 3, 5], 1)


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_query_returns_k_unlabeled_ids_deterministically(name):
    pool = [f"img{i}" for i in range(20)]
    features = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    picks = []
    for _ in range(2):
        active = ActiveSet(pool)
        active.label(["img0", "img5", "img7"], round=0, source="cold-start")
        query = make_query(name, seed=3, n_clusters=3)
        probs = random_probs(len(active), 3, seed=1)[active.unlabeled_indices]
        scores = query.heuristic.score_batches([(slice(0, len(probs)), probs)]) if query.needs_predictions else None
        chosen = query.select(active, 6, scores=scores, features=features)
        assert len(chosen) == 6 and len(set(chosen)) == 6
        assert not set(chosen) & set(active.labeled_ids)
        assert query.select(active, 0, scores=scores, features=features) == []
        with pytest.raises(SaalError, match="only 17 unlabeled"):
            query.select(active, 18, scores=scores, features=features)
        active.label(chosen, round=1)  # they really are unlabeled pool ids
        picks.append(chosen)
    assert picks[0] == picks[1]


def test_random_depends_on_the_seed_and_needs_no_predictions():
    pool = [str(i) for i in range(50)]
    a = RandomQuery(seed=1).select(ActiveSet(pool), 5)
    b = RandomQuery(seed=2).select(ActiveSet(pool), 5)
    assert a != b and RandomQuery().needs_predictions is False


def test_random_resumes_identically_with_a_fresh_object():
    pool = [str(i) for i in range(50)]
    run = RandomQuery(seed=4)
    active = ActiveSet(pool)
    first = run.select(active, 5)
    active.label(first, round=0)
    second = run.select(active, 5)
    resumed = ActiveSet.from_state_dict(active.state_dict())
    assert RandomQuery(seed=4).select(resumed, 5) == second
    assert RandomQuery(seed=4).select(ActiveSet(pool), 5) == first


def test_prediction_queries_ask_for_scores():
    with pytest.raises(SaalError, match="needs prediction scores"):
        make_query("entropy").select(ActiveSet(["a", "b"]), 1)


def test_registry_names_and_unknown_name():
    assert set(QUERIES) == {"random", "entropy", "bald", "variance", "representative", "uncertainty-diversity",
                            "cold-start-rule", "cluster-entropy"}
    with pytest.raises(SaalError, match="--query 'bold': choose one of .*bald"):
        make_query("bold")
    assert make_query("bald", reduction="top10").heuristic.reduction == "top10"


# -- feature-based ---------------------------------------------------------------------------
def test_diverse_skips_a_duplicate_of_its_first_pick():
    # items 0 and 1: identical features, most uncertain; item 2 distinct and uncertain; item 3 confident
    scores = np.array([0.9, 0.9, 0.8, 0.1])
    features = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])
    query = Diverse(m_factor=1.5)  # m = 3: the confident item 3 is never a candidate
    assert query.diverse(scores, features, 2).tolist() == [0, 2]
    assert top_k(scores, np.arange(4), 2).tolist() == [0, 1]  # plain top scores take the duplicate


def test_diverse_moves_away_from_the_labeled_set():
    active = ActiveSet(["l", "u0", "u1", "u2"])
    active.label(["l"], round=0)
    features = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [0.0, 0.2]])
    chosen = Diverse(m_factor=3).select(active, 1, scores=np.array([0.9, 0.5, 0.8]), features=features)
    assert chosen == ["u1"]  # the uncertain candidates near the labeled image add little


def test_diverse_composes_any_heuristic():
    from saal.active import BALD

    query = Diverse(BALD())
    assert query.needs_predictions and query.heuristic.min_samples == 2
    with pytest.raises(SaalError, match="MC-dropout"):
        query.heuristic.compute_score(random_probs(2, 1))
    assert query.heuristic.compute_score(random_probs(2, 3)).shape == (2,)


def test_representative_extends_the_labeled_set_with_its_rule():
    features = np.array([[0.0], [10.0], [1.0], [-2.0], [0.5]], dtype=np.float32)  # mean 1.9
    rep = Representative(NearestFirstRule())
    assert rep.extend(features, [2], 2).tolist() == [4, 0]
    active = ActiveSet(list("abcde"))
    active.label(["c"], round=0, source="cold-start")
    assert rep.select(active, 2, features=features) == ["e", "a"]
    with pytest.raises(SaalError, match="features"):
        rep.select(active, 2)


def test_representative_refuses_a_rule_that_breaks_the_contract():
    class Forgetful:
        def select(self, features, budget, already_selected, seed):
            return SimpleNamespace(indices=np.arange(budget))  # ignores already_selected

    with pytest.raises(SaalError, match="did not return"):
        Representative(Forgetful()).extend(np.eye(4), [3], 1)


def test_representative_defaults_to_the_papers_cluster_criterion():
    from saal.selection import SaalStrategy

    rep = Representative(seed=0)
    assert isinstance(rep.rule, SaalStrategy) and rep.rule.n_clusters == 10
    assert make_query("representative", n_clusters=4).rule.n_clusters == 4
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.1, (15, 3)), rng.normal(5, 0.1, (15, 3))]).astype(np.float32)
    first = rep.extend(features, [], 4)
    more = rep.extend(features, first, 4)
    assert len(set(first) | set(more)) == 8
    assert rep.extend(features, first, 4).tolist() == more.tolist()  # same seed, same picks
    # the picks are the paper's criterion's picks, continued
    paper = SaalStrategy().select(features, 8, already_selected=first.tolist(), seed=0).indices[4:]
    assert more.tolist() == paper.tolist()


def test_cold_start_rule_query_extends_the_cold_start_it_is_given():
    """The query object alone; that a run hands it the run's own cold start is tests/test_human_loop.py's."""
    from saal.selection import TypiclustStrategy

    query = make_query("cold-start-rule", cold_start="typiclust", seed=2)
    assert isinstance(query, Representative) and isinstance(query.rule, TypiclustStrategy)
    assert query.name == "cold-start-rule" and make_query("representative").name == "representative"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 3)).astype(np.float32)
    active = ActiveSet([f"i{k}" for k in range(40)])
    first = TypiclustStrategy().select(features, 5, seed=2).indices
    active.label([f"i{k}" for k in first], round=0, source="cold-start")
    picks = query.select(active, 4, features=features)
    expected = TypiclustStrategy().select(features, 9, already_selected=first, seed=2).indices[5:]
    assert picks == [f"i{k}" for k in expected]


def test_cluster_entropy_takes_the_most_uncertain_image_of_each_uncovered_cluster():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    features = np.concatenate([c + rng.normal(0, 0.2, (10, 2)) for c in centres]).astype(np.float32)
    active = ActiveSet([f"i{k}" for k in range(40)])
    active.label(["i0"], round=0, source="cold-start")  # blob 0 is covered
    scores = np.zeros(39)
    scores[[4, 14, 24, 33, 35]] = [0.9, 0.5, 0.7, 0.8, 0.6]  # candidate positions (pool rows minus row 0)
    picks = make_query("cluster-entropy", seed=0).select(active, 3, scores=scores, features=features)
    rows = sorted(int(p[1:]) for p in picks)
    assert rows == [15, 25, 34]  # the most uncertain of blobs 1, 2 and 3; blob 0 already has a label
    assert make_query("entropy").select(active, 3, scores=scores, features=features) == ["i5", "i34", "i25"]


def test_a_second_query_takes_over_at_its_budget(monkeypatch, tmp_path):
    from saal.active import loop as loop_module
    from saal.active.loop import LoopConfig, loop_query, run_simulated
    from saal.data.dataset import LesionData

    config = LoopConfig(budgets=(4, 8, 12), cold_start="random", query="random", query_then="entropy", switch_at=8,
                        seg=loop_module.SegConfig(steps=1, batch_size=2, base_width=4, device="cpu"), init="scratch")
    assert loop_query(config, 4).name == "random" and loop_query(config, 8).name == "entropy"
    assert loop_query(LoopConfig(budgets=(4,), query="random"), 500).name == "random"  # no second query: never
    used = []
    real = loop_module.query_ids

    def spy(model, active, pool, k, *, query, **kw):
        used.append((active.n_labeled, query.name))
        return real(model, active, pool, k, query=query, **kw)

    monkeypatch.setattr(loop_module, "query_ids", spy)
    rng = np.random.default_rng(0)
    pool = LesionData(ids=[f"p{i}" for i in range(20)], images=rng.integers(0, 256, (20, 16, 16, 1), dtype=np.uint8),
                      masks=rng.integers(0, 2, (20, 16, 16), dtype=np.uint8))
    run_simulated(tmp_path / "loop", pool, None, config=config, features=None, ssl_state=None, progress=False)
    assert used == [(4, "random"), (8, "entropy")]
