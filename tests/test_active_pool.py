"""ActiveSet: the labeled/unlabeled bookkeeping and its JSON persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saal.active import ActiveSet
from saal.errors import DataError, SaalError

POOL = ["a", "b", "c", "d", "e"]


def test_label_moves_ids_from_unlabeled_to_labeled_in_labeling_order():
    s = ActiveSet(POOL)
    assert s.n_labeled == 0 and s.unlabeled_ids == POOL and len(s) == 5
    s.label(["d", "b"], round=0, source="cold-start")
    s.label(["a"], round=1)
    assert s.labeled_ids == ["d", "b", "a"]
    assert s.unlabeled_ids == ["c", "e"]
    assert s.n_labeled == 3 and s.n_unlabeled == 2
    assert s.labeled_mask.tolist() == [True, True, False, True, False]
    assert s.labeled_indices.tolist() == [3, 1, 0]
    assert s.unlabeled_indices.tolist() == [2, 4]
    assert s.round_of("d") == 0 and s.round_of("a") == 1
    assert s.source_of("b") == "cold-start" and s.source_of("a") == "oracle"


def test_labeled_mask_is_a_copy():
    s = ActiveSet(POOL)
    s.labeled_mask[:] = True
    assert s.n_labeled == 0 and not s.labeled_mask.any()


def test_unknown_id_is_named_and_nothing_is_labeled():
    s = ActiveSet(POOL)
    with pytest.raises(SaalError, match="zzz"):
        s.label(["a", "zzz"], round=0)
    assert s.n_labeled == 0


def test_already_labeled_id_is_refused_so_nothing_counts_twice():
    s = ActiveSet(POOL)
    s.label(["a"], round=0)
    with pytest.raises(SaalError, match="already labeled.*a"):
        s.label(["b", "a"], round=1)
    assert s.labeled_ids == ["a"]
    with pytest.raises(SaalError, match="repeated"):
        s.label(["c", "c"], round=1)
    assert s.labeled_ids == ["a"]


def test_bad_source_round_and_pool_are_errors():
    with pytest.raises(SaalError, match="unique.*x"):
        ActiveSet(["x", "y", "x"])
    s = ActiveSet(POOL)
    with pytest.raises(SaalError, match="source"):
        s.label(["a"], source="intern")
    with pytest.raises(SaalError, match="round"):
        s.label(["a"], round="one")
    with pytest.raises(SaalError, match="not labeled"):
        s.round_of("a")
    with pytest.raises(SaalError, match="not in the pool"):
        s.round_of("nope")


def test_state_dict_round_trip_keeps_order_rounds_and_sources():
    s = ActiveSet(POOL)
    s.label(["c", "a"], round=0, source="cold-start")
    s.label(["e"], round=1, source="annotator")
    s.label(["b"])
    state = s.state_dict()
    json.dumps(state)  # plain JSON
    t = ActiveSet.from_state_dict(json.loads(json.dumps(state)))
    assert t.labeled_ids == ["c", "a", "e", "b"]
    assert [t.round_of(k) for k in t.labeled_ids] == [0, 0, 1, None]
    assert [t.source_of(k) for k in t.labeled_ids] == ["cold-start", "cold-start", "annotator", "oracle"]
    assert np.array_equal(t.labeled_mask, s.labeled_mask)
    u = ActiveSet(POOL)
    u.label(["d"])
    u.load_state_dict(state)  # replaces, not merges
    assert u.labeled_ids == ["c", "a", "e", "b"]


def test_load_state_dict_refuses_another_pool():
    s = ActiveSet(POOL)
    with pytest.raises(SaalError, match="different pool"):
        ActiveSet(["a", "b"]).load_state_dict(s.state_dict())


def test_save_and_load(tmp_path):
    s = ActiveSet(POOL)
    s.label(["b"], round=2, source="annotator")
    path = tmp_path / "run" / "active.json"
    s.save(path)
    t = ActiveSet.load(path)
    assert t.labeled_ids == ["b"] and t.round_of("b") == 2 and t.pool_ids == POOL
    assert [p.name for p in path.parent.iterdir()] == ["active.json"]  # no temp file left


def test_load_names_the_file_when_unusable(tmp_path):
    bad = tmp_path / "active.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="active.json"):
        ActiveSet.load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="active.json"):
        ActiveSet.load(bad)
    with pytest.raises(DataError, match="not found"):
        ActiveSet.load(tmp_path / "missing.json")
