"""The selection manifest (CSV) and the two pictures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from saal.errors import SelectionError
from saal.selection import (
    KCenterStrategy,
    RandomStrategy,
    SaalStrategy,
    read_selection_manifest,
    write_selection_manifest,
)
from saal.selection.figures import pool_map, selection_sheet


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 20]).astype(np.float32)
    images = rng.integers(0, 256, size=(60, 24, 24, 1), dtype=np.uint8)
    ids = [f"ISIC_{i:07d}" for i in range(60)]
    sources = [f"/data/pool/{k}.jpg" for k in ids]
    return feats, images, ids, sources


def test_manifest_round_trip(tmp_path, pool):
    feats, _, ids, sources = pool
    sel = SaalStrategy(n_clusters=2, n_init=2).select(feats, 6, seed=0)
    path = write_selection_manifest(tmp_path / "selection.csv", sel, ids, sources)
    assert path.read_text().splitlines()[0] == "rank,image_id,path,cluster,distance,strategy"
    rows = read_selection_manifest(path)
    assert [r.rank for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.image_id for r in rows] == [ids[i] for i in sel.indices]
    assert [r.path for r in rows] == [sources[i] for i in sel.indices]
    assert [r.cluster for r in rows] == sel.cluster.tolist()
    np.testing.assert_allclose([r.distance for r in rows], sel.distance, rtol=1e-5)
    assert {r.strategy for r in rows} == {"saal"}


def test_manifest_without_clusters_or_distances(tmp_path, pool):
    feats, _, ids, _ = pool
    sel = RandomStrategy().select(feats, 3, seed=0)
    rows = read_selection_manifest(write_selection_manifest(tmp_path / "m.csv", sel, ids, None))
    assert all(r.cluster == -1 and math.isnan(r.distance) and r.path == "" for r in rows)
    assert ",-1,," in (tmp_path / "m.csv").read_text()


def test_manifest_errors(tmp_path, pool):
    feats, _, ids, _ = pool
    with pytest.raises(SelectionError, match="only 10 image ids"):
        write_selection_manifest(tmp_path / "m.csv", RandomStrategy().select(feats, 60), ids[:10])
    with pytest.raises(SelectionError, match="not found"):
        read_selection_manifest(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("rank,image_id\n1,a\n")
    with pytest.raises(SelectionError, match="expected columns"):
        read_selection_manifest(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("rank,image_id,path,cluster,distance,strategy\n1,a,,0,,x\n3,b,,0,,x\n")
    with pytest.raises(SelectionError, match="line 3 has rank 3, expected 2"):
        read_selection_manifest(tmp_path / "gap.csv")
    (tmp_path / "junk.csv").write_text("rank,image_id,path,cluster,distance,strategy\n1,a,,zero,,x\n")
    with pytest.raises(SelectionError, match="line 2 is malformed"):
        read_selection_manifest(tmp_path / "junk.csv")


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_selection_sheet_is_a_grid_in_rank_order(tmp_path, pool):
    feats, images, ids, _ = pool
    sel = SaalStrategy(n_clusters=2, n_init=2).select(feats, 8, seed=0)
    w8, h8 = _png_size(selection_sheet(tmp_path / "eight.png", images[sel.indices], sel, ids, columns=4))
    sel12 = SaalStrategy(n_clusters=2, n_init=2).select(feats, 12, seed=0)
    w12, h12 = _png_size(selection_sheet(tmp_path / "twelve.png", images[sel12.indices], sel12, ids, columns=4))
    assert w12 == w8 and h12 > h8  # 4 columns each: 2 rows, then 3 rows
    _, h_wide = _png_size(selection_sheet(tmp_path / "wide.png", images[sel12.indices], sel12, ids, columns=12))
    assert h_wide < h12  # a wider grid is flatter, not a tall strip


def test_selection_sheet_without_clusters_rgb_and_errors(tmp_path, pool):
    feats, images, ids, _ = pool
    rgb = np.repeat(images, 3, axis=3)
    sel = KCenterStrategy().select(feats, 12, seed=0)
    _png_size(selection_sheet(tmp_path / "k.png", rgb[sel.indices], sel, ids))
    with pytest.raises(SelectionError, match="nothing selected"):
        selection_sheet(tmp_path / "e.png", images[:0], RandomStrategy().select(feats, 0), ids)
    with pytest.raises(SelectionError, match="one .* image per selected item"):
        selection_sheet(tmp_path / "n.png", images[:3], sel, ids)


def test_pool_map(tmp_path, pool):
    feats, _, _, _ = pool
    sel = SaalStrategy(n_clusters=2, n_init=2).select(feats, 5, seed=0)
    _png_size(pool_map(tmp_path / "map.png", feats, sel))
    _png_size(pool_map(tmp_path / "plain.png", feats, RandomStrategy().select(feats, 5)))
    _png_size(pool_map(tmp_path / "sub.png", feats, sel, max_points=20))
    with pytest.raises(SelectionError, match="3 cluster labels for 60"):
        pool_map(tmp_path / "x.png", feats, sel, clusters=np.zeros(3, int))
