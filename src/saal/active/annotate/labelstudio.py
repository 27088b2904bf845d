"""Label Studio round trip: import-ready tasks with the model's masks as pre-annotations, and the export back.

Written into an exported batch as ``labelstudio/``:

* ``label_config.xml`` -- the labeling interface: the image and one brush label, ``Lesion``;
* ``tasks.json`` -- one task per image, most uncertain first. ``data`` holds the image
  reference, ``saal_id`` (the image id: the export is mapped back by it, never by the
  file names Label Studio gives uploads), ``saal_round`` and the model's ``uncertainty``;
  ``predictions`` holds the model's mask as brush RLE, with ``model_version`` and
  ``score`` = 1 - uncertainty (Label Studio's convention: higher = more confident);
* ``README.txt`` -- the steps in Label Studio.

Image references: by default Label Studio's local-files URLs
(``/data/local-files/?d=<path>``), ``<path>`` relative to a document root that
Label Studio is started with (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; default
here: the run directory, so one Label Studio serves every round's batch); or,
with ``image_url``, ``<image_url>/<file name>`` for teams that serve or upload
the images elsewhere (a web server, a bucket).

The brush RLE is Label Studio's own (``label_studio_sdk.converter.brush``:
``mask2rle`` / ``decode_rle``), so what we write is what its editor draws.
The import reads a Label Studio *JSON* export of the project: for each image of
the batch it takes the most recently updated, not cancelled annotation, and
unites its brush strokes labeled ``Lesion`` into one mask at the image's own
size; every problem is a :class:`~saal.errors.DataError` naming the export file,
the task and the image. The export is untrusted JSON: every field is checked
for its type before use, ``updated_at`` is compared as an instant (ISO 8601,
any UTC offset; a time without offset is taken as UTC), and a brush RLE's
declared length is compared with the image's size before it is decoded (the
length is the RLE's first four bytes, and decoding allocates it).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import numpy as np

from ...data.names import shown
from ...errors import DataError, SaalError, name_some
from ...io import atomic_write_text
from .preannotate import Preannotations

LS_DIR = "labelstudio"
TASKS = "tasks.json"
LABEL_CONFIG_FILE = "label_config.xml"
FROM_NAME, TO_NAME, LABEL = "lesion", "image", "Lesion"
LABEL_CONFIG = f"""<View>
  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>
  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">
    <Label value="{LABEL}" background="#e8175d"/>
  </BrushLabels>
</View>
"""
INSTALL_HINT = "Label Studio support needs the label-studio-sdk package: pip install 'saal[labelstudio]'"

_README = """\
Label Studio: round {round}, {n} images
=====================================

1. Start Label Studio so that it can serve the images from disk:
      LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \\
      LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root} \\
      label-studio start
   (images/ is {images_rel} below that root; tasks.json refers to the images
   that way. Exported with --image-url instead, the images must be served at
   that address and none of this is needed.)
2. Create a project; Settings > Labeling Interface > Code: paste label_config.xml.
3. Settings > Cloud Storage > Add Source Storage > Local files, absolute path
      {batches}
   (the folder of every round's batch: once per project). Save, but do NOT
   sync (the tasks come from tasks.json).
4. Import tasks.json. Each task shows the model's proposal (when a model
   exists): correct it with the brush and eraser, then Submit. The column
   "uncertainty" sorts the images the model is least sure about first.
5. Export > JSON, then hand the file to saal:
      saal annotate import EXPORT.json --run <the run directory>
