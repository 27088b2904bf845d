"""Which annotation tool a batch is exported for, and reading whatever comes back.

``folder`` is the plain batch (PNG masks drawn in any editor); ``labelstudio``
and ``cvat`` add that tool's files to the same folder. Whatever the tool, the
masks that come back go through the same checks (one per image of the batch,
binary, the image's size) and the same resize to the training size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...data.imageio import resize_mask
from ...errors import DataError, SaalError
from .folder import MANIFEST, FormatWriter, import_batch, read_manifest

FORMATS = ("folder", "labelstudio", "cvat")


def format_writer(fmt: str, batch_dir: str | os.PathLike, *, document_root: str | os.PathLike | None = None,
                  image_url: str | None = None) -> FormatWriter | None:
    """The writer that adds ``fmt``'s files to a batch that will live at ``batch_dir`` (None for ``folder``).

    ``document_root`` and ``image_url`` say how Label Studio finds the images
    (see :mod:`.labelstudio`); other formats ignore them.
    """
    if fmt == "folder":
        return None
    if fmt == "labelstudio":
        from .labelstudio import LabelStudioWriter

        return LabelStudioWriter(batch_dir, document_root=document_root, image_url=image_url)
    if fmt == "cvat":
        from .cvat import write_cvat_package

        return write_cvat_package
    raise SaalError(f"unknown annotation format {fmt!r}; choose one of {', '.join(FORMATS)}")


def is_batch_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a batch folder written by :func:`.folder.export_batch`."""
    return (Path(path) / MANIFEST).is_file()


def export_kind(path: str | os.PathLike) -> str:
    """``labelstudio`` or ``cvat``: which tool's export ``path`` is (DataError when neither)."""
    from .cvat import is_cvat_export
    from .labelstudio import is_labelstudio_export

    path = Path(path)
    if not path.exists():
        raise DataError("not found", path)
    if is_labelstudio_export(path):
        return "labelstudio"
    if is_cvat_export(path):
        return "cvat"
    raise DataError("neither an annotation batch folder (manifest.csv), a Label Studio JSON export (.json) nor "
                    "a CVAT 'Segmentation mask 1.1' export (.zip or its folder)", path)


def import_annotations_from(batch_dir: str | os.PathLike, *, image_size: int,
                            export: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Masks of the batch in ``batch_dir`` at the training size: from its ``masks/`` folder, or from ``export``.

    ``export`` is a Label Studio JSON export or a CVAT export of the batch's
    tasks; the images are matched by id through the batch's manifest.
    """
    if export is None:
        return import_batch(batch_dir, image_size=image_size)
    rows = read_manifest(batch_dir)
    if export_kind(export) == "labelstudio":
        from .labelstudio import read_labelstudio_export as read
    else:
        from .cvat import read_cvat_export as read
    masks = read(Path(export), rows)
    return {r["image_id"]: resize_mask(masks[r["image_id"]], image_size) for r in rows}
