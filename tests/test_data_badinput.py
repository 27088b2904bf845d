"""Bad input: a one-line DataError naming the file and the problem; ``skip_bad`` leaves it out and says so."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image, ImageFile
from data_builders import (isic_id, make_isic2017, snapshot, write_image, write_mask, write_pairs,
                                write_png_header)

from saal.data import load_dataset
from saal.data.imageio import MIN_IMAGE_SIDE
from saal.errors import DataError, SaalError

TRAIN = "ISIC-2017_Training_Data"
GT = "ISIC-2017_Training_Part1_GroundTruth"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SAAL_CACHE_DIR", str(tmp_path / "cache"))


def load(path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("image_size", 16)
    return load_dataset(path, **kw)


@pytest.fixture
def isic(tmp_path):
    return make_isic2017(tmp_path / "isic", n_train=6, n_val=2)


def image(root, k=2):
    return root / TRAIN / f"{isic_id(k)}.jpg"


def mask(root, k=2):
    return root / GT / f"{isic_id(k)}_segmentation.png"


def expect_error(root, path, pattern, **kw):
    """The load fails with one line naming ``path``; with skip_bad it succeeds and reports ``path``."""
    before = snapshot(root)
    with pytest.raises(DataError) as err:
        load(root, **kw)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert re.search(pattern, msg), msg
    res = load(root, skip_bad=True, **kw)
    assert any(p == str(path) and re.search(pattern, why) for p, why in res.skipped), res.skipped
    assert snapshot(root) == before
    return res


# ---------------------------------------------------------------- folders
def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: data folder does not exist"):
        load(tmp_path / "nowhere")


def test_file_instead_of_folder(tmp_path):
    f = write_image(tmp_path / "one.jpg", 0)
    with pytest.raises(DataError, match="not a folder"):
        load(f)


@pytest.mark.parametrize("content", ["nothing", "text", "images_dir"])
def test_empty_folder(tmp_path, content):
    root = tmp_path / "empty"
    root.mkdir()
    if content == "text":
        (root / "readme.txt").write_text("hi")
    if content == "images_dir":
        (root / "images").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found"):
        load(root)


def test_two_official_families_in_one_folder(tmp_path):
    root = make_isic2017(tmp_path / "both", n_train=2, n_val=0)
    (root / "ISBI2016_ISIC_Part1_Training_Data").mkdir()
    with pytest.raises(DataError, match="holds both ISIC 2017 and ISIC 2016"):
        load(root)


# ---------------------------------------------------------------- files
def test_corrupt_image(isic):
    image(isic).write_bytes(b"this is not a jpeg at all")
    res = expect_error(isic, image(isic), "not a readable image")
    assert isic_id(2) not in res.data.ids and len(res.data) == 7


def test_truncated_jpeg(tmp_path):
    root = make_isic2017(tmp_path / "isic", n_train=3, n_val=0)
    big = root / TRAIN / "ISIC_0000001.jpg"
    # a real JPEG large enough that cutting it leaves a valid header and partial scan data
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(rgb).resize((40, 30)).save(big, quality=95)
    data = big.read_bytes()
    big.write_bytes(data[: len(data) * 2 // 3])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    expect_error(root, big, "corrupt or truncated image")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("cut", [20, 200])
def test_truncated_png(tmp_path, cut):
    root = tmp_path / "plain"
    for k in range(3):
        rgb = np.random.default_rng(k).integers(0, 256, (30, 40, 3), dtype=np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "images" / f"p{k}.png")
    bad = root / "images" / "p1.png"
    data = bad.read_bytes()
    bad.write_bytes(data[:-cut])  # cut 20: the pixels still decode, only the file's tail is missing
    res = expect_error(root, bad, "corrupt or truncated image")
    assert res.data.ids == ["p0", "p2"]


def test_image_without_mask(isic):
    mask(isic).unlink()
    expect_error(isic, image(isic), r"image has no mask \(looked in .*ISIC-2017_Training_Part1_GroundTruth")


def test_mask_without_image(isic):
    image(isic).unlink()
    res = expect_error(isic, mask(isic), "mask has no image")
    assert len(res.data) == 7


def test_part_without_groundtruth_in_labeled_set(isic):
    # a test part downloaded without its ground truth, beside labeled parts
    write_pairs(isic / "ISIC-2017_Test_v2_Data", None, 3000, 2)
    res = expect_error(isic, isic / "ISIC-2017_Test_v2_Data" / "ISIC_0003000.jpg", "no mask folder for this part")
    assert len(res.skipped) == 2 and "test" not in res.data.subsets


def test_mask_size_mismatch(isic):
    Image.fromarray(np.zeros((31, 40), np.uint8)).save(mask(isic))
    expect_error(isic, mask(isic), r"mask is 40x31 but its image ISIC_0000002.jpg is 40x30")


@pytest.mark.parametrize("values,found", [((0, 128, 255), r"found 3 distinct values from 0 to 255 \(0, 128, 255\)"),
                                          ((0, 2), r"found 2 distinct values from 0 to 2"),
                                          ((3, 7), r"found 2 distinct values from 3 to 7 \(3, 7\)")])
def test_non_binary_mask(isic, values, found):
    arr = np.full((30, 40), values[0], np.uint8)
    arr[10:20, 10:20] = values[-1]
    arr[0, 0] = values[len(values) // 2]
    Image.fromarray(arr).save(mask(isic))
    expect_error(isic, mask(isic), r"mask is not binary: values must be \{0, 255\} or \{0, 1\}, " + found)


def test_colour_mask(isic):
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[5:10, 5:10] = (255, 0, 0)
    Image.fromarray(arr).save(mask(isic))
    expect_error(isic, mask(isic), "mask is in colour")


def test_grey_rgb_mask_is_accepted(isic):
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[5:20, 5:30] = 255
    Image.fromarray(arr).save(mask(isic))
    res = load(isic)
    assert res.data.masks[res.data.ids.index(isic_id(2))].any()


def test_duplicate_id_two_extensions(isic):
    write_image(isic / TRAIN / f"{isic_id(2)}.png", 2)
    res = expect_error(isic, image(isic), r"duplicate image id 'ISIC_0000002': also .*ISIC_0000002.png")
    assert isic_id(2) not in res.data.ids  # neither copy is trusted
    assert sum(1 for p, _ in res.skipped if "ISIC_0000002" in p) == 2


def test_duplicate_id_in_two_subsets(isic):
    write_image(isic / "ISIC-2017_Validation_Data" / f"{isic_id(2)}.jpg", 2)
    write_mask(isic / "ISIC-2017_Validation_Part1_GroundTruth" / f"{isic_id(2)}_segmentation.png", 2)
    res = expect_error(isic, image(isic), r"duplicate image id 'ISIC_0000002': also .*Validation_Data")
    assert isic_id(2) not in res.data.ids and len(res.data) == 7


def test_two_masks_for_one_image(tmp_path):
    root = tmp_path / "plain"
    write_pairs(root / "images", root / "masks", 0, 3, mask_suffix="_mask")
    write_mask(root / "masks" / f"{isic_id(1)}_segmentation.png", 1)
    with pytest.raises(DataError, match="has 2 masks"):
        load(root)


def test_decompression_bomb_refused_before_decoding(isic):
    bomb = image(isic).with_suffix(".png")
    image(isic).unlink()
    write_png_header(bomb, 9000, 9000)  # 81 MP: over the 64 MP default
    res = expect_error(isic, bomb, r"image is 9000x9000 = 81 megapixels, over the limit of 64 ")
    assert len(res.data) == 7


def test_huge_header_is_refused(isic):
    bomb = image(isic).with_suffix(".png")
    image(isic).unlink()
    write_png_header(bomb, 100_000, 100_000)
    expect_error(isic, bomb, "too large to decode safely")


def test_max_pixels_is_configurable(isic):
    write_image(image(isic, 0), 0, w=80, h=60)
    write_mask(mask(isic, 0), 0, w=80, h=60)
    res = expect_error(isic, image(isic, 0), r"80x60 = 0.0048 megapixels, over the limit of 0.002 ", max_pixels=2000)
    assert len(res.data) == 7


def test_skip_bad_reports_every_problem_and_keeps_the_rest(isic):
    image(isic, 0).write_bytes(b"garbage")
    mask(isic, 1).unlink()
    Image.fromarray(np.full((30, 40), 9, np.uint8)).save(mask(isic, 3))
    res = load(isic, skip_bad=True)
    assert len(res.skipped) == 3
    assert res.data.ids == [isic_id(k) for k in (2, 4, 5, 1000, 1001)]


def test_all_bad_is_an_error_even_with_skip_bad(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for k in range(3):
        (root / f"x{k}.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"x0.jpg: not a readable image .*none of the 3 image\(s\) could be used"):
        load(root, skip_bad=True)


def test_bad_options(isic):
    with pytest.raises(SaalError, match="image_size must be at least 8"):
        load(isic, image_size=2)


# ---------------------------------------------------------------- hostile headers and names
@pytest.mark.parametrize("side, pattern", [
    (9000, r"mask is 9000x9000 but its image ISIC_0000002.jpg is 40x30"),  # the size is judged before the limit
    (100_000, r"mask is too large to decode safely"),
])
def test_bomb_mask_is_refused_before_decoding(isic, side, pattern):
    write_png_header(mask(isic), side, side)
    res = expect_error(isic, mask(isic), pattern)
    assert isic_id(2) not in res.data.ids and len(res.data) == 7


def write_bytes_name(folder, name: bytes, data: bytes):
    """A file whose name is not UTF-8 (Linux allows any bytes); skips where the file system refuses."""
    path = os.fsencode(folder) + b"/" + name
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as ex:
        pytest.skip(f"this file system refuses non-UTF-8 names ({ex})")
    return os.fsdecode(path)


def test_file_name_that_is_not_utf8(tmp_path):
    root = tmp_path / "flat"
    for k in range(3):
        write_image(root / f"p{k}.jpg", k)
    write_bytes_name(root, b"\xff\xfe.jpg", (root / "p0.jpg").read_bytes())
    shown = f"{root}/\\xff\\xfe.jpg"  # the folder and the name, escaped: printable on any terminal
    res = expect_error(root, shown, r"file name is not valid UTF-8")
    assert res.data.ids == ["p0", "p1", "p2"]


def test_mask_name_that_is_not_utf8(isic):
    name = write_bytes_name(isic / GT, b"ISIC_\xff_segmentation.png", mask(isic).read_bytes())
    res = expect_error(isic, f"{isic / GT}/ISIC_\\xff_segmentation.png", r"file name is not valid UTF-8")
    assert len(res.data) == 8 and os.path.exists(name)


@pytest.mark.parametrize("stem, why", [("IMD:002", r"it holds :"), ("a?b", r"it holds \?"),
                                       ("tab\there", "it holds control"), ("x" * 210, "it is over 200 bytes")])
def test_ids_that_cannot_name_batch_files_are_refused_at_load(tmp_path, stem, why):
    """The annotation export would refuse them after pretraining and selection: refuse them now."""
    root = tmp_path / "plain"
    write_pairs(root / "images", root / "masks", 0, 3)
    write_image(root / "images" / f"{stem}.jpg", 5)
    write_mask(root / "masks" / f"{stem}.png", 5)  # its mask is left out with it, not reported as an orphan
    shown = root / "images" / f"{stem.replace(chr(9), chr(92) + 't')}.jpg"  # a tab is shown as \t: one line
    res = expect_error(root, shown, r"image id '.* cannot name the files of an annotation batch \(" + why)
    assert len(res.skipped) == 1 and res.data.ids == [isic_id(k) for k in range(3)]


@pytest.mark.parametrize("w, h", [(1, 1), (15, 40), (40, 15)])
def test_image_under_the_minimum_side_is_refused(isic, w, h):
    write_image(image(isic), 2, w=w, h=h)
    write_mask(mask(isic), 2, w=w, h=h)
    res = expect_error(isic, image(isic), rf"image is {w}x{h} pixels, under the minimum of {MIN_IMAGE_SIDE} px")
    assert len(res.data) == 7


def test_image_of_the_minimum_side_is_used(isic):
    write_image(image(isic), 2, w=MIN_IMAGE_SIDE, h=MIN_IMAGE_SIDE)
    write_mask(mask(isic), 2, w=MIN_IMAGE_SIDE, h=MIN_IMAGE_SIDE)
    assert isic_id(2) in load(isic).data.ids
