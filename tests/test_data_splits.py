"""Pool / test splits: deterministic, official mode, clear size errors, safe save and load."""

from __future__ import annotations

import numpy as np
import pytest

from saal.data import LesionData, apply_split, load_split, make_split, save_split
from saal.data.splits import Split, split_paths
from saal.errors import SaalError


def fake(n: int, subsets: list[str] | None = None) -> LesionData:
    return LesionData(ids=[f"ISIC_{k:07d}" for k in range(n)], images=np.zeros((n, 8, 8, 1), np.uint8),
                      masks=np.zeros((n, 8, 8), np.uint8), subsets=subsets or [])


def test_random_split_is_deterministic_and_disjoint():
    data = fake(50)
    a = make_split(data, test_size=10, pool_size=30, seed=3)
    assert a == make_split(data, test_size=10, pool_size=30, seed=3)
    assert len(a.pool) == 30 and len(a.test) == 10 and not set(a.pool) & set(a.test)
    assert a != make_split(data, test_size=10, pool_size=30, seed=4)
    rest = make_split(data, test_size=10, seed=3)
    assert rest.test == a.test and len(rest.pool) == 40  # pool_size None: everything else


def test_random_split_does_not_depend_on_load_order():
    data = fake(30)
    shuffled = data.subset(np.random.default_rng(0).permutation(30))
    assert make_split(data, test_size=5, seed=1) == make_split(shuffled, test_size=5, seed=1)


def test_paper_protocol_sizes():
    split = make_split(fake(2000), pool_size=1600, test_size=400, seed=0)
    assert len(split.pool) == 1600 and len(split.test) == 400


@pytest.mark.parametrize("kw,msg", [
    ({"test_size": 40, "pool_size": 20}, r"test_size 40 \+ pool_size 20 = 60 exceeds the 50"),
    ({"test_size": 50}, "at least 1 pool image = 51 exceeds"),
    ({"test_size": 0}, "test_size must be at least 1"),
    ({}, "test_size is needed"),
    ({"test_size": 5, "mode": "stratified"}, "unknown split mode 'stratified'"),
])
def test_bad_sizes_and_modes(kw, msg):
    with pytest.raises(SaalError, match=msg):
        make_split(fake(50), **kw)


def test_official_split_uses_train_and_test_parts():
    subsets = ["train"] * 6 + ["val"] * 3 + ["test"] * 4
    data = fake(13, subsets)
    split = make_split(data, mode="official")
    assert split.pool == data.ids[:6] and split.test == data.ids[9:]
    no_test = fake(9, subsets[:9])
    assert make_split(no_test, mode="official").test == no_test.ids[6:]  # val when there is no test part
    small = make_split(data, mode="official", pool_size=4, test_size=2, seed=1)
    assert len(small.pool) == 4 and set(small.pool) <= set(data.ids[:6]) and set(small.test) <= set(data.ids[9:])
    assert small == make_split(data, mode="official", pool_size=4, test_size=2, seed=1)


def test_official_split_errors():
    with pytest.raises(SaalError, match=r"needs a 'train' part .* has val: 3"):
        make_split(fake(3, ["val"] * 3), mode="official")
    with pytest.raises(SaalError, match="pool_size 9 exceeds the 6 images of the official 'train' part"):
        make_split(fake(9, ["train"] * 6 + ["val"] * 3), mode="official", pool_size=9)


def test_save_load_roundtrip_and_refusal_to_overwrite(tmp_path):
    data = fake(20)
    split = make_split(data, test_size=5, seed=0)
    pool_csv, test_csv = save_split(tmp_path / "run", split)
    assert pool_csv == tmp_path / "run" / "split" / "pool.csv" and test_csv.name == "test.csv"
    assert pool_csv.read_text().splitlines()[0] == "image_id"
    assert load_split(tmp_path / "run") == split
    mtime = pool_csv.stat().st_mtime_ns
    save_split(tmp_path / "run", split)  # identical: fine, and left as is
    assert pool_csv.stat().st_mtime_ns == mtime
    other = make_split(data, test_size=5, seed=1)
    with pytest.raises(SaalError, match=r"split/pool.csv already holds a different split"):
        save_split(tmp_path / "run", other)
    assert load_split(tmp_path / "run") == split


def test_load_split_errors(tmp_path):
    with pytest.raises(SaalError, match=r"pool.csv is missing"):
        load_split(tmp_path)
    pool, test = split_paths(tmp_path)
    pool.parent.mkdir(parents=True)
    pool.write_text("image_id\na\nb\n")
    test.write_text("image_id\nb\n")
    with pytest.raises(SaalError, match="in both pool and test"):
        load_split(tmp_path)
    test.write_text("id\nc\n")
    with pytest.raises(SaalError, match=r"test.csv: needs an image_id column"):
        load_split(tmp_path)


def test_apply_split(tmp_path):
    data = fake(10)
    split = make_split(data, test_size=3, seed=0)
    pool, test = apply_split(data, split)
    assert pool.ids == split.pool and test.ids == split.test and len(pool.images) == 7
    with pytest.raises(SaalError, match=r"test split lists 1 id\(s\) that the dataset does not hold \(first: X\)"):
        apply_split(data, Split(split.pool, ["X"]))