"""


def _brush() -> Any:
    try:
        from label_studio_sdk.converter import brush
    except ImportError as exc:
        raise SaalError(INSTALL_HINT) from exc
    return brush


def image_reference(batch_dir: Path, image_file: str, *, document_root: Path | None, image_url: str | None) -> str:
    """The URL a task gives for one image: ``image_url/<name>``, else a local-files URL under ``document_root``."""
    if image_url:
        return f"{image_url.rstrip('/')}/{quote(Path(image_file).name)}"
    root = (document_root or batch_dir).resolve()
    path = (batch_dir / image_file).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise SaalError(f"the images of {batch_dir} are not below the Label Studio document root {root}") from None
    return f"/data/local-files/?d={quote(rel.as_posix())}"


def prediction(mask: np.ndarray | None, *, model_version: str, score: float) -> dict[str, Any]:
    """One Label Studio prediction: the mask (uint8 {0, 1}, H x W) as one brush region, none when empty or None.

    ``score`` is what Label Studio sorts tasks by: 1 - uncertainty in exported tasks, the image's usefulness
    for the next batch in the ML backend's answers (:mod:`saal.serve`).
    """
    result = []
    if mask is not None and mask.any():
        height, width = mask.shape
        rle = _brush().mask2rle(mask.astype(np.uint8) * np.uint8(255))
        result.append({"id": "saal", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "brushlabels",
                       "original_width": width, "original_height": height, "image_rotation": 0,
                       "value": {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [LABEL]}})
    return {"model_version": model_version, "score": round(float(score), 4), "result": result}


class LabelStudioWriter:
    """Writes ``labelstudio/`` into a batch being built (a format writer for :func:`.folder.export_batch`).

    ``batch_dir`` is where the batch will live once complete, ``document_root``
    the folder Label Studio serves local files from (default: ``batch_dir``),
    ``image_url`` an address prefix to use instead of local files.
    """

    def __init__(self, batch_dir: str | os.PathLike, *, document_root: str | os.PathLike | None = None,
                 image_url: str | None = None):
        _brush()  # fail before anything is written when the package is missing
        self.batch_dir = Path(batch_dir)
        self.document_root = Path(document_root) if document_root is not None else None
        self.image_url = image_url
        # checked now, against the final location, so a bad root fails before the batch is built
        image_reference(self.batch_dir, "images/x.png", document_root=self.document_root, image_url=image_url)

    def __call__(self, tmp_dir: Path, rows: Sequence[Mapping[str, Any]],
                 preannotations: Preannotations | None) -> None:
        tasks = []
        for r in rows:
            image_id = str(r["image_id"])
            data = {"image": image_reference(self.batch_dir, str(r["image_file"]), document_root=self.document_root,
                                             image_url=self.image_url),
                    "saal_id": image_id, "saal_round": int(r["round"])}
            task: dict[str, Any] = {"data": data}
            if preannotations is not None:
                uncertainty = preannotations.uncertainty[image_id]
                data["uncertainty"] = round(uncertainty, 4)
                mask = preannotations.mask(image_id, int(r["width"]), int(r["height"]))
                task["predictions"] = [prediction(mask, model_version=preannotations.model_version,
                                                  score=1.0 - uncertainty)]
            tasks.append(task)
        folder = tmp_dir / LS_DIR
        folder.mkdir()
        atomic_write_text(folder / TASKS, json.dumps(tasks, indent=1) + "\n")
        atomic_write_text(folder / LABEL_CONFIG_FILE, LABEL_CONFIG)
        root = (self.document_root or self.batch_dir).resolve()
        images = (self.batch_dir / "images").resolve()
        atomic_write_text(folder / "README.txt", _README.format(
            round=rows[0]["round"] if rows else "?", n=len(rows), root=root, batches=self.batch_dir.resolve().parent,
            images_rel=images.relative_to(root).as_posix() if images != root else "."))


# -- import -----------------------------------------------------------------------------
def is_labelstudio_export(path: Path) -> bool:
    """Whether ``path`` looks like a Label Studio JSON export (a ``.json`` file)."""
    return path.is_file() and path.suffix.lower() == ".json"


def _load_tasks(path: Path) -> list[dict[str, Any]]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a readable JSON file ({exc.__class__.__name__})", path) from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict)
                                              for t in tasks):
        raise DataError("not a Label Studio JSON export (expected a list of tasks with 'data'); "
                        "export the project as 'JSON', not 'JSON-MIN' or CSV", path)
    return tasks


_NEVER = datetime.min.replace(tzinfo=timezone.utc)  # an annotation without any time: older than all others


def _kind(value: Any) -> str:
    """What a JSON value is, for messages: ``a list``, ``a string``, ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _task_id(task: dict[str, Any]) -> str:
    return shown(task["id"]) if "id" in task else "?"


def _list_of_objects(value: Any, field: str, where: str, path: Path | None) -> list[dict[str, Any]]:
    """``value`` (a JSON field, ``null`` meaning none) as a list of objects, else a DataError."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"{where}: '{field}' is {_kind(value)}, expected a list", path)
    for item in value:
        if not isinstance(item, dict):
            raise DataError(f"{where}: an item of '{field}' is {_kind(item)} {shown(item)}, expected an object", path)
    return value


def _updated(annotation: dict[str, Any], where: str, path: Path) -> datetime:
    """When an annotation was last saved, as an instant: text order is wrong across UTC offsets ("10:00+02:00"
    is before "09:30Z"); a time without offset is taken as UTC, Label Studio's own zone."""
    field = "updated_at" if annotation.get("updated_at") else "created_at"
    stamp = annotation.get(field)
    if not stamp:
        return _NEVER
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        when = None
    if when is None:
        raise DataError(f"{where}: annotation {shown(annotation.get('id', '?'))} has {field} {shown(stamp)}, "
                        "not an ISO 8601 time", path)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _latest_annotation(task_list: Sequence[dict[str, Any]], where: str, path: Path) -> dict[str, Any] | None:
    """The most recently updated, not cancelled annotation over the tasks of one image (ties: highest id)."""
    done = [a for t in task_list for a in _list_of_objects(t.get("annotations"), "annotations", where, path)
            if not a.get("was_cancelled")]
    return max(done, key=lambda a: (_updated(a, where, path), a["id"] if isinstance(a.get("id"), int) else -1),
               default=None)


