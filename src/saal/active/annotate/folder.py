"""The annotation batch folder: every export format starts from it, every import checks against its manifest.

An exported batch is a self-contained folder an annotator can open with any
tool::

    <batch>/
      README.txt        what to do, in plain words
      manifest.csv      rank, image_id, image_file, original_path, round, width, height, uncertainty
      images/<id>.<ext> the original file copied (or a PNG of the preprocessed image
                        when the original is not on disk)
      predictions/      the current model's proposal per image (<id>.png, white lesion), when a
                        model exists: copy one into masks/ and correct it rather than draw from scratch
      masks/            empty: the annotator saves one PNG mask per image here
      labelstudio/      with format "labelstudio": tasks.json (+ pre-annotations), label_config.xml
      cvat/             with format "cvat": the CVAT task package (+ pre-annotations)

``rank`` is the query's order (1 = chosen first); with a model the rows are
sorted by ``uncertainty`` (the model's mean pixel entropy in bits, most
uncertain first), otherwise by rank.

Masks come back at the size of the exported image (the original resolution),
white lesion on black; :func:`import_masks` checks every file before any mask
is used, then brings each to the training size exactly as the data loader does
for ground-truth masks: a bilinear resize of the 0/255 mask followed by a
threshold at 128 (value >= 128 is lesion), so a mask drawn at 2592x1936 and a
loader-read ISIC mask of the same outline give the same training mask.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from ...data.dataset import LesionData
from ...data.imageio import (DEFAULT_MAX_PIXELS, check_pixels, load_pixels, mask_values, open_lazily,
                             resize_mask)
from ...data.layouts import MASK_SUFFIXES, mask_id
from ...data.names import id_problem, printable_name, printable_path, shown
from ...errors import DataError, SaalError, name_some
from ...io import atomic_write_text, read_csv, write_csv
from .preannotate import Preannotations

MANIFEST = "manifest.csv"
#: The columns every manifest has (``uncertainty`` came later: older batches lack it).
REQUIRED_FIELDS = ("rank", "image_id", "image_file", "original_path", "round", "width", "height")
MANIFEST_FIELDS = REQUIRED_FIELDS + ("uncertainty",)
PREDICTIONS = "predictions"
#: Writes a tool's files into a batch being built: ``writer(batch_dir, manifest_rows, preannotations)``.
FormatWriter = Callable[[Path, Sequence[Mapping[str, Any]], "Preannotations | None"], None]
#: The mask file names an annotator may use, for an image with id ``<id>`` (the data loader accepts the same).
ACCEPTED_NAMES = ", ".join(["<id>.png"] + [f"<id>{suffix}.png" for suffix in MASK_SUFFIXES])

_README = """\
Annotation batch: round {round}, {n} images
==========================================

What to do
----------
1. Open each image in images/ (manifest.csv lists them, most useful first).
2. Draw the lesion: lesion WHITE (255), background BLACK (0), nothing else
   (no grey anti-aliased edges, no colours, no annotations burnt in).
3. Save ONE mask per image as a PNG file in masks/, named after the image:
      images/ISIC_0000001.jpg  ->  masks/ISIC_0000001_segmentation.png
   (ISIC_0000001.png, ISIC_0000001_mask.png and ISIC_0000001_lesion.png
   are accepted too).
   The mask must have exactly the same width and height as its image
   (manifest.csv gives them); PNG only, since JPEG blurs the edges.
