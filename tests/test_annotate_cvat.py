"""CVAT round trip: the task package ("Segmentation mask 1.1" with pre-annotations) and reading CVAT's export back.

datumaro (CVAT's dataset library) checks that the package is what CVAT's
importer reads, and simulates CVAT's export (polygons -> masks -> VOC
segmentation with the task's label colours); those tests skip without it.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saal.active.annotate.cvat import (CVAT_DIR, LESION_LABEL, PREANNOTATIONS_ZIP, is_cvat_export,
                                       read_cvat_export, write_cvat_package)
from saal.active.annotate.preannotate import Preannotations
from saal.errors import DataError

# datumaro's polygon rasteriser (pycocotools) warns under numpy 2; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

S = 16  # training size of the stub probabilities
SIZES = {"ISIC_1": (30, 20), "ISIC_2": (24, 24), "img.v2": (16, 40)}  # width x height; a dot in an id


def blob(width: int, height: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((height, width), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


@pytest.fixture
def batch(tmp_path):
    """A batch folder as export_batch writes it (images/ + rows) and pre-annotations for it."""
    folder = tmp_path / "round_1"
    (folder / "images").mkdir(parents=True)
    rows = []
    for rank, (image_id, (w, h)) in enumerate(SIZES.items(), start=1):
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(folder / "images" / f"{image_id}.jpg")
        rows.append({"rank": str(rank), "image_id": image_id, "image_file": f"images/{image_id}.jpg",
                     "original_path": "", "round": "1", "width": str(w), "height": str(h)})
    probabilities = {}
    for i, image_id in enumerate(SIZES):
        p = np.zeros((S, S), np.float32)
        p[3 + i: 11 + i, 4:12] = 0.9
        probabilities[image_id] = p
    probabilities["ISIC_2"][:] = 0.1  # the model sees no lesion here: an all-background proposal
    pre = Preannotations(probabilities, {k: 0.5 for k in SIZES}, model_version="round-0")
    return folder, rows, pre


def proposed(pre, rows):
    return {r["image_id"]: pre.mask(r["image_id"], int(r["width"]), int(r["height"])) for r in rows}


def package(batch) -> Path:
    folder, rows, pre = batch
    write_cvat_package(folder, rows, pre)
    return folder / CVAT_DIR / PREANNOTATIONS_ZIP


def extract(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    return dest


def zip_folder(folder: Path, zip_path: Path, top: str = "") -> Path:
    """Zip ``folder``'s content, under a top-level folder ``top`` when given (what users do when they re-zip)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, (f"{top}/" if top else "") + p.relative_to(folder).as_posix())
    return zip_path


def class_png(folder: Path, image_id: str) -> Path:
    return folder / "SegmentationClass" / f"{image_id}.png"


def paint(path: Path, mask: np.ndarray, colour, background=(0, 0, 0)) -> None:
    rgb = np.zeros(mask.shape + (3,), np.uint8)
    rgb[:] = background
    rgb[mask.astype(bool)] = colour
    Image.fromarray(rgb).save(path)


def edit(path: Path, region: tuple[slice, slice], colour) -> None:
    rgb = np.asarray(Image.open(path).convert("RGB")).copy()
    rgb[region] = colour
    Image.fromarray(rgb).save(path)


# -- the package -----------------------------------------------------------------------------
def test_package_layout_labelmap_and_readme(batch):
    folder, rows, pre = batch
    zip_path = package(batch)
    out = folder / CVAT_DIR
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "labelmap.txt", "labels.json", PREANNOTATIONS_ZIP]
    labelmap = (out / "labelmap.txt").read_text().splitlines()
    assert labelmap[0].startswith("#") and labelmap[1:] == ["background:0,0,0::", "lesion:128,0,0::"]
    assert '"name": "lesion"' in (out / "labels.json").read_text()
    readme = (out / "README.txt").read_text()
    assert "Segmentation mask 1.1" in readme and "round-0" in readme and "saal annotate import" in readme
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        assert zf.read("ImageSets/Segmentation/default.txt").decode().split() == list(SIZES)
    assert {"labelmap.txt", "ImageSets/Segmentation/default.txt"} <= names
    for image_id in SIZES:  # named after the image file without its extension, as CVAT matches them
        assert {f"SegmentationClass/{image_id}.png", f"SegmentationObject/{image_id}.png"} <= names


