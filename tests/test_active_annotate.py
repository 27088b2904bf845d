"""The simulated oracle, and the export/import of annotation batches for real annotators."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from saal.active import SimulatedOracle, export_batch, import_batch, import_masks, read_manifest
from saal.data.dataset import LesionData
from saal.data.imageio import read_mask
from saal.errors import DataError, SaalError

S = 16


def tiny_data(sources: list[str] | None = None, labeled: bool = True) -> LesionData:
    rng = np.random.default_rng(0)
    n = 3
    masks = np.zeros((n, S, S), np.uint8)
    for i in range(n):
        masks[i, 2 + i:8 + i, 3:10] = 1
    return LesionData(ids=["ISIC_1", "ISIC_2", "ISIC_3"], images=rng.integers(0, 256, (n, S, S, 3), dtype=np.uint8),
                      masks=masks if labeled else None, sources=sources or [])


@pytest.fixture
def data_dir(tmp_path):
    """A user's data folder: originals of two of the three images, at their own sizes."""
    folder = tmp_path / "userdata"
    folder.mkdir()
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(folder / "ISIC_1.jpg")
    Image.fromarray(np.full((24, 24, 3), 60, np.uint8)).save(folder / "ISIC_2.png")
    return folder


def snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def save_mask(path, array):
    """uint8 arrays are saved as 8-bit grey PNGs, bool arrays as 1-bit PNGs."""
    Image.fromarray(array).save(path)


def square_mask(h, w, value=255):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = value
    return m


# -- oracle ----------------------------------------------------------------------------------
def test_oracle_reveals_the_stored_masks_in_the_order_asked():
    data = tiny_data()
    revealed = SimulatedOracle(data).reveal(["ISIC_3", "ISIC_1"])
    assert list(revealed) == ["ISIC_3", "ISIC_1"]
    assert np.array_equal(revealed["ISIC_3"], data.masks[2]) and np.array_equal(revealed["ISIC_1"], data.masks[0])
    revealed["ISIC_1"][:] = 1
    assert data.masks[0].sum() == 42  # a copy: the ground truth is never altered


def test_oracle_errors():
    with pytest.raises(SaalError, match="needs a dataset with masks"):
        SimulatedOracle(tiny_data(labeled=False))
    with pytest.raises(SaalError, match="ISIC_9"):
        SimulatedOracle(tiny_data()).reveal(["ISIC_1", "ISIC_9"])


