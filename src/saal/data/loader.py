"""``load_dataset``: a user's folder in, a preprocessed :class:`LesionData` out.

The steps are kept apart so that each can be tested and reused: recognise the
layout and pair files (:mod:`.layouts`, no decoding), stop early on pairing
problems unless ``skip_bad``, then take the arrays from the cache (:mod:`.cache`)
or decode them (:mod:`.preprocess`) and store them for next time. Nothing is
ever written into the data folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import io as saal_io
from ..errors import DataError, name_some
from . import cache as cache_mod
from .dataset import LesionData
from .imageio import DEFAULT_MAX_PIXELS
from .layouts import GROUPS_FILE, SUPPORTED, Problem, detect_layout, scan_layout
from .preprocess import Preprocessing, decode_items


@dataclass
class LoadResult:
    data: LesionData
    layout: str  # isic2017 | isic2016 | isic2018 | images+masks | images | flat
    layout_description: str
    root: Path
    original_sizes: list[tuple[int, int]]  # (width, height) of each loaded image, in data order
    skipped: list[Problem] = field(default_factory=list)  # (path, reason) of each left-out file
    warnings: list[str] = field(default_factory=list)
    cache_hit: bool = False
    cache_path: Path | None = None


def read_groups(root: Path, ids: list[str]) -> list[str] | None:
    """Sub-population tags written by the synthetic generator (``image_id,group``), if present."""
    path = root / GROUPS_FILE
    if not path.is_file():
        return None
    try:
        rows = saal_io.read_csv(path)
    except (OSError, UnicodeDecodeError) as ex:
        raise DataError(f"cannot read ({ex})", path) from None
    if rows and not {"image_id", "group"} <= set(rows[0]):
        raise DataError(f"needs the columns image_id,group; found {','.join(rows[0])}", path)
    tags = {r["image_id"]: r["group"] for r in rows}
    return [tags.get(i, "") for i in ids]


def _transparency_note(paths: list[str]) -> list[str]:
    """The warning (none or one) for masks that held transparent pixels: read by a rule, so worth a look."""
    if not paths:
        return []
    return [f"{len(paths)} mask(s) have transparent pixels: {name_some(paths, 3)}; read as transparent = "
            "background, and where the visible pixels share one colour, the opaque part is the lesion (check "
            "them on a contact sheet: saal data inspect --sheet)"]


def _first_error(problems: list[Problem], hint: str = "") -> DataError:
    path, reason = problems[0]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return DataError(f"{reason}{more}{hint}", path)


SKIP_HINT = "; fix it, or pass skip_bad=True (--skip-bad) to leave bad files out"


def load_dataset(path: str | os.PathLike, *, image_size: int = 64, grayscale: bool = True,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True, skip_bad: bool = False,
                 require_masks: bool | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 workers: int | None = None, progress: bool = True) -> LoadResult:
    """Load and preprocess the dataset in ``path`` (any supported layout).

    ``require_masks``: ``True`` refuses an unlabeled folder, ``False`` ignores
    masks (images only), ``None`` takes what the folder holds. ``skip_bad``
    leaves out unreadable, unpaired or duplicate files and lists them in
    ``result.skipped``; otherwise the first one raises :class:`DataError`.
    ``max_pixels`` bounds an image's header size before it is decoded.
    """
    root = Path(path).expanduser()
    prep = Preprocessing(int(image_size), bool(grayscale), int(max_pixels))
    layout = detect_layout(root)
    scan = scan_layout(layout, with_masks=require_masks is not False)
    if require_masks and not scan.labeled:
        raise DataError(f"no masks found ({layout.description}), but a labeled set is needed: use "
                        "images/ + masks/ or an ISIC download with its GroundTruth folders", root)
    if not scan.items and not scan.problems:
        raise DataError(f"no images found; expected {SUPPORTED}", root)
    if scan.problems and not skip_bad:
        raise _first_error(scan.problems, SKIP_HINT)
    warnings = list(layout.warnings)

    key = {**prep.to_dict(), "with_masks": require_masks is not False}
    folder = None
    if use_cache:
        folder = cache_mod.entry_folder(cache_mod.cache_root_for(root, cache_dir), root, key)
        source = cache_mod.fingerprint(root, scan.files)
        entry, why = cache_mod.read_entry(folder, key=key, source=source)
        if entry is not None:
            m = entry.manifest
            if m["skipped"] and not skip_bad:
                raise _first_error([tuple(p) for p in m["skipped"]], SKIP_HINT)
            return _result(root, layout, m["ids"], m["sources"], m["subsets"], entry.images, entry.masks,
                           [tuple(s) for s in m["original_sizes"]], [tuple(p) for p in m["skipped"]],
                           warnings + _transparency_note(m["transparent_masks"]), cache_hit=True, cache_path=folder)
        if why.startswith("cache entry"):
            warnings.append(why)

    decoded = decode_items(scan.items, prep, labeled=scan.labeled, skip_bad=skip_bad, workers=workers,
                           progress=progress)
    skipped = scan.problems + decoded.problems
    if not decoded.kept:
        raise _first_error(skipped, f"; none of the {len(scan.items)} image(s) could be used")
    items = [scan.items[i] for i in decoded.kept]
    ids = [it.id for it in items]
    sources = [it.image.relative_to(root).as_posix() for it in items]
    subsets = [it.subset for it in items]
    images, masks = decoded.images, decoded.masks
    if folder is not None:
        manifest = {"key": key, "source": source, "root": str(root.resolve()), "layout": layout.name,
                    "ids": ids, "sources": sources, "subsets": subsets,
                    "original_sizes": decoded.original_sizes, "skipped": skipped,
                    "transparent_masks": decoded.transparent_masks}
        try:
            entry = cache_mod.write_entry(folder, images, masks, manifest)
            images, masks = entry.images, entry.masks
        except OSError as ex:
            warnings.append(f"could not write the cache at {folder} ({ex}); continuing without it")
            folder = None
    return _result(root, layout, ids, sources, subsets, images, masks, decoded.original_sizes, skipped,
                   warnings + _transparency_note(decoded.transparent_masks), cache_hit=False, cache_path=folder)


def _result(root, layout, ids, sources, subsets, images: np.ndarray, masks: np.ndarray | None, sizes,
            skipped, warnings, *, cache_hit: bool, cache_path: Path | None) -> LoadResult:
    # cached arrays are read-only memory maps; make fresh ones read-only too so that
    # code writing into them fails the same way whether or not the cache was used
    images.flags.writeable = False
    if masks is not None:
        masks.flags.writeable = False
    data = LesionData(ids=list(ids), images=images, masks=masks,
                      sources=[str(root.resolve() / s) for s in sources], subsets=list(subsets),
                      groups=read_groups(root, list(ids)))
    return LoadResult(data, layout.name, layout.description, root, list(sizes), list(skipped), warnings,
                      cache_hit, cache_path)
