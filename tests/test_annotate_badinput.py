"""Hostile or broken annotation exports: one-line DataErrors naming the file (and task, image), never a traceback,
never unbounded memory, never a message that quotes the whole input; and masks with transparency read by the
same rule as the data loader's."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from data_builders import snapshot, write_png_header
from PIL import Image

from saal.active.annotate import cvat, export_batch, import_masks
from saal.active.annotate.cvat import read_cvat_export
from saal.active.annotate.labelstudio import read_labelstudio_export
from saal.data import load_dataset
from saal.data.dataset import LesionData
from saal.data.imageio import resize_mask
from saal.errors import DataError, SaalError

W, H = 30, 20
ROWS = [{"image_id": "a", "image_file": "images/a.jpg", "round": "1", "width": str(W), "height": str(H)}]
LABELMAP = "background:0,0,0::\nlesion:128,0,0::\n"


def one_line(err: pytest.ExceptionInfo, *parts: str, longest: int = 400) -> str:
    """The error's message: one line, short, naming every one of ``parts``."""
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < longest, msg[:1000]
    for part in parts:
        assert part in msg, msg
    return msg


def png(mask: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", **save)
    return buf.getvalue()


def lesion_rgb() -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[5:15, 5:20] = (128, 0, 0)
    return rgb


def cvat_zip(path, members: dict[str, bytes | str]):
    """A CVAT 'Segmentation mask 1.1' export zip with the given members (deflated, so bombs stay small)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def members(**changes) -> dict[str, bytes | str]:
    return {"labelmap.txt": LABELMAP, "SegmentationClass/a.png": png(lesion_rgb()), **changes}


# -- CVAT: zip bombs, pixel bombs, encrypted zips ---------------------------------------------------
def test_cvat_export_that_reads_fine_as_a_reference(tmp_path):
    mask = read_cvat_export(cvat_zip(tmp_path / "ok.zip", members()), ROWS)["a"]
    assert mask.sum() == 10 * 15


def test_cvat_labelmap_zip_bomb_is_refused_before_inflating(tmp_path):
    """3 MB of one line deflate to a few kB; the member's declared size is refused, the line never quoted."""
    bomb = cvat_zip(tmp_path / "bomb.zip", members(**{"labelmap.txt": "x" * (3 << 20)}))
    assert bomb.stat().st_size < 20_000
    with pytest.raises(DataError) as err:
        read_cvat_export(bomb, ROWS)
    one_line(err, str(bomb / "labelmap.txt"), "over the limit of 1,048,576")


def test_cvat_labelmap_line_under_the_limit_is_quoted_short(tmp_path):
    export = cvat_zip(tmp_path / "long.zip", members(**{"labelmap.txt": "lesion" + "y" * 100_000 + ":1,2,3\n"}))
    with pytest.raises(DataError) as err:
        read_cvat_export(export, ROWS)
    one_line(err, "labelmap.txt: line 1 'lesionyyy", " characters): expected", "4 fields")


@pytest.mark.parametrize("zipped", [True, False])
def test_cvat_mask_over_the_byte_limit_is_refused_before_reading(tmp_path, monkeypatch, zipped):
    monkeypatch.setattr(cvat, "MAX_MASK_BYTES", 1000)
    big = png(lesion_rgb(), compress_level=0)  # a valid mask, ~1.8 kB stored
    assert len(big) > 1000
    content = members(**{"SegmentationClass/a.png": big})
    if zipped:
        export = cvat_zip(tmp_path / "big.zip", content)
    else:
        export = tmp_path / "big"
        for name, data in content.items():
            (export / name).parent.mkdir(parents=True, exist_ok=True)
            (export / name).write_bytes(data.encode() if isinstance(data, str) else data)
    with pytest.raises(DataError) as err:
        read_cvat_export(export, ROWS)
    one_line(err, str(export / "SegmentationClass" / "a.png"), f"is {len(big):,} bytes, over the limit of 1,000")


@pytest.mark.parametrize("side, message", [(100_000, "mask is too large to decode safely"),
                                           (3000, "mask is 3000x3000 but its image is 30x20")])
def test_cvat_mask_declaring_a_huge_size_is_refused_before_decoding(tmp_path, side, message):
    header = write_png_header(tmp_path / "bomb.png", side, side).read_bytes()
    export = cvat_zip(tmp_path / "bomb.zip", members(**{"SegmentationClass/a.png": header}))
    with pytest.raises(DataError) as err:
        read_cvat_export(export, ROWS)
    one_line(err, "SegmentationClass/a.png", message)


def test_cvat_mask_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """A manifest can claim a huge image too: the pixel limit applies even when the sizes agree."""
    monkeypatch.setattr(cvat, "MAX_MASK_PIXELS", 500)
    export = cvat_zip(tmp_path / "ok.zip", members())
    with pytest.raises(DataError) as err:
        read_cvat_export(export, ROWS)
    one_line(err, "SegmentationClass/a.png", "mask is 30x20 = 0.0006 megapixels, over the limit")


def test_cvat_encrypted_zip_is_one_line(tmp_path):
    """zipfile cannot write encrypted members: set the 'encrypted' flag of every entry by hand."""
    data = bytearray(cvat_zip(tmp_path / "plain.zip", members()).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 1
            at = data.find(signature, at + 4)
    locked = tmp_path / "locked.zip"
    locked.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        read_cvat_export(locked, ROWS)
    one_line(err, str(locked / "labelmap.txt"), "is encrypted (a password-protected zip)")


# -- Label Studio: fields of the wrong type, bad RLE, times with offsets -----------------------------
def brush():
    return pytest.importorskip("label_studio_sdk.converter.brush")


def region(mask: np.ndarray | None = None, **value) -> dict:
    value = {"format": "rle", "brushlabels": ["Lesion"], **value}
    if mask is not None:
        value["rle"] = [int(v) for v in brush().mask2rle(mask * 255)]
    return {"from_name": "lesion", "to_name": "image", "type": "brushlabels", "original_width": W,
            "original_height": H, "value": value}


def square() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[4:12, 6:18] = 1
    return m


def annotation(result, ident=1, updated_at="2026-01-01T09:00:00Z") -> dict:
    return {"id": ident, "result": result, "was_cancelled": False, "updated_at": updated_at}


def ls_export(tmp_path, annotations, **data) -> object:
    task = {"id": 7, "data": {"image": "/data/local-files/?d=a.jpg", "saal_id": "a", **data},
            "annotations": annotations}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task]))
    return path


