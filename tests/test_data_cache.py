"""The preprocessed-array cache: hit when nothing changed, miss on any change, rebuilt when damaged."""

from __future__ import annotations

import os

import numpy as np
import pytest
from data_builders import isic_id, make_isic2017, snapshot, write_mask, write_pairs

from saal.data import load_dataset
from saal.data.cache import default_cache_dir
from saal.errors import DataError

TRAIN = "ISIC-2017_Training_Data"


@pytest.fixture
def isic(tmp_path):
    return make_isic2017(tmp_path / "isic", n_train=5, n_val=2)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def load(path, cache, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("image_size", 16)
    return load_dataset(path, cache_dir=cache, **kw)


def same(a, b):
    assert a.data.ids == b.data.ids and a.data.subsets == b.data.subsets and a.data.sources == b.data.sources
    assert np.array_equal(a.data.images, b.data.images) and np.array_equal(a.data.masks, b.data.masks)
    assert a.original_sizes == b.original_sizes


def test_second_load_is_a_memory_mapped_hit(isic, cache):
    before = snapshot(isic)
    first = load(isic, cache)
    second = load(isic, cache)
    assert not first.cache_hit and second.cache_hit
    assert isinstance(second.data.images, np.memmap) and isinstance(second.data.masks, np.memmap)
    assert second.cache_path == first.cache_path and second.cache_path.parent == cache
    assert {p.name for p in second.cache_path.iterdir()} == {"images.npy", "masks.npy", "manifest.json"}
    same(first, second)
    assert snapshot(isic) == before  # nothing written into the data folder


def test_matches_an_uncached_load(isic, cache):
    same(load(isic, cache), load(isic, cache, use_cache=False))
    assert load(isic, cache, use_cache=False).cache_path is None


@pytest.mark.parametrize("change", [{"image_size": 24}, {"grayscale": False}, {"max_pixels": 10_000_000},
                                    {"require_masks": False}])
def test_changed_parameter_is_a_miss(isic, cache, change):
    load(isic, cache)
    res = load(isic, cache, **change)
    assert not res.cache_hit
    assert load(isic, cache, **change).cache_hit
    assert load(isic, cache).cache_hit  # each parameter set keeps its own entry


def test_touched_file_is_a_miss(isic, cache):
    load(isic, cache)
    f = isic / TRAIN / "ISIC_0000003.jpg"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert not load(isic, cache).cache_hit


def test_rewritten_mask_is_a_miss_and_new_content_is_used(isic, cache):
    old = load(isic, cache)
    m = isic / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000000_segmentation.png"
    write_mask(m, 4)  # another blob
    new = load(isic, cache)
    assert not new.cache_hit
    assert not np.array_equal(old.data.masks[0], new.data.masks[0])


def test_added_and_removed_files_are_misses(isic, cache):
    load(isic, cache)
    write_pairs(isic / TRAIN, isic / "ISIC-2017_Training_Part1_GroundTruth", 77, 1)
    res = load(isic, cache)
    assert not res.cache_hit and isic_id(77) in res.data.ids
    (isic / TRAIN / f"{isic_id(77)}.jpg").unlink()
    (isic / "ISIC-2017_Training_Part1_GroundTruth" / f"{isic_id(77)}_segmentation.png").unlink()
    res = load(isic, cache)
    assert not res.cache_hit and isic_id(77) not in res.data.ids and len(res.data) == 7


def test_ignored_files_do_not_invalidate(isic, cache):
    load(isic, cache)
    (isic / TRAIN / "notes.txt").write_text("a note")
    assert load(isic, cache).cache_hit


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "manifest", "delete_masks"])
def test_damaged_cache_is_rebuilt_not_trusted(isic, cache, damage):
    good = load(isic, cache)
    folder = good.cache_path
    # copy out of the memory maps before damaging the files they map (in place, same inode)
    good.data.images, good.data.masks = np.array(good.data.images), np.array(good.data.masks)
    if damage == "flip_byte":
        raw = bytearray((folder / "images.npy").read_bytes())
        raw[-5] ^= 0xFF
        (folder / "images.npy").write_bytes(bytes(raw))
    elif damage == "truncate":
        raw = (folder / "masks.npy").read_bytes()
        (folder / "masks.npy").write_bytes(raw[: len(raw) // 2])
    elif damage == "manifest":
        (folder / "manifest.json").write_text("{ not json")
    else:
        (folder / "masks.npy").unlink()
    res = load(isic, cache)
    assert not res.cache_hit
    if damage != "manifest":  # an unparsable manifest is simply not a valid entry
        assert any("unreadable" in w and "rebuilt" in w for w in res.warnings), res.warnings
    same(good, res)
    assert load(isic, cache).cache_hit


def test_skipped_items_are_remembered_and_still_refused_without_skip_bad(isic, cache):
    (isic / TRAIN / "ISIC_0000001.jpg").write_bytes(b"broken")
    res = load(isic, cache, skip_bad=True)
    again = load(isic, cache, skip_bad=True)
    assert again.cache_hit and again.skipped == res.skipped and len(again.data) == 6
    with pytest.raises(DataError, match="ISIC_0000001.jpg: not a readable image"):
        load(isic, cache)


def test_cache_inside_the_data_folder_is_refused(isic):
    with pytest.raises(DataError, match="is inside the data folder"):
        load(isic, isic / "cache")
    assert not (isic / "cache").exists()


def test_default_cache_dir_follows_the_environment(isic, tmp_path, monkeypatch):
    monkeypatch.setenv("SAAL_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    res = load_dataset(isic, image_size=16, progress=False)
    assert res.cache_path.parent == tmp_path / "env-cache"
    monkeypatch.delenv("SAAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "saal"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "saal"


def test_unwritable_cache_falls_back_to_memory(isic, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder would go")
    res = load(isic, blocker / "sub")
    assert not res.cache_hit and res.cache_path is None and len(res.data) == 7
    assert any("could not write the cache" in w for w in res.warnings)
