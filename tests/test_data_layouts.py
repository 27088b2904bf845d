"""Every supported folder layout loads, pairs images with their own masks, and is left untouched."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from data_builders import (assert_paired, isic_id, make_isic2017, snapshot, write_image, write_mask,
                                write_pairs)

from saal.data import load_dataset
from saal.data.imageio import resize_mask
from saal.errors import DataError


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SAAL_CACHE_DIR", str(tmp_path / "cache"))


def load(path, **kw):
    kw.setdefault("progress", False)
    return load_dataset(path, **kw)


def test_isic2017_all_parts_with_subsets_and_extras_ignored(tmp_path):
    root = make_isic2017(tmp_path / "isic", n_train=5, n_val=3, n_test=2)
    before = snapshot(root)
    res = load(root, image_size=32, grayscale=False)
    data = res.data
    assert res.layout == "isic2017" and not res.skipped and not res.warnings
    assert data.images.shape == (10, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (10, 32, 32) and set(np.unique(data.masks)) == {0, 1}
    assert data.subsets == ["train"] * 5 + ["val"] * 3 + ["test"] * 2
    assert data.ids[:5] == [isic_id(k) for k in range(5)] and data.ids[5] == isic_id(1000)
    assert not any("superpixels" in s for s in data.sources)  # superpixel maps are not images
    assert data.sources[0].endswith("ISIC-2017_Training_Data/ISIC_0000000.jpg")
    assert res.original_sizes == [(40, 30)] * 10
    assert data.groups is None
    assert_paired(data)
    assert snapshot(root) == before


def test_isic2016_layout(tmp_path):
    root = tmp_path / "isic2016"
    write_pairs(root / "ISBI2016_ISIC_Part1_Training_Data", root / "ISBI2016_ISIC_Part1_Training_GroundTruth",
                0, 4, mask_suffix="_Segmentation")
    write_pairs(root / "ISBI2016_ISIC_Part1_Test_Data", root / "ISBI2016_ISIC_Part1_Test_GroundTruth",
                100, 2, mask_suffix="_Segmentation")
    res = load(root, image_size=24)
    assert res.layout == "isic2016"
    assert res.data.subsets == ["train"] * 4 + ["test"] * 2
    assert res.data.images.shape == (6, 24, 24, 1)
    assert_paired(res.data)


def test_isic2018_layout_ignores_licence_files(tmp_path):
    root = tmp_path / "isic2018"
    for part, start in (("Training", 0), ("Validation", 50)):
        gt = root / f"ISIC2018_Task1_{part}_GroundTruth"
        write_pairs(root / f"ISIC2018_Task1-2_{part}_Input", gt, start, 3)
        (gt / "LICENSE.txt").write_text("CC-BY-NC")
        (root / f"ISIC2018_Task1-2_{part}_Input" / "ATTRIBUTION.txt").write_text("ISIC")
    res = load(root, image_size=16)
    assert res.layout == "isic2018" and res.data.subsets == ["train"] * 3 + ["val"] * 3
    assert_paired(res.data)


@pytest.mark.parametrize("suffix", ["_segmentation", "_Segmentation", "_mask", "_lesion", ""])
def test_images_and_masks_matched_by_stem(tmp_path, suffix):
    root = tmp_path / "plain"
    write_pairs(root / "images", root / "masks", 0, 4, mask_suffix=suffix, image_ext=".png")
    res = load(root, image_size=20)
    assert res.layout == "images+masks" and len(res.data) == 4 and res.data.subsets == [""] * 4
    assert_paired(res.data)


def test_extensions_are_case_insensitive_and_mask_values_0_1(tmp_path):
    root = tmp_path / "mixed"
    for k, ext in enumerate([".JPG", ".jpeg", ".Png", ".bmp", ".tif", ".TIFF"]):
        write_image(root / "images" / f"img{k}{ext}", k)
        write_mask(root / "masks" / f"img{k}_mask.png", k, high=1 if k % 2 else 255)
    (root / "images" / "notes.txt").write_text("not an image")
    (root / "images" / "._img0.JPG").write_bytes(b"macOS resource fork")
    res = load(root, image_size=20, grayscale=False)
    assert res.data.ids == [f"img{k}" for k in range(6)]
    assert_paired(res.data)


@pytest.mark.parametrize("kind", ["flat", "images"])
def test_unlabeled_folders_load_without_masks(tmp_path, kind):
    root = tmp_path / "unlabeled"
    folder = root if kind == "flat" else root / "images"
    for k in range(5):
        write_image(folder / f"photo_{k}.jpg", k)
    before = snapshot(root)
    res = load(root, image_size=16)
    assert res.layout == kind and res.data.masks is None and not res.data.labeled
    assert res.data.images.shape == (5, 16, 16, 1)
    with pytest.raises(DataError, match="no masks found"):
        load(root, require_masks=True)
    assert snapshot(root) == before


def test_isic_download_without_groundtruth_is_unlabeled(tmp_path):
    root = tmp_path / "isic"
    write_pairs(root / "ISIC-2017_Test_v2_Data", None, 0, 3)
    res = load(root, image_size=16)
    assert res.layout == "isic2017" and res.data.masks is None and res.data.subsets == ["test"] * 3


def test_pointing_at_an_isic_image_folder_warns(tmp_path):
    root = make_isic2017(tmp_path / "isic", n_train=3, n_val=0)
    res = load(root / "ISIC-2017_Training_Data", image_size=16)
    assert res.layout == "flat" and res.data.masks is None and len(res.data) == 3
    assert any("point at its parent" in w for w in res.warnings)


def test_empty_masks_folder_loads_unlabeled_with_warning(tmp_path):
    root = tmp_path / "plain"
    write_pairs(root / "images", None, 0, 3)
    (root / "masks").mkdir()
    res = load(root, image_size=16)
    assert res.data.masks is None and any("holds no masks" in w for w in res.warnings)


def test_require_masks_false_ignores_masks(tmp_path):
    root = make_isic2017(tmp_path / "isic", n_train=3, n_val=0)
    Image.fromarray(np.full((30, 40), 7, np.uint8)).save(
        root / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000001_segmentation.png")  # not binary
    res = load(root, image_size=16, require_masks=False)
    assert res.data.masks is None and len(res.data) == 3


def test_groups_file_fills_groups(tmp_path):
    root = make_isic2017(tmp_path / "synth", n_train=3, n_val=0)
    (root / "saal_synth_groups.csv").write_text(
        "image_id,group\nISIC_0000000,common\nISIC_0000001,rare\nISIC_0000002,common\n")
    res = load(root, image_size=16)
    assert res.data.groups == ["common", "rare", "common"]


def test_groups_file_with_wrong_columns_is_an_error(tmp_path):
    root = make_isic2017(tmp_path / "synth", n_train=2, n_val=0)
    (root / "saal_synth_groups.csv").write_text("id,kind\nISIC_0000000,common\n")
    with pytest.raises(DataError, match=r"saal_synth_groups.csv: needs the columns image_id,group"):
        load(root, image_size=16)


def test_resize_keeps_whole_frame_and_grayscale_option(tmp_path):
    root = tmp_path / "plain"
    # left half white, right half black, on a wide image: a whole-frame resize keeps the halves
    arr = np.zeros((30, 90, 3), np.uint8)
    arr[:, :45] = 255
    (root / "images").mkdir(parents=True)
    Image.fromarray(arr).save(root / "images" / "a.png")
    write_mask(root / "masks" / "a.png", 0, w=90, h=30)
    gray = load(root, image_size=20).data.images[0, :, :, 0]
    rgb = load(root, image_size=20, grayscale=False).data.images[0]
    assert gray.shape == (20, 20) and rgb.shape == (20, 20, 3)
    assert (gray[:, :9] == 255).all() and (gray[:, 11:] == 0).all()
    assert (rgb[:, :9] == 255).all()


def test_loaded_arrays_are_read_only(tmp_path):
    root = make_isic2017(tmp_path / "isic", n_train=2, n_val=0)
    for use_cache in (True, False):
        data = load(root, image_size=16, use_cache=use_cache).data
        with pytest.raises(ValueError):
            data.images[0, 0, 0, 0] = 1


def test_image_and_mask_modes(tmp_path):
    """16-bit grayscale images are scaled (not clipped); 1-bit and palette masks are read as binary."""
    root = tmp_path / "modes"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (30, 1))
    Image.fromarray(ramp).save(root / "images" / "deep.png")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(root / "images" / "one.png")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(root / "images" / "pal.png")
    fg = np.zeros((30, 40), bool)
    fg[5:25, 10:30] = True
    Image.fromarray(fg).save(root / "masks" / "one.png")  # mode "1"
    Image.fromarray(fg.astype(np.uint8)).convert("P").save(root / "masks" / "pal.png")  # palette, indices {0, 1}
    Image.fromarray(fg.astype(np.uint8) * np.uint8(255)).save(root / "masks" / "deep.png")
    assert Image.open(root / "images" / "deep.png").mode in ("I;16", "I")  # "I" in Pillow < 10.1
    assert Image.open(root / "masks" / "one.png").mode == "1" and Image.open(root / "masks" / "pal.png").mode == "P"
    data = load(root, image_size=20).data
    deep = data.images[data.ids.index("deep"), :, :, 0]
    assert deep[:, 0].max() < 10 and deep[:, -1].min() > 245 and 100 < deep[:, 10].mean() < 160
    expected = resize_mask(fg, 20)
    assert expected.sum() == 14 * 10 and expected[3:17, 5:15].all()  # rows 5-25 of 30, columns 10-30 of 40
    for k in ("one", "pal", "deep"):
        assert np.array_equal(data.masks[data.ids.index(k)], expected), k
