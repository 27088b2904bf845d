"""CVAT round trip: a task package with the model's masks, and CVAT's "Segmentation mask 1.1" export read back.

CVAT's "Segmentation mask 1.1" format is the Pascal VOC segmentation layout::

    labelmap.txt                    one label a line: ``name:r,g,b:parts:actions`` ('#' starts a comment)
    ImageSets/Segmentation/default.txt   the image names without extension, one a line
    SegmentationClass/<name>.png    RGB, each pixel the colour of its label (background black)
    SegmentationObject/<name>.png   RGB, each object instance a colour of the VOC palette

where ``<name>`` is the image's file name without extension, which is how CVAT
matches a mask to a frame of the task; our batch images are ``<image_id>.<ext>``,
so a mask's file stem is the image id.

:func:`write_cvat_package` writes ``<batch>/cvat/``: ``labelmap.txt`` (background
black, ``lesion`` dark red), ``labels.json`` (the same label for CVAT's "Raw"
label editor), and, when a model exists, ``preannotations.zip`` in the layout
above with the model's proposed lesion as one object per image, which CVAT's
"Upload annotations" turns into editable polygons (or masks). A ``README.txt``
lists the steps.

:func:`read_cvat_export` reads the zip (or its extracted folder) CVAT's "Export
task dataset" gives, decides lesion / background from the export's own
``labelmap.txt`` (CVAT writes the task's label colours there, which need not be
ours), and is as strict as the PNG import: every problem is a
:class:`~saal.errors.DataError` naming the file. Decisions about what CVAT
users trip over:

* **Lesion = every pixel of the ``lesion`` label** in ``SegmentationClass``
  (name matched case-insensitively): several polygons or instances of one
  lesion are one mask; ``SegmentationObject`` (instances) is not read.
* **Holes are filled.** CVAT polygons cannot have holes, so an annotator who
  wants one draws a background polygon on top, and gaps between touching
  pieces leave enclosed background; a dermoscopic lesion is one filled region,
  so background fully enclosed by lesion becomes lesion
  (``scipy.ndimage.binary_fill_holes``). Background reaching the image border
  stays background.
* **Colours**: a pixel colour the labelmap does not declare is an error; a
  declared label other than background and lesion is an error only where its
  colour is used (CVAT lists every task label, drawn or not). Grayscale masks
  are read as label indices in labelmap order, as CVAT's importer does.
* **Every image needs a mask file.** CVAT writes none for an image without any
  shape, so a missing file is an error ("no mask for ..."): annotators must
  outline every lesion. An all-background mask file (for instance a
  ``background`` shape drawn on an image without lesion) is accepted as "no
  lesion".
* A mask whose size differs from its image is an error; so are masks of images
  not in the batch and two masks for one image.
* The export is found at the top of the zip/folder or one folder down (a
  re-zipped export); macOS ``__MACOSX`` entries and hidden files are ignored.
* **Untrusted input.** A zip member is read only when its declared size is
  within :data:`MAX_LABELMAP_BYTES` / :data:`MAX_MASK_BYTES`, and never more
  than that many bytes are inflated (a 1 MB zip can inflate to gigabytes); a
  mask's header size is compared with its image's (and
  :data:`MAX_MASK_PIXELS`) before its pixels are decoded; password-protected
  zips are refused; messages quote at most a few dozen characters of the
  export's text. The compression ratio is not judged: a blank mask PNG stored
  uncompressed deflates a thousandfold and is harmless, and the size caps
  bound the memory anyway.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from ...data.imageio import DEFAULT_MAX_PIXELS, check_pixels, load_pixels, open_lazily
from ...data.names import cut, printable_path, shown
from ...errors import DataError, name_some
from ...io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from .preannotate import Preannotations

CVAT_DIR = "cvat"  # sub-folder of an exported batch that holds the package
LESION_LABEL = "lesion"
BACKGROUND_LABEL = "background"
LABELMAP = "labelmap.txt"
LABELS_JSON = "labels.json"
PREANNOTATIONS_ZIP = "preannotations.zip"
FORMAT_NAME = "Segmentation mask 1.1"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
IMAGESET = "ImageSets/Segmentation/default.txt"
#: Largest ``labelmap.txt`` read: CVAT writes one short line per label.
MAX_LABELMAP_BYTES = 1 << 20
#: Largest mask PNG read. CVAT's masks are flat colours that PNG packs to kilobytes; even an uncompressed
#: RGB mask of a 20-megapixel photo stays under this.
MAX_MASK_BYTES = 64 << 20
#: Largest mask decoded, in pixels (besides matching its image's size): the data loader's limit.
MAX_MASK_PIXELS = DEFAULT_MAX_PIXELS

Colour = tuple[int, int, int]
BACKGROUND_COLOUR: Colour = (0, 0, 0)
LESION_COLOUR: Colour = (128, 0, 0)  # label 1 of the Pascal VOC palette
INSTANCE_COLOUR: Colour = (128, 0, 0)  # instance 1 of the Pascal VOC palette (SegmentationObject)

_README = """\
CVAT task package: {n} images{pre}
=========================================

