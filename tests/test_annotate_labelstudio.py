"""Label Studio export (tasks with brush pre-annotations) and import (its JSON export), without a server.

The round trip against a real Label Studio server is in test_labelstudio_server.py.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from saal.active.annotate import Preannotations, export_batch, import_annotations_from, preannotate, read_manifest
from saal.active.annotate.labelstudio import LABEL_CONFIG, LabelStudioWriter, read_labelstudio_export
from saal.data.dataset import LesionData
from saal.errors import DataError, SaalError
from saal.models.unet import UNet, UNetConfig

brush = pytest.importorskip("label_studio_sdk.converter.brush")

S = 16
IDS = ["ISIC_1", "ISIC_2", "ISIC_3"]


def tiny_data(sources):
    rng = np.random.default_rng(0)
    return LesionData(ids=list(IDS), images=rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8), masks=None,
                      sources=sources)


@pytest.fixture
def batch(tmp_path):
    """A batch of three images (two originals at their own sizes, one rendered) with pre-annotations."""
    folder = tmp_path / "userdata"
    folder.mkdir()
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(folder / "ISIC_1.jpg")
    Image.fromarray(np.full((24, 24, 3), 60, np.uint8)).save(folder / "ISIC_2.png")
    probs = {k: np.zeros((S, S), np.float32) for k in IDS}
    probs["ISIC_1"][4:12, 4:12] = 0.9
    probs["ISIC_2"][2:6, 2:14] = 0.8  # ISIC_3 stays empty: a prediction without regions
    pre = Preannotations(probs, {"ISIC_1": 0.1, "ISIC_2": 0.7, "ISIC_3": 0.3}, model_version="saal round 0")
    out = tmp_path / "run" / "annotate" / "round_1"
    writer = LabelStudioWriter(out, document_root=tmp_path / "run")
    export_batch(out, IDS, tiny_data([str(folder / "ISIC_1.jpg"), str(folder / "ISIC_2.png"), ""]), round=1,
                 preannotations=pre, writers=[writer])
    return out, pre


def decode(region, width, height):
    return np.asarray(brush.decode_rle(region["value"]["rle"])).reshape(height, width, 4)[..., 3] > 0


def fake_export(batch_dir, path, masks, *, extra_tasks=()):
    """What Label Studio exports after annotators submitted ``masks`` (id -> {0,1} H x W) on saal's tasks."""
    tasks = json.loads((batch_dir / "labelstudio/tasks.json").read_text())
    out = []
    for task_id, task in enumerate(tasks, start=1):
        mask = masks.get(task["data"]["saal_id"])
        annotations = []
        if mask is not None:
            h, w = mask.shape
            result = [] if not mask.any() else [{
                "from_name": "lesion", "to_name": "image", "type": "brushlabels", "original_width": w,
                "original_height": h, "value": {"format": "rle", "rle": [int(v) for v in brush.mask2rle(mask * 255)],
                                                "brushlabels": ["Lesion"]}}]
            annotations = [{"id": task_id, "result": result, "was_cancelled": False,
                            "updated_at": "2026-11-30T10:00:00Z"}]
        out.append({"id": task_id, "data": task["data"], "annotations": annotations,
                    "predictions": task.get("predictions", [])})
    path.write_text(json.dumps(out + list(extra_tasks)))
    return path