def test_package_without_a_model_has_the_labels_only(batch):
    folder, rows, pre = batch
    write_cvat_package(folder, rows, pre)
    write_cvat_package(folder, rows, None)  # a stale proposal from an earlier export must not survive
    out = folder / CVAT_DIR
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "labelmap.txt", "labels.json"]
    assert "No pre-annotations" in (out / "README.txt").read_text()


def test_package_is_read_back_as_the_proposals(batch):
    folder, rows, pre = batch
    masks = read_cvat_export(package(batch), rows)
    expected = proposed(pre, rows)
    assert list(masks) == list(SIZES)
    for k in SIZES:
        assert masks[k].dtype == np.uint8 and masks[k].shape == expected[k].shape
        assert np.array_equal(masks[k], expected[k])
    assert masks["ISIC_2"].sum() == 0 and masks["ISIC_1"].sum() > 0


def test_datumaro_reads_the_package_as_voc_segmentation(batch, tmp_path):
    dm = pytest.importorskip("datumaro")
    folder, rows, pre = batch
    root = extract(package(batch), tmp_path / "pkg")
    dataset = dm.Dataset.import_from(str(root), "voc_segmentation")
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    assert names == ["background", LESION_LABEL]
    expected = proposed(pre, rows)
    seen = set()
    for item in dataset:
        seen.add(item.id)
        masks = [a for a in item.annotations if a.type == dm.AnnotationType.mask]
        assert all(names[a.label] == LESION_LABEL for a in masks)  # background is no object
        union = np.zeros_like(expected[item.id], dtype=bool)
        for a in masks:
            union |= a.image.astype(bool)
        assert np.array_equal(union.astype(np.uint8), expected[item.id])
        assert len(masks) == (1 if expected[item.id].any() else 0)  # one object: the lesion
    assert seen == set(SIZES)


# -- CVAT's export, simulated with datumaro as CVAT's exporter does it ------------------------
def cvat_export(tmp_path, shapes: dict, labels=("lesion",), colours=None, top: str = "") -> Path:
    """A 'Segmentation mask 1.1' export: polygons per image -> masks -> VOC segmentation, zipped."""
    dm = pytest.importorskip("datumaro")
    colours = colours or {"lesion": (250, 50, 83)}
    items = [dm.DatasetItem(id=image_id, media=dm.Image.from_numpy(np.zeros((h, w, 3), np.uint8)),
                            annotations=[dm.Polygon(points, label=labels.index(name)) for name, points in polys])
             for image_id, (w, h) in SIZES.items() if (polys := shapes.get(image_id)) is not None]
    dataset = dm.Dataset.from_iterable(items, categories=list(labels))
    dataset.transform("polygons_to_masks")
    dataset.transform("merge_instance_segments")
    out = tmp_path / "cvat_export"
    label_map = {"background": [(0, 0, 0), [], []]} | {n: [colours[n], [], []] for n in labels}
    dataset.export(str(out), "voc_segmentation", save_media=False, apply_colormap=True, label_map=label_map)
    return zip_folder(out, tmp_path / "task_export.zip", top=top)


def rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


ALL_DRAWN = {"ISIC_1": [("lesion", rect(2, 2, 12, 10))], "ISIC_2": [("lesion", rect(5, 5, 15, 15))],
             "img.v2": [("lesion", rect(3, 10, 12, 30))]}