1. CVAT > Tasks > "+" > Create a new task. Labels: add one label named
   "{lesion}" (the "Raw" tab accepts the content of labels.json). Select files:
   every image in ../images/ (keep the file names: CVAT matches masks to images
   by name).
2. {step2}
3. Annotate: outline the lesion of EVERY image with the "{lesion}" label
   (polygon, brush or mask tools). Several pieces are fine; holes are filled on
   import. An image without any shape gets no mask and is refused on import.
4. Actions > Export task dataset > format "{fmt}" (images not needed).
5. saal annotate import <the exported zip> --run <the run directory>
"""
_STEP2_PRE = (f'Pre-annotations: Actions > Upload annotations > format "{FORMAT_NAME}" >\n'
              f"   {PREANNOTATIONS_ZIP} (the model's proposed outlines, to correct rather than draw).")
_STEP2_NONE = "(No pre-annotations: no model yet. Draw from scratch.)"


# -- export -----------------------------------------------------------------------------
def _labelmap_text() -> str:
    lines = ["# label:color_rgb:parts:actions"]
    for name, colour in ((BACKGROUND_LABEL, BACKGROUND_COLOUR), (LESION_LABEL, LESION_COLOUR)):
        lines.append(f"{name}:{','.join(str(c) for c in colour)}::")
    return "\n".join(lines) + "\n"


def _paint(mask: np.ndarray, colour: Colour) -> bytes:
    """A {0, 1} mask as an RGB PNG: ``colour`` where 1, black elsewhere."""
    rgb = np.zeros(mask.shape + (3,), dtype=np.uint8)
    rgb[mask.astype(bool)] = colour
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def _preannotations_zip(rows: Sequence[Mapping[str, str]], preannotations: "Preannotations") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(LABELMAP, _labelmap_text())
        zf.writestr(IMAGESET, "".join(f"{r['image_id']}\n" for r in rows))
        for row in rows:
            image_id = str(row["image_id"])
            mask = preannotations.mask(image_id, int(row["width"]), int(row["height"]))
            zf.writestr(f"{CLASS_DIR}/{image_id}.png", _paint(mask, LESION_COLOUR))
            zf.writestr(f"{OBJECT_DIR}/{image_id}.png", _paint(mask, INSTANCE_COLOUR))
    return buf.getvalue()


def write_cvat_package(batch_dir: Path, rows: Sequence[Mapping[str, str]],
                       preannotations: "Preannotations | None") -> None:
    """Write ``batch_dir/cvat/``: what a CVAT user uploads.

    ``rows`` are the batch's manifest rows (``image_id``, ``image_file``,
    ``width``, ``height``, ...); the images are already in ``batch_dir/images/``.
    Writes ``labelmap.txt``, ``labels.json`` and ``README.txt``, and with
    ``preannotations`` also ``preannotations.zip`` ("Segmentation mask 1.1") with
    the proposed lesion mask of each image at the image's own size.
    """
    out = Path(batch_dir) / CVAT_DIR
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / LABELMAP, _labelmap_text())
    labels = [{"name": LESION_LABEL, "color": "#{:02x}{:02x}{:02x}".format(*LESION_COLOUR), "type": "any",
               "attributes": []}]
    atomic_write_text(out / LABELS_JSON, json.dumps(labels, indent=2) + "\n")
    if preannotations is not None:
        atomic_write_bytes(out / PREANNOTATIONS_ZIP, _preannotations_zip(rows, preannotations))
        pre = f", pre-annotated by model {preannotations.model_version}"
    else:
        (out / PREANNOTATIONS_ZIP).unlink(missing_ok=True)  # a stale one would propose another model's outlines
        pre = ""
    atomic_write_text(out / "README.txt", _README.format(
        n=len(rows), pre=pre, lesion=LESION_LABEL, fmt=FORMAT_NAME,
        step2=_STEP2_PRE if preannotations is not None else _STEP2_NONE))


# -- reading an export ------------------------------------------------------------------
class _Source:
    """The files of an export, zip or folder, by relative POSIX path (hidden and ``__MACOSX`` entries left out)."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
                raise DataError(f"not a readable zip file ({exc.__class__.__name__})", path) from None
            names = [i.filename for i in self.zip.infolist() if not i.is_dir()]
        self.names = sorted(n for n in names
                            if not any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(n).parts))

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def where(self, name: str) -> str:
        """The path to show in messages (inside a zip: ``EXPORT.zip/<member>``), printable."""
        return printable_path(self.path / name)

    def read(self, name: str, limit: int) -> bytes:
        """A member's bytes, refused when over ``limit`` before anything is inflated or read."""
        where = self.where(name)
        try:
            if self.zip is not None:
                info = self.zip.getinfo(name)
                if info.flag_bits & 0x1:
                    raise DataError("is encrypted (a password-protected zip); export the task from CVAT again, "
                                    "or zip the export without a password", where)
                size = info.file_size
            else:
                size = (self.path / name).stat().st_size
            if size > limit:
                raise DataError(f"is {size:,} bytes, over the limit of {limit:,} for this file (a zip bomb?)", where)
            # a zip member inflates to its declared size at most; a file on disk may have grown since stat()
            with (self.zip.open(info) if self.zip is not None else (self.path / name).open("rb")) as f:
                data = f.read(limit + 1)
        except DataError:
            raise
        except (OSError, EOFError, KeyError, RuntimeError, NotImplementedError, ValueError, zlib.error,
                zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read ({exc.__class__.__name__})", where) from None
        if len(data) > limit:
            raise DataError(f"is over the limit of {limit:,} bytes for this file", where)
        return data

    def root(self) -> str | None:
        """The prefix ('' or 'folder/') under which ``SegmentationClass/`` lies, if exactly one at depth <= 1."""
        roots = set()
        for name in self.names:
            parts = PurePosixPath(name).parts
            for depth in (0, 1):
                if len(parts) > depth + 1 and parts[depth] == CLASS_DIR:
                    roots.add("".join(p + "/" for p in parts[:depth]))
        return next(iter(roots)) if len(roots) == 1 else None


def is_cvat_export(path: Path) -> bool:
    """Whether ``path`` (a .zip file or a folder) looks like a CVAT Segmentation-mask export."""
    path = Path(path)
    if not (path.is_dir() or (path.is_file() and zipfile.is_zipfile(path))):
        return False
    try:
        source = _Source(path)
    except DataError:
        return False
    try:
        return source.root() is not None
    finally:
        source.close()


def _parse_labelmap(text: str, where: str) -> list[tuple[str, Colour | None]]:
    """``labelmap.txt`` -> [(name, colour or None)] in file order."""
    labels: list[tuple[str, Colour | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 4:
            raise DataError(f"line {number} {shown(line)}: expected 'label:r,g,b:parts:actions' (4 fields)", where)
        name, colour = fields[0].strip(), fields[1].strip()
        if not name:
            raise DataError(f"line {number} {shown(line)}: no label name", where)
        if not colour:
            labels.append((name, None))
            continue
        try:
            rgb = tuple(int(c) for c in colour.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise DataError(f"line {number}: label {shown(name)} has colour {shown(colour)}, expected 'r,g,b' "
                            "in 0..255", where)
        labels.append((name, rgb))  # type: ignore[arg-type]
    return labels


def _colour_roles(labels: list[tuple[str, Colour | None]], where: str) -> tuple[dict[Colour, str], dict[Colour, str]]:
    """Colour -> 'background' / 'lesion' for the two we use, and colour -> label name for the others."""
    roles: dict[Colour, str] = {}
    others: dict[Colour, str] = {}
    names = {n.lower() for n, _ in labels}
    if LESION_LABEL not in names:
        listed = name_some([cut(n, 40) for n, _ in labels]) or "none"
        raise DataError(f"declares no '{LESION_LABEL}' label (labels: {listed}); the CVAT task's label must be "
                        f"named '{LESION_LABEL}'", where)
    if BACKGROUND_LABEL not in names:  # CVAT's implicit background is black
        roles[BACKGROUND_COLOUR] = BACKGROUND_LABEL
    for name, colour in labels:
        role = name.lower() if name.lower() in (BACKGROUND_LABEL, LESION_LABEL) else None
        if colour is None:
            raise DataError(f"label {shown(name)} has no colour; export the task again from CVAT "
                            f"('{FORMAT_NAME}' writes every label's colour)", where)
        if role is not None:
            if roles.get(colour, role) != role:
                raise DataError(f"'{LESION_LABEL}' and '{BACKGROUND_LABEL}' have the same colour "
                                f"{_show(colour)}; give the lesion label another colour in CVAT", where)
            roles[colour] = role
        else:
            others.setdefault(colour, name)
    for colour, name in others.items():
        if colour in roles:
            raise DataError(f"label {shown(name)} has the colour {_show(colour)} of '{roles[colour]}'; "
                            "masks cannot tell them apart", where)
    return roles, others


def _show(colour: Colour) -> str:
    return f"RGB({colour[0]},{colour[1]},{colour[2]})"


def _decode(data: bytes, where: str, size: tuple[int, int], labels: list[tuple[str, Colour | None]],
            roles: Mapping[Colour, str], others: Mapping[Colour, str]) -> np.ndarray:
    """One SegmentationClass PNG -> uint8 {0, 1} lesion mask (holes not yet filled)."""
    # the header only: the sizes are checked before anything is decoded
    with open_lazily(io.BytesIO(data), where, what="mask") as im:
        if im.format != "PNG":
            raise DataError(f"mask must be a PNG file (lossless), not {im.format or 'unknown format'}", where)
        if im.size != tuple(size):
            raise DataError(f"mask is {im.size[0]}x{im.size[1]} but its image is {size[0]}x{size[1]} "
                            "(width x height); was the image resized or rotated in CVAT?", where)
        check_pixels(im, where, MAX_MASK_PIXELS, what="mask")
        load_pixels(im, where)
        img = im.copy()
    if img.mode in ("L", "1", "LA"):
        # grayscale: the value is the label's line index in labelmap.txt (CVAT's rule for 1-channel masks)
        index = np.asarray(img.convert("L"))
        used = np.flatnonzero(np.bincount(index.ravel(), minlength=256))
        lesion = np.zeros(index.shape, dtype=bool)
        for value in used.tolist():
            if value >= len(labels):
                raise DataError(f"grayscale value {value} names no label: labelmap.txt has {len(labels)} labels "
                                "(a 1-channel mask holds label indices)", where)
            name = labels[value][0]
            if name.lower() == LESION_LABEL:
                lesion |= index == value
            elif name.lower() != BACKGROUND_LABEL:
                raise DataError(f"uses label {shown(name)} (value {value}); only '{LESION_LABEL}' and "
                                f"'{BACKGROUND_LABEL}' belong in a lesion mask", where)
        return lesion.astype(np.uint8)
    if img.mode not in ("RGB", "RGBA", "P", "PA"):
        raise DataError(f"unexpected PNG mode {img.mode}; CVAT writes RGB masks", where)
    rgb = np.asarray(img.convert("RGB")).astype(np.uint32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    lesion = np.zeros(codes.shape, dtype=bool)
    for code in np.unique(codes).tolist():
        colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
        role = roles.get(colour)
        if role == LESION_LABEL:
            lesion |= codes == code
        elif role is None:
            count = int((codes == code).sum())
            if colour in others:
                raise DataError(f"uses label {shown(others[colour])} (colour {_show(colour)}, {count} pixels); only "
                                f"'{LESION_LABEL}' and '{BACKGROUND_LABEL}' belong in a lesion mask: relabel "
                                "or delete those shapes in CVAT", where)
            raise DataError(f"has colour {_show(colour)} ({count} pixels) that labelmap.txt does not declare; "
                            "was the mask edited outside CVAT?", where)
    return lesion.astype(np.uint8)


def read_cvat_export(path: Path, rows: Sequence[Mapping[str, str]]) -> dict[str, np.ndarray]:
    """``image_id -> uint8 {0, 1}`` mask at the image's own size (``width x height`` of ``rows``).

    ``path`` is CVAT's "Segmentation mask 1.1" export of the task (the zip, or
    the folder it was extracted to). Every problem raises :class:`DataError`
    naming the file; see the module docstring for the rules (lesion pixels of
    all shapes merged, holes filled, every image needs its mask file).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("CVAT export not found", path)
    try:
        sizes = {str(r["image_id"]): (int(r["width"]), int(r["height"])) for r in rows}
    except (KeyError, ValueError):
        raise DataError("batch manifest has a row without an integer width and height") from None
    source = _Source(path)
    try:
        root = source.root()
        if root is None:
            raise DataError(f"not a CVAT '{FORMAT_NAME}' export: no {CLASS_DIR}/ folder at the top or one "
                            f"folder down (export the task with format '{FORMAT_NAME}')", path)
        labelmap_name = root + LABELMAP
        if labelmap_name not in source.names:
            raise DataError(f"no {LABELMAP} in the export: cannot tell the lesion colour (export the task with "
                            f"format '{FORMAT_NAME}')", source.where(labelmap_name))
        where = source.where(labelmap_name)
        try:
            labels = _parse_labelmap(source.read(labelmap_name, MAX_LABELMAP_BYTES).decode("utf-8-sig"), where)
        except UnicodeDecodeError:
            raise DataError("not a text file", where) from None
        roles, others = _colour_roles(labels, where)

        prefix = root + CLASS_DIR + "/"
        found: dict[str, str] = {}
        strays: list[str] = []
        for name in source.names:
            if not name.startswith(prefix):
                continue
            owner = PurePosixPath(name).stem  # CVAT names a mask after its image, without extension
            if owner not in sizes:
                strays.append(name)
            elif PurePosixPath(name).suffix.lower() != ".png":
                raise DataError(f"mask of {owner} must be a PNG file", source.where(name))
            elif owner in found:
                raise DataError(f"two masks for image {owner}: {cut(found[owner])} and {cut(name)}", source.where(name))
            else:
                found[owner] = name
        if strays:
            more = f" (also: {name_some([cut(n) for n in strays[1:]])})" if len(strays) > 1 else ""
            raise DataError(f"not the mask of an image of this batch (CVAT names masks after the image files "
                            f"<image_id>.<ext>; were the images renamed?){more}", source.where(strays[0]))
        missing = [k for k in sizes if k not in found]
        if missing:
            raise DataError(f"no mask for {len(missing)} of {len(sizes)} images: {name_some(missing)}. CVAT "
                            "writes no mask for an image without any shape: outline the lesion of every image",
                            source.where(prefix))
        masks = {}
        for image_id, size in sizes.items():
            name = found[image_id]
            lesion = _decode(source.read(name, MAX_MASK_BYTES), source.where(name), size, labels, roles, others)
            masks[image_id] = ndimage.binary_fill_holes(lesion).astype(np.uint8)
        return masks
    finally:
        source.close()