4. Put nothing else in masks/. When every image has its mask, hand this folder
   back to saal:
      saal annotate import {folder} --run <the run directory>
   (in Python: saal.active.annotate.import_batch("{folder}", image_size={size})).
   saal checks every mask (name, size, black/white values) and tells you which
   file to fix before anything is trained.
{predictions}"""

_PREDICTIONS_README = """
The model's proposals
---------------------
predictions/ holds the current model's mask for each image (same name as the
image, .png). Correcting a proposal is faster than drawing: copy it into
masks/ as <id>_segmentation.png and fix the outline. manifest.csv lists the
images the model is least sure about first (column uncertainty: 0 = sure,
1 = a coin toss on every pixel).
"""


def _check_id_is_filename(image_id: str) -> None:
    """The loader refuses such ids already; data built in Python (``LesionData``) is checked here."""
    why = id_problem(image_id)
    if why is not None:
        raise SaalError(f"image id {shown(image_id)} cannot be used as a file name in an annotation batch ({why})")


# -- export -----------------------------------------------------------------------------
def _same_batch(out_dir: Path, ids: Sequence[str], round: int) -> bool:
    """Whether ``out_dir`` already holds this very batch (re-export is then a no-op)."""
    try:
        rows = read_csv(out_dir / MANIFEST)
    except (OSError, UnicodeDecodeError):
        return False
    return sorted(r.get("image_id") for r in rows) == sorted(ids) and all(r.get("round") == str(round) for r in rows)


def _image_entry(src: str, stem: str, image: np.ndarray, dest: Path) -> tuple[str, int, int]:
    """Put one image into ``dest`` (copy of the original, else a PNG render); its file name and size."""
    path = Path(src) if src else None
    if path is not None and path.is_file() and path.suffix:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, SyntaxError) as exc:
            raise DataError(f"original image is not readable ({exc.__class__.__name__})", path) from None
        name = stem + path.suffix.lower()
        shutil.copyfile(path, dest / name)
        return name, width, height
    name = stem + ".png"
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    Image.fromarray(np.ascontiguousarray(pixels)).save(dest / name)
    return name, image.shape[1], image.shape[0]


def export_batch(out_dir: str | os.PathLike, ids: Sequence[str], data: LesionData, round: int, *,
                 preannotations: Preannotations | None = None, writers: Sequence[FormatWriter] = ()) -> Path:
    """Write the queried ``ids`` (in rank order) as an annotation batch folder; returns it.

    With ``preannotations`` (the current model's predictions of ``ids``) the
    folder gets ``predictions/`` and the manifest an uncertainty per image,
    most uncertain first. Each of ``writers`` adds one annotation tool's files
    (:mod:`.labelstudio`, :mod:`.cvat`). The folder appears complete or not at
    all (built beside it, then renamed). Exporting the same ids and round again
    is a no-op that keeps any masks already drawn; any other existing content is
    refused, as is a folder inside the data folder of the images.
    """
    out_dir = Path(out_dir)
    ids = [str(i) for i in ids]
    for image_id in ids:
        _check_id_is_filename(image_id)
    if len(set(ids)) != len(ids):
        raise SaalError("an annotation batch cannot list the same image twice")
    pos = {k: i for i, k in enumerate(data.ids)}
    unknown = [k for k in ids if k not in pos]
    if unknown:
        raise SaalError(f"cannot export ids that are not in the dataset: {name_some(unknown)}")
    if preannotations is not None and not set(ids) <= set(preannotations.uncertainty):
        raise SaalError("the pre-annotations do not cover every image of the batch")
    index = [pos[k] for k in ids]
    target = out_dir.resolve()
    for i in index:  # only real files have a data folder (the embedded set's images have none)
        src_dir = Path(data.sources[i]).resolve().parent if Path(data.sources[i] or "").is_file() else None
        if src_dir is not None and (target == src_dir or src_dir in target.parents):
            raise SaalError(f"{out_dir}: an annotation batch must not be written inside the data folder {src_dir}")
    if out_dir.exists():
        if (out_dir / MANIFEST).is_file() and _same_batch(out_dir, ids, round):
            return out_dir
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise SaalError(f"{out_dir}: already exists and does not hold this batch "
                            f"(round {round}, {len(ids)} images); choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        rows = []
        for rank, (image_id, i) in enumerate(zip(ids, index), start=1):
            name, width, height = _image_entry(data.sources[i], image_id, data.images[i], tmp / "images")
            rows.append({"rank": rank, "image_id": image_id, "image_file": f"images/{name}",
                         "original_path": data.sources[i], "round": round, "width": width, "height": height,
                         "uncertainty": "" if preannotations is None
                         else f"{preannotations.uncertainty[image_id]:.4f}"})
        if preannotations is not None:
            rows.sort(key=lambda r: -preannotations.uncertainty[r["image_id"]])  # stable: ties keep rank order
            _write_predictions(tmp / PREDICTIONS, rows, preannotations)
        write_csv(tmp / MANIFEST, rows, MANIFEST_FIELDS)
        atomic_write_text(tmp / "README.txt", _README.format(
            round=round, n=len(ids), folder=out_dir, size=data.image_size,
            predictions="" if preannotations is None else _PREDICTIONS_README))
        for write in writers:
            write(tmp, rows, preannotations)
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above): rename cannot replace a folder on every OS
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_predictions(folder: Path, rows: Sequence[Mapping[str, Any]], preannotations: Preannotations) -> None:
    """One white-on-black PNG per image at the image's own size: the model's proposal."""
    folder.mkdir()
    for r in rows:
        mask = preannotations.mask(r["image_id"], int(r["width"]), int(r["height"]))
        Image.fromarray(mask * np.uint8(255)).save(folder / f"{r['image_id']}.png")


# -- import -----------------------------------------------------------------------------
def _mask_owner(stem: str, expected: set[str]) -> str | None:
    """The expected id a mask file stem names: ``<id>`` or ``<id>`` + a mask suffix the data loader knows."""
    if stem in expected:
        return stem
    owner = mask_id(stem)
    return owner if owner in expected else None


def _read_binary_mask(path: Path, expected_size: tuple[int, int] | None) -> np.ndarray:
    """A mask file -> uint8 {0, 1} at its own size, after checking readability, size and values.

    The size is judged from the header, before decoding: a small PNG can declare
    billions of pixels, and a mask must have its image's size anyway.
    Transparency is read by the data loader's rule (:func:`saal.data.imageio.mask_values`).
    """
    with open_lazily(path, path, what="mask") as im:
        if expected_size is not None and im.size != tuple(expected_size):
            raise DataError(f"mask is {im.size[0]}x{im.size[1]} but its image is {expected_size[0]}x"
                            f"{expected_size[1]} (width x height); draw it at the image's size", path)
        check_pixels(im, path, DEFAULT_MAX_PIXELS, what="mask")
        load_pixels(im, path)
        arr, _ = mask_values(im, path)
    # bincount is a single pass for 8-bit masks; other depths (1-bit, 16-bit, float) are rare
    values = np.flatnonzero(np.bincount(arr.ravel())) if arr.dtype == np.uint8 else np.unique(arr)
    top = next((v for v in (1, 255, 65535) if set(values.tolist()) <= {0, v}), None)
    if top is None:
        listed = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise DataError(f"mask is not binary: found {len(values)} values ({listed}); "
                        "expected 0 and 255 (or 0 and 1)", path)
    return (arr == top).astype(np.uint8)


def import_masks(masks_dir: str | os.PathLike, expected_ids: Iterable[str], *, image_size: int,
                 original_sizes: Mapping[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """Check and load one annotator mask per expected id -> ``id -> uint8 (S, S) {0, 1}``.

    Every problem is a :class:`DataError` naming the file (or the folder, for
    missing masks): files that belong to no expected id, two masks for one id,
    expected ids without a mask, unreadable images, a size different from
    ``original_sizes[id]`` (width, height) when given, values other than
    {0, 255} / {0, 1}. Hidden files (``.DS_Store``) are ignored; nothing is
    written into ``masks_dir``.
    """
    masks_dir = Path(masks_dir)
    expected = [str(i) for i in expected_ids]
    expected_set = set(expected)
    if not masks_dir.is_dir():
        raise DataError("masks folder not found", masks_dir)
    files = sorted(p for p in masks_dir.iterdir() if not p.name.startswith("."))
    owners = {p: _mask_owner(p.stem, expected_set) if p.is_file() else None for p in files}
    strays = [p for p, owner in owners.items() if owner is None]
    if strays:
        more = f" (also: {name_some([printable_name(p.name) for p in strays[1:]])})" if len(strays) > 1 else ""
        raise DataError(f"not the mask of a queried image (expected one of {ACCEPTED_NAMES}){more}",
                        printable_path(strays[0]))
    found: dict[str, Path] = {}
    for path, owner in owners.items():
        if path.suffix.lower() != ".png":
            raise DataError(f"mask of {owner} must be a PNG file (lossless), not "
                            f"{printable_name(path.suffix) or 'no extension'}", printable_path(path))
        if owner in found:
            raise DataError(f"two masks for image {owner}: {printable_name(found[owner].name)} and "
                            f"{printable_name(path.name)}; keep one", printable_path(path))
        found[owner] = path
    missing = [k for k in expected if k not in found]
    if missing:
        raise DataError(f"no mask for {len(missing)} of {len(expected)} queried images: {name_some(missing)} "
                        "(expected <id>_segmentation.png)", masks_dir)
    sizes = original_sizes or {}
    return {k: resize_mask(_read_binary_mask(found[k], sizes.get(k)), image_size) for k in expected}


def read_manifest(batch_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a batch's ``manifest.csv`` (DataError naming it if absent or malformed)."""
    path = Path(batch_dir) / MANIFEST
    try:
        rows = read_csv(path)
    except FileNotFoundError:
        raise DataError("not an annotation batch (no manifest.csv)", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest is not readable ({exc.__class__.__name__})", path) from None
    if rows and not set(REQUIRED_FIELDS) <= set(rows[0]):
        raise DataError(f"manifest lacks columns {', '.join(sorted(set(REQUIRED_FIELDS) - set(rows[0])))}", path)
    return rows


def import_batch(batch_dir: str | os.PathLike, *, image_size: int) -> dict[str, np.ndarray]:
    """Import the masks of a folder written by :func:`export_batch`, checked against its manifest."""
    batch_dir = Path(batch_dir)
    rows = read_manifest(batch_dir)
    try:
        sizes = {r["image_id"]: (int(r["width"]), int(r["height"])) for r in rows}
    except ValueError:
        raise DataError("manifest has a non-integer width or height", batch_dir / MANIFEST) from None
    return import_masks(batch_dir / "masks", [r["image_id"] for r in rows], image_size=image_size,
                        original_sizes=sizes)