def test_cvat_export_with_two_pieces_gives_their_union(batch, tmp_path):
    folder, rows, pre = batch
    shapes = dict(ALL_DRAWN, ISIC_1=[("lesion", rect(2, 2, 8, 8)), ("lesion", rect(15, 5, 25, 15))])
    export = cvat_export(tmp_path, shapes)
    root = extract(export, tmp_path / "x")
    objects = np.asarray(Image.open(root / "SegmentationObject" / "ISIC_1.png").convert("RGB")).reshape(-1, 3)
    assert len(np.unique(objects, axis=0)) == 3  # two instances + background: both pieces are read anyway
    assert is_cvat_export(export)
    masks = read_cvat_export(export, rows)
    pieces = np.zeros((20, 30), np.uint8)
    pieces[2:8, 2:8] = 1
    pieces[5:15, 15:25] = 1
    assert np.array_equal(masks["ISIC_1"], pieces)
    assert set(masks) == set(SIZES) and all(masks[k].shape == (h, w) for k, (w, h) in SIZES.items())


def test_cvat_export_inside_an_extra_folder_and_extracted(batch, tmp_path):
    folder, rows, pre = batch
    export = cvat_export(tmp_path, ALL_DRAWN, top="task_12-2024_01_01")
    with zipfile.ZipFile(export, "a") as zf:  # what a re-zip on macOS adds
        zf.writestr("__MACOSX/task_12-2024_01_01/._labelmap.txt", b"\0\0")
    assert is_cvat_export(export)
    masks = read_cvat_export(export, rows)
    assert masks["img.v2"].shape == (40, 16) and masks["img.v2"][20, 6] == 1
    extracted = extract(export, tmp_path / "unzipped")
    assert is_cvat_export(extracted)
    for k, m in read_cvat_export(extracted, rows).items():
        assert np.array_equal(m, masks[k])


def test_cvat_export_of_an_image_left_empty_is_refused(batch, tmp_path):
    folder, rows, pre = batch
    export = cvat_export(tmp_path, dict(ALL_DRAWN, ISIC_2=[]))  # CVAT writes no mask for a frame without shapes
    with pytest.raises(DataError, match=r"no mask for 1 of 3 images: ISIC_2.*outline the lesion"):
        read_cvat_export(export, rows)


def test_other_label_is_an_error_only_where_it_is_used(batch, tmp_path):
    folder, rows, pre = batch
    labels = ("lesion", "ruler")
    colours = {"lesion": (250, 50, 83), "ruler": (10, 200, 10)}
    unused = cvat_export(tmp_path, ALL_DRAWN, labels=labels, colours=colours)
    assert read_cvat_export(unused, rows)["ISIC_1"].sum() > 0
    used = dict(ALL_DRAWN, ISIC_2=[("lesion", rect(5, 5, 15, 15)), ("ruler", rect(0, 20, 20, 23))])
    shutil.rmtree(tmp_path / "cvat_export")
    export = cvat_export(tmp_path, used, labels=labels, colours=colours)
    with pytest.raises(DataError, match=r"ISIC_2\.png: uses label 'ruler' \(colour RGB\(10,200,10\)") as err:
        read_cvat_export(export, rows)
    assert "task_export.zip" in str(err.value)


# -- trip-ups, by editing the package as CVAT would have exported it --------------------------
@pytest.fixture
def exported(batch, tmp_path):
    """The package extracted: stands for CVAT's export (same layout), to be edited by each test."""
    folder, rows, pre = batch
    return extract(package(batch), tmp_path / "export"), rows


