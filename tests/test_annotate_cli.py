"""The annotation tools from the command line: query --format, annotate import of a tool's export, train.

Label Studio's and CVAT's exports are written here the way those tools write
them (a real Label Studio server: test_labelstudio_server.py).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from saal.cli.main import main
from saal.config import get_preset
from saal.io import read_csv
from saal.workspace import open_workspace

pytestmark = pytest.mark.slow  # tiny runs, trained end to end

TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8), n_clusters=3)


def truth(ws, image_id):
    return ws.pool.masks[ws.pool.ids.index(image_id)]


def labelstudio_export(batch, path, masks):
    """A Label Studio JSON export of the batch's tasks, each annotated with ``masks[saal_id]``."""
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    tasks = json.loads((batch / "labelstudio/tasks.json").read_text())
    out = []
    for i, task in enumerate(tasks, start=1):
        mask = masks[task["data"]["saal_id"]]
        h, w = mask.shape
        region = {"from_name": "lesion", "to_name": "image", "type": "brushlabels", "original_width": w,
                  "original_height": h, "value": {"format": "rle", "brushlabels": ["Lesion"],
                                                  "rle": [int(v) for v in brush.mask2rle(mask * 255)]}}
        out.append({"id": 100 + i, "data": task["data"], "predictions": task.get("predictions", []),
                    "annotations": [{"id": i, "result": [region], "was_cancelled": False,
                                     "updated_at": "2026-11-30T12:00:00Z"}]})
    path.write_text(json.dumps(out))
    return path


def cvat_export(path, masks):
    """A CVAT 'Segmentation mask 1.1' export zip: CVAT's own label colour, one mask per image."""
    colour = (250, 50, 83)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("labelmap.txt", f"# label:color_rgb:parts:actions\nbackground:0,0,0::\nlesion:"
                                   f"{','.join(map(str, colour))}::\n")
        z.writestr("ImageSets/Segmentation/default.txt", "\n".join(masks) + "\n")
        for image_id, mask in masks.items():
            rgb = np.zeros(mask.shape + (3,), np.uint8)
            rgb[mask > 0] = colour
            png = io.BytesIO()
            Image.fromarray(rgb).save(png, format="PNG")
            z.writestr(f"SegmentationClass/{image_id}.png", png.getvalue())
            z.writestr(f"SegmentationObject/{image_id}.png", png.getvalue())
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("fmt", ["labelstudio", "cvat"])
def test_round_trip_export_annotate_import_train_with_preannotations(tmp_path, fmt):
    if fmt == "labelstudio":  # the SDK writes the tasks' brush RLE; the CVAT round trip runs without it
        pytest.importorskip("label_studio_sdk.converter.brush")
    run = tmp_path / "run"
    ws = open_workspace(run, preset=TINY, progress=False)
    r = str(run)
    assert main(["select", "--run", r, "--budget", "4", "-q"]) == 0
    assert main(["query", "--run", r, "--format", fmt, "-q"]) == 0
    first = run / "annotate/round_0"
    ids = [row["image_id"] for row in read_csv(first / "manifest.csv")]
    assert not (first / "predictions").exists()  # no model yet: nothing to propose
    export = (labelstudio_export(first, tmp_path / "ls0.json", {k: truth(ws, k) for k in ids}) if fmt == "labelstudio"
              else cvat_export(tmp_path / "cvat0.zip", {k: truth(ws, k) for k in ids}))
    assert main(["annotate", "import", str(export), "--run", r, "-q"]) == 0  # the batch the run waits for
    for k in ids:  # the tool's masks are what training uses
        saved = np.asarray(Image.open(run / "active/labels" / f"{k}.png")) >= 128
        assert np.array_equal(saved, truth(ws, k).astype(bool))
    assert main(["annotate", "import", str(export), "--run", r, "--batch", str(first), "-q"]) == 0  # nothing new

    assert main(["train", "--run", r, "-q"]) == 0
    assert main(["query", "--run", r, "--format", fmt, "--query", "entropy", "-q"]) == 0
    second = run / "annotate/round_1"
    rows = read_csv(second / "manifest.csv")
    scores = [float(row["uncertainty"]) for row in rows]
    assert len(rows) == 4 and scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    proposals = {row["image_id"]: (np.asarray(Image.open(second / "predictions" / f"{row['image_id']}.png")) > 0)
                 .astype(np.uint8) for row in rows}
    if fmt == "labelstudio":
        tasks = json.loads((second / "labelstudio/tasks.json").read_text())
        assert [t["data"]["saal_id"] for t in tasks] == [row["image_id"] for row in rows]
        assert all(t["predictions"][0]["model_version"].startswith("saal round 0") for t in tasks)
        export = labelstudio_export(second, tmp_path / "ls1.json", proposals)  # annotators accept the proposals
    else:
        with zipfile.ZipFile(second / "cvat/preannotations.zip") as z:
            z.extractall(tmp_path / "cvat1")  # CVAT exports what was uploaded when nobody changes it
        export = tmp_path / "cvat1"
    assert main(["annotate", "import", str(export), "--run", r, "-q"]) == 0
    assert main(["train", "--run", r, "-q"]) == 0
    rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
    assert [(x["round"], x["n_labeled"]) for x in rounds] == [(0, 4), (1, 8)]


def test_import_of_an_export_without_a_waiting_batch_or_of_a_wrong_file(tmp_path, capsys):
    run = tmp_path / "run"
    open_workspace(run, preset=TINY, progress=False)
    (tmp_path / "e.json").write_text("[]")
    assert main(["annotate", "import", str(tmp_path / "e.json"), "--run", str(run), "-q"]) == 2
    assert "no exported batch of this run waits" in capsys.readouterr().err
    assert main(["query", "--run", str(run), "--format", "pdf", "-q"]) == 2
    assert "folder, labelstudio, cvat" in capsys.readouterr().err


def test_without_the_label_studio_sdk_only_its_round_trip_skips(monkeypatch):
    """Load this file with label_studio_sdk unimportable: nothing at module level may skip the CVAT tests."""
    import importlib.util
    import sys

    for name in [m for m in sys.modules if m.startswith("label_studio_sdk.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # "import label_studio_sdk..." now fails
    spec = importlib.util.spec_from_file_location("annotate_cli_without_sdk", __file__)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except pytest.skip.Exception as skipped:
        pytest.fail(f"the whole module skips without label_studio_sdk ({skipped}), the CVAT round trip too")
    with pytest.raises(pytest.skip.Exception):
        labelstudio_export(None, None, {})  # the Label Studio round trip skips at its first use of the SDK