# -- export ----------------------------------------------------------------------------------
def test_export_copies_originals_renders_the_rest_and_leaves_the_source_untouched(tmp_path, data_dir):
    sources = [str(data_dir / "ISIC_1.jpg"), str(data_dir / "ISIC_2.png"), str(data_dir / "gone.jpg")]
    data = tiny_data(sources)
    before = snapshot(data_dir)
    batch = export_batch(tmp_path / "round1", ["ISIC_3", "ISIC_1", "ISIC_2"], data, round=1)
    assert snapshot(data_dir) == before
    assert (batch / "images" / "ISIC_1.jpg").read_bytes() == (data_dir / "ISIC_1.jpg").read_bytes()
    assert (batch / "images" / "ISIC_2.png").read_bytes() == (data_dir / "ISIC_2.png").read_bytes()
    with Image.open(batch / "images" / "ISIC_3.png") as im:
        rendered = np.asarray(im)
    assert np.array_equal(rendered, data.images[2])  # no original on disk: the preprocessed image, lossless
    rows = read_manifest(batch)
    assert [(r["rank"], r["image_id"], r["round"]) for r in rows] == [("1", "ISIC_3", "1"), ("2", "ISIC_1", "1"),
                                                                        ("3", "ISIC_2", "1")]
    assert rows[1]["original_path"] == sources[0] and rows[1]["image_file"] == "images/ISIC_1.jpg"
    assert [(r["width"], r["height"]) for r in rows] == [("16", "16"), ("40", "30"), ("24", "24")]
    readme = (batch / "README.txt").read_text()
    assert "_segmentation.png" in readme and "masks/" in readme
    assert (batch / "masks").is_dir() and not any((batch / "masks").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_export_is_idempotent_but_refuses_a_different_batch(tmp_path):
    data = tiny_data()
    batch = export_batch(tmp_path / "b", ["ISIC_1"], data, round=0)
    save_mask(batch / "masks" / "ISIC_1.png", square_mask(S, S))
    assert export_batch(tmp_path / "b", ["ISIC_1"], data, round=0) == batch
    assert (batch / "masks" / "ISIC_1.png").exists()  # the annotator's work is kept
    with pytest.raises(SaalError, match="does not hold this batch"):
        export_batch(tmp_path / "b", ["ISIC_2"], data, round=0)
    (tmp_path / "empty").mkdir()
    assert (export_batch(tmp_path / "empty", ["ISIC_2"], data, round=1) / "manifest.csv").is_file()


def test_export_refuses_unknown_ids_and_the_data_folder(tmp_path, data_dir):
    data = tiny_data([str(data_dir / "ISIC_1.jpg"), "", ""])
    with pytest.raises(SaalError, match="ISIC_7"):
        export_batch(tmp_path / "b", ["ISIC_7"], data, round=0)
    with pytest.raises(SaalError, match="inside the data folder"):
        export_batch(data_dir / "batch", ["ISIC_1"], data, round=0)
    assert sorted(p.name for p in data_dir.iterdir()) == ["ISIC_1.jpg", "ISIC_2.png"]


# -- import ----------------------------------------------------------------------------------
@pytest.fixture
def masks_dir(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    return folder


def test_import_accepts_every_name_form_and_both_value_conventions(masks_dir):
    save_mask(masks_dir / "ISIC_1.png", square_mask(32, 32))
    save_mask(masks_dir / "ISIC_2_segmentation.png", square_mask(32, 32, value=1))
    save_mask(masks_dir / "ISIC_3_mask.png", square_mask(32, 32) > 0)
    with Image.open(masks_dir / "ISIC_3_mask.png") as im:
        assert im.mode == "1"
    (masks_dir / ".DS_Store").write_bytes(b"junk")
    before = snapshot(masks_dir)
    masks = import_masks(masks_dir, ["ISIC_1", "ISIC_2", "ISIC_3"], image_size=S)
    assert snapshot(masks_dir) == before  # nothing written into the annotator's folder
    expected = square_mask(S, S, value=1)
    for k in ["ISIC_1", "ISIC_2", "ISIC_3"]:
        assert masks[k].dtype == np.uint8 and masks[k].shape == (S, S)
        assert np.array_equal(masks[k], expected)


def test_import_resizes_with_bilinear_then_threshold_128(masks_dir):
    m = np.zeros((4, 4), np.uint8)
    m[:, :2] = 255  # left half lesion
    save_mask(masks_dir / "a.png", m)
    out = import_masks(masks_dir, ["a"], image_size=8)["a"]
    ref = (np.asarray(Image.fromarray(m).resize((8, 8), Image.Resampling.BILINEAR)) >= 128).astype(np.uint8)
    assert np.array_equal(out, ref) and out[:, :4].all() and not out[:, 4:].any()


def test_import_rejects_a_wrong_size_naming_file_and_sizes(masks_dir):
    save_mask(masks_dir / "ISIC_1_segmentation.png", square_mask(20, 30))
    with pytest.raises(DataError, match=r"ISIC_1_segmentation.png.*30x20.*40x30"):
        import_masks(masks_dir, ["ISIC_1"], image_size=S, original_sizes={"ISIC_1": (40, 30)})


def test_import_rejects_non_binary_values(masks_dir):
    m = square_mask(S, S)
    m[0, 0] = 128
    save_mask(masks_dir / "ISIC_1.png", m)
    with pytest.raises(DataError, match=r"ISIC_1.png.*not binary.*0, 128, 255"):
        import_masks(masks_dir, ["ISIC_1"], image_size=S)


def test_import_rejects_colour_masks(masks_dir):
    rgb = np.zeros((S, S, 3), np.uint8)
    rgb[4:8, 4:8] = (255, 0, 0)
    Image.fromarray(rgb).save(masks_dir / "ISIC_1.png")
    with pytest.raises(DataError, match="ISIC_1.png.*colours"):
        import_masks(masks_dir, ["ISIC_1"], image_size=S)


def test_import_rejects_unknown_files_missing_masks_duplicates_and_jpeg(masks_dir):
    save_mask(masks_dir / "ISIC_1.png", square_mask(S, S))
    save_mask(masks_dir / "ISIC_8.png", square_mask(S, S))
    with pytest.raises(DataError, match="ISIC_8.png.*not the mask of a queried image"):
        import_masks(masks_dir, ["ISIC_1"], image_size=S)
    os.remove(masks_dir / "ISIC_8.png")
    with pytest.raises(DataError, match=r"masks.*no mask for 2 of 3.*ISIC_2, ISIC_3"):
        import_masks(masks_dir, ["ISIC_1", "ISIC_2", "ISIC_3"], image_size=S)
    save_mask(masks_dir / "ISIC_1_mask.png", square_mask(S, S))
    with pytest.raises(DataError, match="two masks for image ISIC_1"):
        import_masks(masks_dir, ["ISIC_1"], image_size=S)
    os.remove(masks_dir / "ISIC_1_mask.png")
    Image.fromarray(square_mask(S, S)).save(masks_dir / "ISIC_2.jpg")
    with pytest.raises(DataError, match="ISIC_2.jpg.*must be a PNG"):
        import_masks(masks_dir, ["ISIC_1", "ISIC_2"], image_size=S)


def test_import_rejects_an_unreadable_file(masks_dir):
    (masks_dir / "ISIC_1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="ISIC_1.png.*not a readable image"):
        import_masks(masks_dir, ["ISIC_1"], image_size=S)


def test_export_then_import_batch_checks_sizes_from_the_manifest(tmp_path, data_dir):
    data = tiny_data([str(data_dir / "ISIC_1.jpg"), "", ""])
    batch = export_batch(tmp_path / "round2", ["ISIC_1", "ISIC_3"], data, round=2)
    save_mask(batch / "masks" / "ISIC_1_segmentation.png", square_mask(30, 40))  # original 40x30 (w x h)
    save_mask(batch / "masks" / "ISIC_3_segmentation.png", square_mask(S, S))  # rendered at S x S
    masks = import_batch(batch, image_size=S)
    assert list(masks) == ["ISIC_1", "ISIC_3"]
    assert all(m.shape == (S, S) and set(np.unique(m)) == {0, 1} for m in masks.values())
    save_mask(batch / "masks" / "ISIC_3_segmentation.png", square_mask(S * 2, S * 2))
    with pytest.raises(DataError, match="ISIC_3_segmentation.png.*32x32.*16x16"):
        import_batch(batch, image_size=S)
    with pytest.raises(DataError, match="no manifest"):
        import_batch(tmp_path, image_size=S)


@pytest.mark.realdata
def test_real_isic_round_trip_at_full_resolution(tmp_path, isic_val_fullres):
    """Export real full-size ISIC images, 'annotate' with their expert masks, import at training size."""
    images = sorted((isic_val_fullres / "ISIC-2017_Validation_Data").glob("*.jpg"))
    images = [images[0], images[-1]]  # 1024x768 and 2592x1936
    truth = isic_val_fullres / "ISIC-2017_Validation_Part1_GroundTruth"
    ids = [p.stem for p in images]
    data = LesionData(ids=ids, images=np.zeros((2, 64, 64, 3), np.uint8), sources=[str(p) for p in images])
    batch = export_batch(tmp_path / "batch", ids, data, round=1)
    for k in ids:
        (batch / "masks" / f"{k}_segmentation.png").write_bytes((truth / f"{k}_segmentation.png").read_bytes())
    masks = import_batch(batch, image_size=64)
    for k in ids:
        with Image.open(truth / f"{k}_segmentation.png") as gt:
            assert [r for r in read_manifest(batch) if r["image_id"] == k][0]["width"] == str(gt.size[0])
            gt_size = gt.size
        # the same pixels the dataset loader gives this expert mask at training size
        ref, _ = read_mask(truth / f"{k}_segmentation.png", size=64, image_size=gt_size,
                           image_path=isic_val_fullres / "ISIC-2017_Validation_Data" / f"{k}.jpg")
        assert np.array_equal(masks[k], ref) and masks[k].any()
    wrong = batch / "masks" / f"{ids[0]}_segmentation.png"
    wrong.write_bytes((truth / f"{ids[1]}_segmentation.png").read_bytes())  # the other image's mask
    with pytest.raises(DataError, match=rf"{wrong.name}.*2592x1936.*1024x768"):
        import_batch(batch, image_size=64)