def test_hole_drawn_with_background_is_filled(exported):
    root, rows = exported
    m = blob(30, 20, 4, 3, 24, 17)
    paint(class_png(root, "ISIC_1"), m, (128, 0, 0))
    edit(class_png(root, "ISIC_1"), (slice(7, 12), slice(10, 16)), (0, 0, 0))  # background polygon inside
    assert read_cvat_export(root, rows)["ISIC_1"].sum() == m.sum()
    # background reaching the border is no hole: a notch stays background, and so does a hole it opens
    edit(class_png(root, "ISIC_1"), (slice(0, 6), slice(18, 20)), (0, 0, 0))
    got = read_cvat_export(root, rows)["ISIC_1"]
    assert got[4, 18] == 0 and got[10, 13] == 1 and got.sum() == m.sum() - 6
    edit(class_png(root, "ISIC_1"), (slice(0, 8), slice(10, 12)), (0, 0, 0))
    assert read_cvat_export(root, rows)["ISIC_1"][10, 13] == 0


def test_second_piece_added_and_case_insensitive_label(exported):
    root, rows = exported
    edit(class_png(root, "ISIC_1"), (slice(15, 19), slice(25, 29)), (128, 0, 0))
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nBackground:0,0,0::\nLesion:128,0,0::\n")
    got = read_cvat_export(root, rows)["ISIC_1"]
    assert got[15:19, 25:29].all() and got[:, :20].sum() > 0


def test_the_exports_own_label_colours_are_used(exported):
    root, rows = exported
    for image_id in SIZES:
        rgb = np.asarray(Image.open(class_png(root, image_id)).convert("RGB")).copy()
        rgb[(rgb == (128, 0, 0)).all(-1)] = (51, 221, 255)  # CVAT's colour of the task's label
        Image.fromarray(rgb).save(class_png(root, image_id))
    (root / "labelmap.txt").write_text("lesion:51,221,255::\nbackground:0,0,0::\n")
    assert read_cvat_export(root, rows)["ISIC_1"].sum() > 0


def test_undeclared_colour_names_file_and_colour(exported):
    root, rows = exported
    edit(class_png(root, "img.v2"), (slice(0, 2), slice(0, 2)), (255, 255, 255))
    with pytest.raises(DataError, match=r"img\.v2\.png: has colour RGB\(255,255,255\) \(4 pixels\) that "
                                        r"labelmap\.txt does not declare"):
        read_cvat_export(root, rows)


def test_labelmap_problems(exported):
    root, rows = exported
    labelmap = root / "labelmap.txt"
    labelmap.write_text("background:0,0,0::\nlesions:128,0,0::\n")
    with pytest.raises(DataError, match=r"labelmap\.txt: declares no 'lesion' label \(labels: background, lesions\)"):
        read_cvat_export(root, rows)
    labelmap.write_text("background:0,0,0::\nlesion:0,0,0::\n")
    with pytest.raises(DataError, match="same colour"):
        read_cvat_export(root, rows)
    labelmap.write_text("background:0,0,0\nlesion:128,0,0::\n")
    with pytest.raises(DataError, match=r"line 1 .*4 fields"):
        read_cvat_export(root, rows)
    labelmap.write_text("background:0,0,0::\nlesion:128,0::\n")
    with pytest.raises(DataError, match=r"colour '128,0'"):
        read_cvat_export(root, rows)
    labelmap.unlink()
    with pytest.raises(DataError, match=r"no labelmap\.txt"):
        read_cvat_export(root, rows)


def test_an_all_background_mask_means_no_lesion(exported):
    root, rows = exported
    paint(class_png(root, "ISIC_1"), np.zeros((20, 30), np.uint8), (128, 0, 0))
    assert read_cvat_export(root, rows)["ISIC_1"].sum() == 0