def _rle_pixels(rle: Any, size: tuple[int, int], where: str, path: Path | None) -> np.ndarray:
    """A brush region's RLE -> its RGBA values (flat), checked to be byte values of the right length first."""
    width, height = size
    try:
        values = np.asarray(rle) if isinstance(rle, list) else None
    except (ValueError, TypeError):  # ragged nesting
        values = None
    if (values is None or values.ndim != 1 or values.dtype.kind not in "iu" or len(values) < 4
            or values.min() < 0 or values.max() > 255):
        found = "missing" if rle is None else f"{_kind(rle)} {shown(rle)}"
        raise DataError(f"{where}: a brush region's 'rle' is {found}, expected a list of byte values (0..255)", path)
    declared = int.from_bytes(bytes(values[:4].astype(np.uint8)), "big")  # the RLE's first 32 bits: its length
    if declared != width * height * 4:
        raise DataError(f"{where}: a brush region of {declared} values does not fit a {width}x{height} image",
                        path)
    try:
        return np.asarray(_brush().decode_rle(rle), np.uint8)
    except Exception as exc:  # the SDK's decoder runs off the end of a cut or forged RLE in several ways
        raise DataError(f"{where}: a brush region's RLE cannot be decoded ({exc.__class__.__name__}); "
                        "export the project again", path) from None


def annotation_mask(annotation: dict[str, Any], size: tuple[int, int], where: str,
                    path: Path | None = None) -> np.ndarray:
    """Union of an annotation's ``Lesion`` brush regions, uint8 {0, 1} at ``size`` (width, height).

    The export reader and the ML backend's webhook (``path`` None: no file) decode annotations here, so both
    refuse the same regions with the same words.
    """
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    for region in _list_of_objects(annotation.get("result"), "result", where, path):
        kind = region.get("type")
        kind = kind.lower() if isinstance(kind, str) else ""
        value = region.get("value")
        if kind not in ("brushlabels", "labels") or not isinstance(value, dict) or value.get("format") != "rle":
            raise DataError(f"{where}: a {shown(region.get('type'))} region; only brush masks (BrushLabels) can be "
                            "imported: use the label config saal wrote", path)
        labels = value.get(kind) or value.get("brushlabels") or []
        labels = [str(v).lower() for v in labels] if isinstance(labels, list) else labels
        if labels != [LABEL.lower()]:
            raise DataError(f"{where}: a region labeled {shown(labels) if labels else 'nothing'}; the only label "
                            f"is {LABEL!r}", path)
        got = (region.get("original_width"), region.get("original_height"))
        if got != (width, height):
            raise DataError(f"{where}: the region was drawn on a {shown(got[0])}x{shown(got[1])} image but the "
                            f"image is {width}x{height}; was the task's image replaced?", path)
        mask |= _rle_pixels(value.get("rle"), size, where, path).reshape(height, width, 4)[..., 3] > 0
    return mask


def read_labelstudio_export(path: str | os.PathLike, rows: Sequence[Mapping[str, str]]) -> dict[str, np.ndarray]:
    """``image_id -> uint8 {0, 1}`` mask at the image's own size, from a Label Studio JSON export.

    ``rows`` are the batch's manifest rows. Tasks of other batches (a project
    reused over rounds) are ignored; an image of the batch without a submitted
    annotation is an error, as is a task that names no image id of ours at all.
    """
    path = Path(path)
    tasks = _load_tasks(path)
    try:
        sizes = {str(r["image_id"]): (int(r["width"]), int(r["height"])) for r in rows}
    except (KeyError, ValueError):
        raise DataError("batch manifest has a row without an integer width and height") from None
    by_id: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        image_id = task["data"].get("saal_id")
        if image_id is not None and not isinstance(image_id, str):
            raise DataError(f"task {_task_id(task)} (image {shown(task['data'].get('image'))}): "
                            f"'saal_id' is {_kind(image_id)} {shown(image_id)}, expected the image id as text; "
                            "import saal's labelstudio/tasks.json unchanged", path)
        if image_id in sizes:
            by_id.setdefault(image_id, []).append(task)
    if not by_id:
        raise DataError(f"no task of this batch (round {rows[0]['round'] if rows else '?'}): the export's tasks "
                        "lack 'saal_id' or belong to other images; import saal's labelstudio/tasks.json", path)
    where = {k: f"image {k} (task {name_some([_task_id(t) for t in by_id.get(k, [])]) or 'none'})"
             for k in sizes}
    latest = {k: _latest_annotation(by_id.get(k, []), where[k], path) for k in sizes}
    missing = [k for k, annotation in latest.items() if annotation is None]
    if missing:
        raise DataError(f"no submitted annotation for {len(missing)} of {len(sizes)} images: {name_some(missing)}",
                        path)
    return {k: annotation_mask(latest[k], size, where[k], path) for k, size in sizes.items()}
