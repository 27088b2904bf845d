"""The synthetic dermoscopy generator, its ISIC-layout writer, the embedded loader and ``saal data synth``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from saal.cli.main import main
from saal.data.embedded import load_embedded, to_grayscale
from saal.data.synth import GROUPS, generate, write_isic_layout
from saal.errors import SaalError


@pytest.fixture(scope="module")
def batch_2000():
    """Enough images for frequency and per-group statistics (small, so it stays fast)."""
    return generate(2000, size=32, seed=7)


@pytest.fixture(scope="module")
def batch_600():
    return generate(600, size=64, seed=3)


def _otsu_dice(image: np.ndarray, mask: np.ndarray) -> float:
    """Dice of 'pixels darker than the Otsu threshold of the grayscale image'."""
    gray = to_grayscale(image)[..., 0]
    hist = np.bincount(gray.ravel(), minlength=256).astype(float)
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    pred = gray <= np.argmax(between)
    m = mask.astype(bool)
    return 2 * (pred & m).sum() / (pred.sum() + m.sum())


# ---------------------------------------------------------------- determinism and shapes

def test_same_seed_same_images_other_seed_other_images():
    a, b, c = generate(6, 48, seed=1), generate(6, 48, seed=1), generate(6, 48, seed=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks) and a.groups == b.groups
    for k in a.attributes:
        assert np.array_equal(a.attributes[k], b.attributes[k])
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.masks, c.masks)


def test_image_depends_only_on_seed_and_index():
    full = generate(30, 48, seed=5)
    head = generate(10, 48, seed=5)
    tail = generate(12, 48, seed=5, start=18)
    assert np.array_equal(head.images, full.images[:10]) and np.array_equal(head.masks, full.masks[:10])
    assert np.array_equal(tail.images, full.images[18:]) and np.array_equal(tail.masks, full.masks[18:])
    assert head.groups == full.groups[:10] and tail.groups == full.groups[18:]
    assert np.array_equal(tail.attributes["lesion_area"], full.attributes["lesion_area"][18:])


def test_shapes_dtypes_and_size_range():
    for size in (32, 100, 512):
        b = generate(2, size, seed=0)
        assert b.images.shape == (2, size, size, 3) and b.images.dtype == np.uint8
        assert b.masks.shape == (2, size, size) and b.masks.dtype == np.uint8
        assert len(b) == len(b.groups) == 2
        assert all(len(v) == 2 for v in b.attributes.values())
    assert len(generate(0, 64)) == 0
    for bad in (dict(size=31), dict(size=513), dict(n=-1), dict(seed=-3)):
        with pytest.raises(SaalError):
            generate(**{"n": 2, "size": 64, **bad})


def test_same_lesion_at_every_size():
    """Geometry lives in normalised coordinates: the mask is the same shape at 64 and 128 px."""
    small, large = generate(8, 64, seed=4), generate(8, 128, seed=4)
    down = large.masks.reshape(8, 64, 2, 64, 2).mean((2, 4)) >= 0.5
    agree = (down == small.masks.astype(bool)).mean((1, 2))
    assert agree.min() > 0.97


# ---------------------------------------------------------------- masks and groups

def test_masks_binary_nonempty_and_plausible_coverage(batch_600):
    masks = batch_600.masks
    assert set(np.unique(masks)) <= {0, 1}
    area = masks.mean((1, 2))
    assert area.min() > 0.01 and area.max() < 0.9
    assert 0.05 < area.mean() < 0.3  # real ISIC 2017: mean 0.17, median 0.09
    assert np.allclose(area, batch_600.attributes["lesion_area"])


@pytest.mark.slow
def test_group_frequencies_follow_groups(batch_2000):
    assert set(GROUPS) == set(batch_2000.groups)
    assert abs(sum(f for f, _ in GROUPS.values()) - 1.0) < 1e-9
    n = len(batch_2000)
    for name, (freq, _) in GROUPS.items():
        observed = batch_2000.groups.count(name) / n
        assert abs(observed - freq) < 4 * np.sqrt(freq * (1 - freq) / n), name


def _by_group(batch, key):
    groups = np.array(batch.groups)
    values = batch.attributes[key]
    return {g: values[groups == g] for g in GROUPS}


def test_groups_differ_in_what_they_were_designed_for(batch_2000):
    area = _by_group(batch_2000, "lesion_area")
    touches = _by_group(batch_2000, "touches_border")
    contrast = _by_group(batch_2000, "contrast")
    skin = _by_group(batch_2000, "skin_luma")
    hair = _by_group(batch_2000, "hair_coverage")
    rgb = _by_group(batch_2000, "lesion_rgb")
    green_blue = {g: v[:, 1] / v[:, 2] for g, v in rgb.items()}
    others = list(GROUPS)

    assert np.median(area["large_irregular"]) > 3 * np.median(area["common_nevus"])
    assert touches["large_irregular"].mean() > 0.5 > 5 * touches["common_nevus"].mean()
    assert np.median(contrast["pale_low_contrast"]) < 0.4 * min(np.median(contrast[g]) for g in others
                                                                if g != "pale_low_contrast")
    assert np.median(skin["dark_skin"]) < 0.6 * min(np.median(skin[g]) for g in others if g != "dark_skin")
    assert np.median(hair["hair_occluded"]) > 5 * max(np.median(hair[g]) + 1e-4 for g in others
                                                      if g != "hair_occluded")
    # haemoglobin absorbs green more than blue: red lesions have the lowest green/blue ratio
    assert np.median(green_blue["vascular_red"]) < min(np.median(green_blue[g]) for g in others
                                                       if g != "vascular_red") - 0.1


def test_global_threshold_does_not_solve_the_task(batch_600):
    groups = np.array(batch_600.groups)
    dice = np.array([_otsu_dice(i, m) for i, m in zip(batch_600.images, batch_600.masks)])
    per_group = {g: dice[groups == g].mean() for g in GROUPS}
    assert dice.mean() < 0.8
    assert min(per_group.values()) < 0.5
    assert per_group["pale_low_contrast"] < per_group["large_irregular"]


# ---------------------------------------------------------------- the embedded dataset

def test_load_embedded_matches_generate_and_pil_grayscale():
    data = load_embedded(n=12, image_size=48, seed=2)
    batch = generate(12, 48, seed=2)
    assert data.images.shape == (12, 48, 48, 1) and data.masks.shape == (12, 48, 48)
    assert data.ids[0] == "synth_000000" and data.ids[-1] == "synth_000011"
    assert data.sources == ["embedded"] * 12 and data.subsets == ["train"] * 12
    assert data.groups == batch.groups
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in batch.images])
    assert np.array_equal(data.images[..., 0], pil)
    rgb = load_embedded(n=3, image_size=48, grayscale=False, seed=2)
    assert np.array_equal(rgb.images, batch.images[:3])


# ---------------------------------------------------------------- writing to disk

def test_write_isic_layout_exact_names_and_contents(tmp_path):
    out = tmp_path / "synth"
    counts = write_isic_layout(out, 5, size=48, seed=1, progress=False)
    ids = [f"ISIC_{9000000 + i}" for i in range(5)]
    assert sorted(p.name for p in out.iterdir()) == ["ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth",
                                                     "saal_synth.json", "saal_synth_groups.csv"]
    assert sorted(p.name for p in (out / "ISIC-2017_Training_Data").iterdir()) == [f"{i}.jpg" for i in ids]
    assert sorted(p.name for p in (out / "ISIC-2017_Training_Part1_GroundTruth").iterdir()) == [
        f"{i}_segmentation.png" for i in ids]
    batch = generate(5, 48, seed=1)
    mask = Image.open(out / "ISIC-2017_Training_Part1_GroundTruth" / f"{ids[2]}_segmentation.png")
    assert mask.mode == "L" and np.array_equal(np.asarray(mask), batch.masks[2] * 255)
    image = np.asarray(Image.open(out / "ISIC-2017_Training_Data" / f"{ids[2]}.jpg"))
    assert image.shape == (48, 48, 3) and np.abs(image.astype(int) - batch.images[2]).mean() < 6  # JPEG q95
    with open(out / "saal_synth_groups.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == ids and [r["group"] for r in rows] == batch.groups
    meta = json.loads((out / "saal_synth.json").read_text())
    assert (meta["seed"], meta["n"], meta["size"]) == (1, 5, 48) and meta["version"]
    assert sum(counts.values()) == 5 and set(counts) == set(GROUPS)
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temporary folder left behind


def test_write_isic_layout_never_touches_existing_data(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.jpg").write_bytes(b"user data")
    with pytest.raises(SaalError, match="not an empty folder"):
        write_isic_layout(out, 3, size=32, progress=False)
    assert [p.name for p in out.iterdir()] == ["precious.jpg"]
    assert (out / "precious.jpg").read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_isic_layout(empty, 2, size=32, progress=False)  # an empty folder is fine
    assert (empty / "saal_synth.json").exists()


def test_cli_synth_writes_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--n", "4", "--size", "40", "--seed", "3", "-q"]) == 0
    assert len(list((out / "ISIC-2017_Training_Data").glob("ISIC_9*.jpg"))) == 4
    assert len(list((out / "ISIC-2017_Training_Part1_GroundTruth").glob("ISIC_9*_segmentation.png"))) == 4
    printed = capsys.readouterr().out
    assert str(out) in printed and "common_nevus" in printed
    assert main(["data", "synth", "--out", str(out), "--n", "4", "-q"]) == 2  # refuses the now non-empty folder
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "4", "--size", "20"]) == 2
    assert "--size" in capsys.readouterr().err