def ellipse(h, w):
    yy, xx = np.mgrid[:h, :w]
    return ((((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2) < 1).astype(np.uint8)


def test_tasks_carry_ids_references_scores_and_the_models_masks_as_brush_rle(batch):
    out, pre = batch
    tasks = json.loads((out / "labelstudio/tasks.json").read_text())
    assert [t["data"]["saal_id"] for t in tasks] == ["ISIC_2", "ISIC_3", "ISIC_1"]  # most uncertain first
    assert [r["image_id"] for r in read_manifest(out)] == ["ISIC_2", "ISIC_3", "ISIC_1"]
    sizes = {"ISIC_1": (40, 30), "ISIC_2": (24, 24), "ISIC_3": (S, S)}
    files = {r["image_id"]: r["image_file"] for r in read_manifest(out)}
    for task in tasks:
        image_id = task["data"]["saal_id"]
        assert task["data"]["image"] == f"/data/local-files/?d=annotate/round_1/{files[image_id]}"
        assert task["data"]["saal_round"] == 1 and task["data"]["uncertainty"] == pre.uncertainty[image_id]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "saal round 0"
        assert prediction["score"] == pytest.approx(1 - pre.uncertainty[image_id])
        width, height = sizes[image_id]
        expected = pre.mask(image_id, width, height)
        if image_id == "ISIC_3":
            assert prediction["result"] == [] and not expected.any()
            continue
        (region,) = prediction["result"]
        assert (region["original_width"], region["original_height"]) == (width, height)
        assert region["value"]["brushlabels"] == ["Lesion"]
        assert np.array_equal(decode(region, width, height), expected.astype(bool))
        # the folder's own proposal PNG is the same mask
        assert np.array_equal(np.asarray(Image.open(out / "predictions" / f"{image_id}.png")) > 0, expected > 0)
    root = ET.fromstring(LABEL_CONFIG)
    assert [e.tag for e in root] == ["Image", "BrushLabels"]
    assert (out / "labelstudio/label_config.xml").read_text() == LABEL_CONFIG


def test_image_url_prefix_and_a_root_that_does_not_hold_the_batch(tmp_path, batch):
    out, pre = batch
    writer = LabelStudioWriter(tmp_path / "b2", image_url="https://host/imgs/")
    export_batch(tmp_path / "b2", ["ISIC_3"], tiny_data(["", "", ""]), round=0, writers=[writer])
    (task,) = json.loads((tmp_path / "b2/labelstudio/tasks.json").read_text())
    assert task["data"]["image"] == "https://host/imgs/ISIC_3.png" and "predictions" not in task
    with pytest.raises(SaalError, match="not below the Label Studio document root"):
        LabelStudioWriter(tmp_path / "b3", document_root=tmp_path / "elsewhere")


def test_export_round_trip_maps_by_id_and_unites_regions(tmp_path, batch):
    out, _ = batch
    drawn = {"ISIC_1": ellipse(30, 40), "ISIC_2": ellipse(24, 24), "ISIC_3": np.zeros((S, S), np.uint8)}
    path = fake_export(out, tmp_path / "export.json", drawn)
    got = read_labelstudio_export(path, read_manifest(out))
    assert set(got) == set(IDS) and all(np.array_equal(got[k], drawn[k]) for k in IDS)
    # two strokes of one lesion: the union
    tasks = json.loads(path.read_text())
    task = next(t for t in tasks if t["data"]["saal_id"] == "ISIC_1")
    left, right = np.zeros((30, 40), np.uint8), np.zeros((30, 40), np.uint8)
    left[5:20, 2:10], right[10:25, 25:38] = 1, 1
    region = task["annotations"][0]["result"][0]
    task["annotations"][0]["result"] = [
        {**region, "value": {**region["value"], "rle": [int(v) for v in brush.mask2rle(m * 255)]}}
        for m in (left, right)]
    # a project reused over rounds: tasks of other batches are ignored
    tasks.append({"id": 99, "data": {"saal_id": "ISIC_9", "image": "x"}, "annotations": []})
    path.write_text(json.dumps(tasks))
    assert np.array_equal(read_labelstudio_export(path, read_manifest(out))["ISIC_1"], left | right)
    # at the training size, as the PNG import does
    small = import_annotations_from(out, image_size=8, export=path)
    assert small["ISIC_1"].shape == (8, 8) and small["ISIC_1"].dtype == np.uint8


def test_the_latest_submitted_annotation_wins_and_cancelled_ones_do_not_count(tmp_path, batch):
    out, _ = batch
    path = fake_export(out, tmp_path / "export.json", {k: ellipse(*s) for k, s in
                                                        {"ISIC_1": (30, 40), "ISIC_2": (24, 24),
                                                         "ISIC_3": (S, S)}.items()})
    tasks = json.loads(path.read_text())
    task = next(t for t in tasks if t["data"]["saal_id"] == "ISIC_2")
    newer = json.loads(json.dumps(task["annotations"][0]))
    newer.update(id=50, updated_at="2026-12-01T00:00:00Z", result=[])  # reviewer: no lesion
    cancelled = {**newer, "id": 51, "updated_at": "2026-12-02T00:00:00Z", "was_cancelled": True,
                 "result": task["annotations"][0]["result"]}
    task["annotations"] += [newer, cancelled]
    path.write_text(json.dumps(tasks))
    assert not read_labelstudio_export(path, read_manifest(out))["ISIC_2"].any()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update(annotations=[]), "no submitted annotation for 1 of 3 images: ISIC_1"),
    (lambda t: t["annotations"][0]["result"][0]["value"].update(brushlabels=["Nevus"]), "labeled \\['nevus'\\]"),
    (lambda t: t["annotations"][0]["result"][0].update(type="polygonlabels"), "only brush masks"),
    (lambda t: t["annotations"][0]["result"][0].update(original_width=80), "drawn on a 80x30 image"),
    (lambda t: t["annotations"][0]["result"][0]["value"].update(rle=[int(v) for v in brush.mask2rle(
        np.zeros((5, 5), np.uint8))]), "does not fit a 40x30 image"),
])
def test_bad_exports_are_refused_naming_the_image(tmp_path, batch, edit, message):
    out, _ = batch
    path = fake_export(out, tmp_path / "export.json", {"ISIC_1": ellipse(30, 40), "ISIC_2": ellipse(24, 24),
                                                        "ISIC_3": ellipse(S, S)})
    tasks = json.loads(path.read_text())
    edit(next(t for t in tasks if t["data"]["saal_id"] == "ISIC_1"))
    path.write_text(json.dumps(tasks))
    with pytest.raises(DataError, match=message) as err:
        read_labelstudio_export(path, read_manifest(out))
    assert str(path) in str(err.value)


