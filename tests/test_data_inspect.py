"""``inspect_dataset`` and ``saal data inspect``: report, contact sheet, exit codes, one-line errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from data_builders import isic_id, make_isic2017, snapshot, write_image, write_mask, write_pairs

from saal.cli.main import main
from saal.data import contact_sheet, inspect_dataset
from saal.data.inspect import mask_stats
from saal.errors import DataError


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SAAL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def isic(tmp_path):
    return make_isic2017(tmp_path / "isic", n_train=5, n_val=2)


def test_mask_stats_are_exact():
    masks = np.zeros((3, 10, 10), np.uint8)
    masks[0, 2:4, 2:7] = 1  # 10 px inside
    masks[1, 0, :] = 1  # 10 px on the border
    stats = mask_stats(masks)
    assert stats.fg_min == 0.0 and stats.fg_max == pytest.approx(0.1) and stats.fg_mean == pytest.approx(0.2 / 3)
    assert stats.empty == 1 and stats.border_share == pytest.approx(1 / 3)


def test_report_of_a_clean_set(isic):
    report = inspect_dataset(isic, image_size=32, progress=False)
    assert report.usable and report.reason == "" and not report.problems
    assert report.counts == {"train": 5, "val": 2}
    assert report.sizes == {(40, 30): 7}
    assert 0 < report.masks.fg_min <= report.masks.fg_mean <= report.masks.fg_max < 1 and report.masks.empty == 0
    text = report.format()
    for line in ("layout    isic2017", "images    7 labeled (train 5, val 2)", "sizes     40x30 (x7)",
                 "problems  none", "status    usable"):
        assert line in text


def test_report_lists_every_problem(isic):
    (isic / "ISIC-2017_Training_Data" / "ISIC_0000000.jpg").write_bytes(b"junk")
    (isic / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000001_segmentation.png").unlink()
    report = inspect_dataset(isic, image_size=16, progress=False)
    assert len(report.problems) == 2 and not report.usable
    assert report.reason.startswith("2 problem(s) found, first: ") and "--skip-bad" in report.reason
    assert "problems  2 (must be fixed or skipped)" in report.format()
    assert inspect_dataset(isic, image_size=16, skip_bad=True, progress=False).usable


def test_cli_inspect_clean_set_exit_0_and_sheet(isic, tmp_path, capsys):
    before = snapshot(isic)
    sheet = tmp_path / "out" / "sheet.png"
    assert main(["data", "inspect", str(isic), "--size", "32", "--sheet", str(sheet), "-q"]) == 0
    out = capsys.readouterr().out
    assert "images    7 labeled" in out and f"sheet     {sheet}" in out
    img = np.asarray(Image.open(sheet))
    assert img.ndim == 3 and img.shape[2] == 3
    red = (img[:, :, 0] == 255) & (img[:, :, 1] == 0) & (img[:, :, 2] == 0)
    assert red.sum() > 7 * 20  # every tile has its mask outline drawn
    assert snapshot(isic) == before


def test_cli_unlabeled_folder(tmp_path, capsys):
    for k in range(4):
        write_image(tmp_path / "flat" / f"p{k}.png", k)
    assert main(["data", "inspect", str(tmp_path / "flat"), "--size", "16", "--sheet",
                 str(tmp_path / "s.png"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "images    4 unlabeled" in out and "masks " not in out
    assert Image.open(tmp_path / "s.png").size[0] > 4 * 16


def test_cli_problems_exit_2_with_one_line_reason(isic, capsys):
    Image.fromarray(np.full((30, 40), 77, np.uint8)).save(
        isic / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000002_segmentation.png")
    assert main(["data", "inspect", str(isic), "--size", "16", "-q"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 1 problem(s) found, first: ")
    assert "ISIC_0000002_segmentation.png: mask is not binary" in err[0]
    assert "status    NOT usable as is" in captured.out
    assert main(["data", "inspect", str(isic), "--size", "16", "-q", "--skip-bad"]) == 0
    assert "problems  1 (skipped)" in capsys.readouterr().out


@pytest.mark.parametrize("setup,expected", [
    ("missing", "nope: data folder does not exist"),
    ("empty", "empty: no images found"),
])
def test_cli_unusable_folders(tmp_path, capsys, setup, expected):
    target = tmp_path / ("nope" if setup == "missing" else "empty")
    if setup == "empty":
        target.mkdir()
    assert main(["data", "inspect", str(target), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]


def test_sheet_inside_data_folder_is_refused(isic, capsys):
    before = snapshot(isic)
    assert main(["data", "inspect", str(isic), "--size", "16", "-q", "--sheet", str(isic / "sheet.png")]) == 2
    assert "is inside the data folder" in capsys.readouterr().err
    assert snapshot(isic) == before


def test_contact_sheet_is_deterministic(isic, tmp_path):
    report = inspect_dataset(isic, image_size=16, progress=False)
    a = contact_sheet(report.result, tmp_path / "a.png", n=4, seed=1)
    b = contact_sheet(report.result, tmp_path / "b.png", n=4, seed=1)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(DataError):
        contact_sheet(report.result, isic / "x.png")


def test_cli_help_explains(capsys):
    assert main(["data", "inspect", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--sheet", "--skip-bad", "--size", "ISIC 2016", "images/ + masks/", "Exit status"):
        assert word in out


def test_report_lists_bad_names_ids_tiny_images_and_transparent_masks(tmp_path, capsys):
    """What training would refuse (or silently misread) is listed before any training."""
    root = tmp_path / "plain"
    write_pairs(root / "images", root / "masks", 0, 4)
    write_image(root / "images" / "IMD:002.jpg", 5)
    write_mask(root / "masks" / "IMD:002.png", 5)
    write_image(root / "images" / "tiny.png", 6, w=1, h=1)
    write_mask(root / "masks" / "tiny.png", 6, w=1, h=1)
    alpha = np.zeros((30, 40, 4), np.uint8)  # black paint on a transparent layer: the lesion is in alpha only
    alpha[5:20, 10:30, 3] = 255
    Image.fromarray(alpha).save(root / "masks" / f"{isic_id(1)}_segmentation.png")
    odd = os.fsencode(root / "images") + b"/\xff\xfe.jpg"
    try:
        with open(odd, "wb") as f:
            f.write((root / "images" / f"{isic_id(0)}.jpg").read_bytes())
        expected = 3
    except OSError:  # a file system that only takes UTF-8 names
        expected = 2
    for attempt in ("written", "hit"):
        report = inspect_dataset(root, image_size=16, progress=False)
        assert report.result.cache_hit == (attempt == "hit")
        reasons = "\n".join(f"{p}: {why}" for p, why in report.problems)
        assert len(report.problems) == expected, reasons
        assert "IMD:002.jpg: image id 'IMD:002' cannot name the files of an annotation batch" in reasons
        assert "tiny.png: image is 1x1 pixels, under the minimum" in reasons
        assert expected == 2 or "\\xff\\xfe.jpg: file name is not valid UTF-8" in reasons
        (note,) = [w for w in report.result.warnings if "transparent pixels" in w]
        assert f"{isic_id(1)}_segmentation.png" in note
        assert report.result.data.ids == [isic_id(k) for k in range(4)]
        assert report.result.data.masks[1].any() and not report.result.data.masks[1].all()
    assert main(["data", "inspect", str(root), "--size", "16", "-q", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert f"problems  {expected} (skipped)" in out and "warning   1 mask(s) have transparent pixels" in out
    assert main(["data", "inspect", str(root), "--size", "16", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {expected} problem(s) found, first: ")
