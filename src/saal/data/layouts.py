"""Recognising a dataset folder's layout and pairing its images with their masks.

Every supported layout reduces to a list of *parts* -- an image folder, an
optional mask folder and a subset tag -- so pairing, duplicate detection and
the problem report are written once:

* ISIC 2017 / 2016 / 2018 as downloaded (training / validation / test parts,
  masks in the matching ``GroundTruth`` folder);
* ``images/`` + ``masks/`` matched by file stem;
* unlabeled: ``images/`` without ``masks/``, or a flat folder of images.

Nothing here decodes pixels: the result is a list of :class:`Item` plus the
pairing problems found, each as ``(path, reason)``. File names are checked
here too, so that a bad one is refused (or skipped) before anything is
trained: a name that is not UTF-8, and an image whose id could not name the
files of an annotation batch (:func:`.names.id_problem`, the rule the
annotation export applies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .imageio import is_image_file
from .names import id_problem, is_utf8, printable_name, printable_path, shown

GROUPS_FILE = "saal_synth_groups.csv"
MASK_SUFFIXES = ("_segmentation", "_mask", "_lesion")  # matched case-insensitively; a bare stem works too
IGNORED_IMAGE_SUFFIXES = ("_superpixels",)  # ISIC 2017 ships superpixel maps beside each image

# family -> (display name, [(subset, image folder, mask folder)])
OFFICIAL: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "isic2017": ("ISIC 2017", [
        ("train", "ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
        ("val", "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
        ("test", "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
    ]),
    "isic2016": ("ISIC 2016", [
        ("train", "ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        ("test", "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    ]),
    "isic2018": ("ISIC 2018", [
        ("train", "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
        ("val", "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
        ("test", "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
    ]),
}

SUPPORTED = ("an ISIC 2016/2017/2018 download (e.g. ISIC-2017_Training_Data/ + "
             "ISIC-2017_Training_Part1_GroundTruth/), images/ + masks/, images/ alone, or a folder of images")

Problem = tuple[str, str]  # (path, reason)


@dataclass(frozen=True)
class Part:
    subset: str
    image_dir: Path | None
    mask_dir: Path | None


@dataclass
class Layout:
    name: str  # isic2017 | isic2016 | isic2018 | images+masks | images | flat
    description: str
    root: Path
    parts: list[Part]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    id: str
    subset: str
    image: Path
    mask: Path | None


@dataclass
class Scan:
    """What a folder holds, before any decoding."""

    layout: Layout
    items: list[Item]
    labeled: bool
    problems: list[Problem]
    files: list[Path]  # every file the loaded data depends on (the cache fingerprint)


def _children(root: Path) -> dict[str, Path]:
    """Sub-folders by lower-case name, so that ``Images/`` or a re-cased download still match."""
    return {p.name.lower(): p for p in root.iterdir() if p.is_dir()}


def _official(root: Path, dirs: dict[str, Path]) -> Layout | None:
    found = []
    for family, (title, parts) in OFFICIAL.items():
        present = [Part(subset, dirs.get(img.lower()), dirs.get(gt.lower())) for subset, img, gt in parts]
        present = [p for p in present if p.image_dir is not None or p.mask_dir is not None]
        if present:
            found.append((family, title, present))
    if not found:
        return None
    if len(found) > 1:
        names = " and ".join(title for _, title, _ in found)
        raise DataError(f"holds both {names} folders; point at a folder with one dataset", root)
    family, title, parts = found[0]
    subsets = ", ".join(p.subset for p in parts)
    return Layout(family, f"{title} challenge layout ({subsets})", root, parts)


def detect_layout(root: Path) -> Layout:
    """Decide which supported layout ``root`` follows (DataError naming the folder if none)."""
    if not root.exists():
        raise DataError("data folder does not exist", root)
    if not root.is_dir():
        raise DataError("not a folder (give the folder that holds the images)", root)
    dirs = _children(root)
    layout = _official(root, dirs)
    if layout is not None:
        return layout
    if "images" in dirs:
        masks = dirs.get("masks")
        if masks is not None:
            return Layout("images+masks", "images/ + masks/ matched by file stem", root,
                          [Part("", dirs["images"], masks)])
        return Layout("images", "images/ without masks/ (unlabeled)", root, [Part("", dirs["images"], None)])
    if any(is_image_file(p) for p in root.iterdir()):
        layout = Layout("flat", "a flat folder of images (unlabeled)", root, [Part("", root, None)])
        official_dirs = {img.lower() for _, parts in OFFICIAL.values() for _, img, _ in parts}
        if root.name.lower() in official_dirs:
            layout.warnings.append(f"{root.name} is one part of an ISIC download: point at its parent "
                                   "folder to load the masks from the GroundTruth folder beside it")
        return layout
    raise DataError(f"no images found; expected {SUPPORTED}", root)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if is_image_file(p) and not p.stem.lower().endswith(IGNORED_IMAGE_SUFFIXES))


def _usable_names(files: list[Path], *, images: bool) -> tuple[list[Path], list[Problem], set[str]]:
    """Split off files whose names saal cannot use; returns the rest, the problems and the refused image ids."""
    kept: list[Path] = []
    problems: list[Problem] = []
    refused: set[str] = set()
    for f in files:
        why = None if is_utf8(f.name) else "file name is not valid UTF-8 (shown with \\x escapes); rename the file"
        if why is None and images and (bad_id := id_problem(f.stem)) is not None:
            why = (f"image id {shown(f.stem)} cannot name the files of an annotation batch ({bad_id}); "
                   "rename the file")
        if why is None:
            kept.append(f)
        else:
            problems.append((printable_path(f), why))
            refused.add(f.stem)
    return kept, problems, refused


def mask_id(stem: str) -> str:
    """The image id a mask file belongs to: its stem without a known mask suffix."""
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _group_by_id(files: list[Path], key) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in files:
        out.setdefault(key(f.stem), []).append(f)
    return out


def scan_layout(layout: Layout, *, with_masks: bool = True) -> Scan:
    """Pair images with masks over all parts and list every pairing problem.

    A set counts as labeled when any mask file exists; then every image needs
    exactly one mask and every mask an image. An id may appear once over the
    whole dataset (a stem with two extensions, or an id in two subsets, would
    make the split and the labels ambiguous): all copies are reported.
    ``with_masks=False`` ignores mask folders (an unlabeled load of a labeled set).
    """
    problems: list[Problem] = []
    files: list[Path] = []
    images_by_part = []
    masks_by_part = []
    for part in layout.parts:
        imgs = _image_files(part.image_dir) if part.image_dir is not None else []
        masks = _image_files(part.mask_dir) if (with_masks and part.mask_dir is not None) else []
        files += imgs + masks
        imgs, bad_images, refused = _usable_names(imgs, images=True)
        masks, bad_masks, _ = _usable_names(masks, images=False)
        problems += bad_images + bad_masks
        # the mask of a refused image is left out silently: the image's problem says what to fix
        masks = [m for m in masks if mask_id(m.stem) not in refused]
        images_by_part.append(_group_by_id(imgs, lambda s: s))
        masks_by_part.append(_group_by_id(masks, mask_id))
    labeled = any(masks_by_part)
    if with_masks and not labeled and any(p.mask_dir is not None for p in layout.parts):
        empty = ", ".join(p.mask_dir.name for p in layout.parts if p.mask_dir is not None)
        layout.warnings.append(f"mask folder {empty} holds no masks: loading as unlabeled")

    # an id's image files over all parts, to find duplicates across subsets too
    everywhere: dict[str, list[Path]] = {}
    for by_id in images_by_part:
        for k, paths in by_id.items():
            everywhere.setdefault(k, []).extend(paths)

    items: list[Item] = []
    for part, images, masks in zip(layout.parts, images_by_part, masks_by_part):
        for k in sorted(images):
            copies = everywhere[k]
            if len(copies) > 1:
                for c in images[k]:
                    others = ", ".join(str(o) for o in copies if o != c)
                    problems.append((str(c), f"duplicate image id {k!r}: also {others}"))
                continue
            image = images[k][0]
            if not labeled:
                items.append(Item(k, part.subset, image, None))
                continue
            found = masks.get(k, [])
            if not found:
                where = part.mask_dir if part.mask_dir is not None else "(no mask folder for this part)"
                problems.append((str(image), f"image has no mask (looked in {where} for {k}.png, "
                                             f"{k}_segmentation.png, {k}_mask.png, ...)"))
            elif len(found) > 1:
                problems.append((str(found[0]), f"image {image.name} has {len(found)} masks: "
                                                + ", ".join(f.name for f in found)))
            else:
                items.append(Item(k, part.subset, image, found[0]))
        for k in sorted(set(masks) - set(images)):
            for m in masks[k]:
                where = part.image_dir if part.image_dir is not None else "(no image folder for this part)"
                problems.append((str(m), f"mask has no image (no image with id {k!r} in {where})"))

    if layout.name == "flat":
        lookalikes = [printable_name(p.name) for p in layout.parts[0].image_dir.iterdir()
                      if is_image_file(p) and mask_id(p.stem) != p.stem]
        if lookalikes:
            layout.warnings.append(f"{len(lookalikes)} file(s) named like masks (e.g. {lookalikes[0]}) are loaded "
                                   "as images; put images in images/ and masks in masks/ to pair them")
    groups = layout.root / GROUPS_FILE
    if groups.is_file():
        files.append(groups)
    return Scan(layout, items, labeled, problems, files)