@pytest.mark.parametrize("annotations, data, message", [
    ([], {"saal_id": ["a"]}, "task 7 (image '/data/local-files/?d=a.jpg'): 'saal_id' is a list ['a']"),
    ({"id": 1, "result": []}, {}, "image a (task 7): 'annotations' is an object, expected a list"),
    (["done"], {}, "image a (task 7): an item of 'annotations' is a string 'done', expected an object"),
    ([annotation("Lesion here")], {}, "image a (task 7): 'result' is a string, expected a list"),
    ([annotation(["brush"])], {}, "image a (task 7): an item of 'result' is a string 'brush', expected an object"),
    ([annotation([region()])], {}, "image a (task 7): a brush region's 'rle' is missing, expected a list of byte"),
    ([annotation([region(rle="0,0,9")])], {}, "image a (task 7): a brush region's 'rle' is a string '0,0,9'"),
    ([annotation([region(rle=[0, 0, 9, 1.5])])], {}, "a brush region's 'rle' is a list [0, 0, 9, 1.5]"),
    ([annotation([region(rle=[0, 0, 4, 300, 7])])], {}, "a brush region's 'rle' is a list [0, 0, 4, 300, 7]"),
    ([annotation([region(rle=[255, 255, 255, 255, 0, 0])])], {},
     "image a (task 7): a brush region of 4294967295 values does not fit a 30x20 image"),
    ([annotation([region(rle=[0, 0, 9, 96, 0])])], {}, "a brush region's RLE cannot be decoded"),
    ([annotation([region(square())], updated_at=["yesterday"])], {},
     "image a (task 7): annotation 1 has updated_at ['yesterday'], not an ISO 8601 time"),
    ([annotation([region(square())], updated_at="yesterday 5pm")], {},
     "image a (task 7): annotation 1 has updated_at 'yesterday 5pm', not an ISO 8601 time"),
])
def test_labelstudio_export_with_fields_of_the_wrong_kind(tmp_path, annotations, data, message):
    path = ls_export(tmp_path, annotations, **data)
    with pytest.raises(DataError) as err:
        read_labelstudio_export(path, ROWS)
    one_line(err, str(path), message)