def test_files_that_are_not_a_json_export_of_this_batch(tmp_path, batch):
    out, _ = batch
    rows = read_manifest(out)
    cases = {"broken.json": "{not json", "min.json": json.dumps([{"image": "x", "lesion": []}]),
             "other.json": json.dumps([{"id": 1, "data": {"image": "x"}, "annotations": []}])}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match="not a readable JSON"):
        read_labelstudio_export(tmp_path / "broken.json", rows)
    with pytest.raises(DataError, match="not 'JSON-MIN'"):
        read_labelstudio_export(tmp_path / "min.json", rows)
    with pytest.raises(DataError, match="no task of this batch"):
        read_labelstudio_export(tmp_path / "other.json", rows)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="neither an annotation batch folder"):
        import_annotations_from(out, image_size=8, export=tmp_path / "notes.txt")


def test_uncertainty_is_a_mean_over_pixels_in_bits():
    """A model unsure everywhere (p = 0.5) scores 1 at any image size; a sum would grow with the pixels."""
    model = UNet(UNetConfig(in_channels=3, base_width=4))
    with torch.no_grad():
        for p in model.head.parameters():
            p.zero_()
    for size in (16, 32):
        data = LesionData(ids=["a", "b"], images=np.zeros((2, size, size, 3), np.uint8), masks=None, sources=[])
        pre = preannotate(model, data, ["b", "a"], model_version="v")
        assert pre.uncertainty == {"b": pytest.approx(1.0), "a": pytest.approx(1.0)}
        assert pre.probabilities["a"].shape == (size, size)
    assert math.isclose(float(pre.probabilities["a"].mean()), 0.5)


@pytest.mark.realdata
def test_real_isic_through_both_tools_at_full_resolution(tmp_path, isic_val_fullres):
    """Real 1024x768 and 2592x1936 ISIC images: the expert mask goes out as the proposal, Label Studio's RLE
    and CVAT's mask PNG bring it back, and import gives the loader's training mask of that expert outline."""
    import zipfile

    from saal.active.annotate import format_writer
    from saal.data.imageio import read_mask

    images = sorted((isic_val_fullres / "ISIC-2017_Validation_Data").glob("*.jpg"))
    images = [images[0], images[-1]]
    truth_dir = isic_val_fullres / "ISIC-2017_Validation_Part1_GroundTruth"
    ids = [p.stem for p in images]
    truth = {k: (np.asarray(Image.open(truth_dir / f"{k}_segmentation.png")) > 0).astype(np.uint8) for k in ids}

    class Expert(Preannotations):
        def mask(self, image_id, width, height):  # the proposal is the expert's own outline, at full size
            assert truth[image_id].shape == (height, width)
            return truth[image_id]

    pre = Expert({k: np.zeros((64, 64), np.float32) for k in ids}, {ids[0]: 0.2, ids[1]: 0.4}, "expert")
    data = LesionData(ids=ids, images=np.zeros((2, 64, 64, 3), np.uint8), masks=None,
                      sources=[str(p) for p in images])
    for fmt in ("labelstudio", "cvat"):
        out = tmp_path / fmt / "round_1"
        export_batch(out, ids, data, round=1, preannotations=pre, writers=[format_writer(fmt, out)])
        if fmt == "labelstudio":
            tasks = json.loads((out / "labelstudio/tasks.json").read_text())
            for t in tasks:  # the annotator submits the proposal unchanged
                t["annotations"] = [{"id": 1, "result": t["predictions"][0]["result"], "was_cancelled": False}]
            export = tmp_path / "ls.json"
            export.write_text(json.dumps(tasks))
        else:
            export = tmp_path / "cvat_export"
            with zipfile.ZipFile(out / "cvat/preannotations.zip") as z:
                z.extractall(export)
        masks = import_annotations_from(out, image_size=64, export=export)
        for k, path in zip(ids, images):
            ref, _ = read_mask(truth_dir / f"{k}_segmentation.png", size=64, image_size=truth[k].shape[::-1],
                               image_path=path)
            assert np.array_equal(masks[k], ref) and masks[k].any(), (fmt, k)