def test_missing_unknown_duplicate_and_wrong_size_masks(exported, tmp_path):
    root, rows = exported
    class_png(root, "ISIC_2").unlink()
    with pytest.raises(DataError, match=r"SegmentationClass: no mask for 1 of 3 images: ISIC_2"):
        read_cvat_export(root, rows)
    paint(class_png(root, "ISIC_2"), blob(24, 24, 2, 2, 9, 9), (128, 0, 0))
    paint(class_png(root, "ISIC_9"), blob(24, 24, 2, 2, 9, 9), (128, 0, 0))
    with pytest.raises(DataError, match=r"ISIC_9\.png: not the mask of an image of this batch"):
        read_cvat_export(root, rows)
    class_png(root, "ISIC_9").unlink()
    (root / "SegmentationClass" / "sub").mkdir()
    paint(root / "SegmentationClass" / "sub" / "ISIC_2.png", blob(24, 24, 2, 2, 9, 9), (128, 0, 0))
    with pytest.raises(DataError, match="two masks for image ISIC_2"):
        read_cvat_export(root, rows)
    shutil.rmtree(root / "SegmentationClass" / "sub")
    paint(class_png(root, "ISIC_1"), blob(20, 30, 2, 2, 9, 9), (128, 0, 0))  # rotated: 20x30 instead of 30x20
    with pytest.raises(DataError, match=r"ISIC_1\.png: mask is 20x30 but its image is 30x20"):
        read_cvat_export(root, rows)


def test_unreadable_and_non_png_masks(exported):
    root, rows = exported
    class_png(root, "ISIC_1").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"ISIC_1\.png: not a readable image"):
        read_cvat_export(root, rows)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(class_png(root, "ISIC_1"), format="JPEG")
    with pytest.raises(DataError, match="must be a PNG file"):
        read_cvat_export(root, rows)


def test_grayscale_masks_are_label_indices(exported):
    root, rows = exported
    m = blob(30, 20, 3, 3, 10, 10)
    Image.fromarray(m).save(class_png(root, "ISIC_1"))  # 1 = second line of labelmap.txt = lesion
    assert np.array_equal(read_cvat_export(root, rows)["ISIC_1"], m)
    Image.fromarray(m * 7).save(class_png(root, "ISIC_1"))
    with pytest.raises(DataError, match="grayscale value 7 names no label"):
        read_cvat_export(root, rows)


def test_is_cvat_export_and_what_is_not_one(batch, exported, tmp_path):
    folder, rows, pre = batch
    root, _ = exported
    assert is_cvat_export(root) and is_cvat_export(zip_folder(root, tmp_path / "e.zip"))
    assert not is_cvat_export(folder)  # the batch folder itself (PNG masks / package inside)
    assert not is_cvat_export(tmp_path / "missing.zip")
    (tmp_path / "notzip.zip").write_bytes(b"PK nonsense")
    assert not is_cvat_export(tmp_path / "notzip.zip")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("annotations/instances_default.json", "{}")
    assert not is_cvat_export(other)
    with pytest.raises(DataError, match=r"other\.zip: not a CVAT 'Segmentation mask 1\.1' export"):
        read_cvat_export(other, rows)
    with pytest.raises(DataError, match=r"notzip\.zip: not a readable zip file"):
        read_cvat_export(tmp_path / "notzip.zip", rows)


def test_errors_inside_a_zip_name_the_member(exported, tmp_path):
    root, rows = exported
    edit(class_png(root, "ISIC_2"), (slice(0, 1), slice(0, 1)), (1, 2, 3))
    export = zip_folder(root, tmp_path / "task.zip", top="task")
    with pytest.raises(DataError) as err:
        read_cvat_export(export, rows)
    assert str(err.value).startswith(str(export / "task" / "SegmentationClass" / "ISIC_2.png") + ": has colour")


def test_full_size_image_reads_quickly(tmp_path):
    """A 2592x1936 dermoscopy export stays well under a second per image."""
    import time

    root = tmp_path / "big"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "labelmap.txt").write_text("background:0,0,0::\nlesion:128,0,0::\n")
    paint(class_png(root, "big"), blob(2592, 1936, 500, 400, 2000, 1500), (128, 0, 0))
    rows = [{"image_id": "big", "width": "2592", "height": "1936"}]
    start = time.perf_counter()
    got = read_cvat_export(root, rows)["big"]
    assert time.perf_counter() - start < 5.0  # about 0.5 s here
    assert got.sum() == 1500 * 1100