def test_labelstudio_rle_cut_short_is_one_line(tmp_path):
    rle = region(square())["value"]["rle"]
    path = ls_export(tmp_path, [annotation([region(rle=rle[: len(rle) // 2])])])
    with pytest.raises(DataError) as err:
        read_labelstudio_export(path, ROWS)
    one_line(err, str(path), "image a (task 7): a brush region's RLE cannot be decoded")


def test_labelstudio_long_values_are_quoted_short(tmp_path):
    path = ls_export(tmp_path, [annotation([{**region(square()), "type": "x" * 50_000}])])
    with pytest.raises(DataError) as err:
        read_labelstudio_export(path, ROWS)
    one_line(err, str(path), "only brush masks")


@pytest.mark.parametrize("older, newer", [
    ("2026-01-01T10:00:00+02:00", "2026-01-01T09:30:00Z"),  # 08:00 UTC vs 09:30 UTC: text order says otherwise
    ("2026-01-01T09:00:00.5", "2026-01-01T09:00:01+00:00"),  # naive = UTC
    ("2026-01-02T03:00:00+05:00", "2026-01-01T23:00:00.123456Z"),
])
def test_labelstudio_latest_annotation_is_compared_as_an_instant(tmp_path, older, newer):
    drawn = annotation([region(square())], ident=1, updated_at=older)
    erased = annotation([], ident=2, updated_at=newer)  # the reviewer's later verdict: no lesion
    for order in ([drawn, erased], [erased, drawn]):
        path = ls_export(tmp_path, order)
        assert not read_labelstudio_export(path, ROWS)["a"].any()
    drawn["updated_at"], erased["updated_at"] = newer, older
    assert np.array_equal(read_labelstudio_export(ls_export(tmp_path, [erased, drawn]), ROWS)["a"], square())


# -- PNG masks of a batch folder: bombs, transparency ------------------------------------------------
@pytest.fixture
def masks_dir(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("side, sizes, message", [
    (100_000, {"a": (W, H)}, "mask is too large to decode safely"),  # PIL's own limit, while opening
    (3000, {"a": (W, H)}, "mask is 3000x3000 but its image is 30x20"),
    (100_000, None, "mask is too large to decode safely"),
    (9000, None, "mask is 9000x9000 = 81 megapixels, over the limit of 64"),
])
def test_folder_import_refuses_a_bomb_mask_before_decoding(masks_dir, side, sizes, message):
    write_png_header(masks_dir / "a_segmentation.png", side, side)
    with pytest.raises(DataError) as err:
        import_masks(masks_dir, ["a"], image_size=16, original_sizes=sizes)
    one_line(err, "a_segmentation.png", message)


def lesion() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[4:12, 6:18] = True
    return m


def rgba(colour, alpha) -> np.ndarray:
    out = np.zeros((H, W, 4), np.uint8)
    out[..., :3] = colour
    out[..., 3] = alpha
    return out


def alpha_only(value: int) -> Image.Image:
    """A constant colour; the lesion only in the alpha channel (opaque), the rest fully transparent."""
    return Image.fromarray(rgba(value, lesion() * np.uint8(255)))


def palette_with_transparency() -> Image.Image:
    """Palette mask: index 0 transparent white, index 1 opaque white (both white: only alpha tells them apart)."""
    im = Image.fromarray(lesion().astype(np.uint8)).convert("P")
    im.putpalette([255, 255, 255, 255, 255, 255])
    im.info["transparency"] = 0
    return im


def composite() -> Image.Image:
    """White lesion on opaque black, with a transparent band across the lesion: transparent is background."""
    colour = np.where(lesion(), 255, 0).astype(np.uint8)
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, 6:9] = 0
    return Image.fromarray(rgba(colour[..., None], alpha))


def banded() -> np.ndarray:
    m = lesion().copy()
    m[:, 6:9] = False
    return m


TRANSPARENT_MASKS = {
    "white_lesion_in_alpha": (lambda: alpha_only(255), lesion),
    "black_paint_on_transparent_layer": (lambda: alpha_only(0), lesion),
    "red_paint_on_transparent_layer": (lambda: Image.fromarray(rgba((200, 30, 30), lesion() * np.uint8(255))),
                                       lesion),
    "grey_alpha": (lambda: Image.fromarray(np.stack([np.zeros((H, W), np.uint8), lesion() * np.uint8(255)], -1)),
                   lesion),
    "palette_transparency": (palette_with_transparency, lesion),
    "transparent_band_is_background": (composite, banded),
}


@pytest.mark.parametrize("case", list(TRANSPARENT_MASKS))
def test_transparent_masks_mean_the_same_to_the_import_and_the_loader(tmp_path, masks_dir, monkeypatch, case):
    """One rule in both places: transparent = background; one visible colour with varying alpha: alpha is the mask."""
    make, expected = TRANSPARENT_MASKS[case]
    make().save(masks_dir / "a.png")
    got = import_masks(masks_dir, ["a"], image_size=W, original_sizes={"a": (W, H)})["a"]
    assert np.array_equal(got, resize_mask(expected(), W)), case
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "images" / "a.jpg")
    make().save(root / "masks" / "a.png")
    monkeypatch.setenv("SAAL_CACHE_DIR", str(tmp_path / "cache"))
    before = snapshot(root)
    result = load_dataset(root, image_size=W, progress=False)
    assert np.array_equal(result.data.masks[0], got), case
    assert any("transparent pixels" in w and "a.png" in w for w in result.warnings), result.warnings
    assert snapshot(root) == before


def test_a_colour_visible_through_transparency_is_refused(masks_dir):
    colour = np.zeros((H, W, 3), np.uint8)
    colour[lesion()] = (255, 0, 0)
    colour[~lesion()] = (0, 255, 0)
    Image.fromarray(np.dstack([colour, np.full((H, W), 255, np.uint8)])).save(masks_dir / "a.png")
    with pytest.raises(DataError) as err:
        import_masks(masks_dir, ["a"], image_size=16)
    one_line(err, "a.png", "mask is in colour")


# -- ids: the export applies the loader's rule ------------------------------------------------------
def test_export_refuses_ids_by_the_loaders_rule(tmp_path):
    data = LesionData(ids=["IMD:002", "ok\nid", "x" * 300], images=np.zeros((3, 8, 8, 3), np.uint8), masks=None,
                      sources=[])
    for image_id, why in (("IMD:002", "it holds :"), ("ok\nid", "non-printable"), ("x" * 300, "over 200 bytes")):
        with pytest.raises(SaalError) as err:
            export_batch(tmp_path / "batch", [image_id], data, round=0)
        one_line(err, "cannot be used as a file name in an annotation batch", why)
