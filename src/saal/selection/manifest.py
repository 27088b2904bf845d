"""The selection manifest: the list an annotator (or the next stage) works from.

A CSV with one row per chosen image, in selection order::

    rank,image_id,path,cluster,distance,strategy
    1,ISIC_0000123,/data/isic/ISIC_0000123.jpg,3,0.8125,saal

``rank`` counts from 1; ``path`` is the image's original file; ``cluster`` is
-1 for strategies without clusters; ``distance`` is the strategy's distance
(see :class:`~saal.selection.base.Selection`) and is left empty when it has
none. Annotating the first ``m`` rows gives a valid smaller selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from saal.errors import SelectionError
from saal.io import read_csv, write_csv
from saal.selection.base import Selection

COLUMNS = ["rank", "image_id", "path", "cluster", "distance", "strategy"]


@dataclass(frozen=True)
class ManifestRow:
    rank: int
    image_id: str
    path: str
    cluster: int
    distance: float  # nan when the strategy has no distance
    strategy: str


def write_selection_manifest(path: str | Path, selection: Selection, ids: Sequence[str],
                             sources: Sequence[str] | None = None) -> Path:
    """Write ``selection`` as a manifest CSV (atomically); ``ids``/``sources`` are the pool's, row-aligned."""
    n = len(ids)
    if sources is not None and len(sources) and len(sources) != n:
        raise SelectionError(f"{path}: {len(sources)} source paths for {n} pool images")
    if len(selection) and int(selection.indices.max()) >= n:
        raise SelectionError(f"{path}: selection refers to pool row {int(selection.indices.max())} "
                             f"but only {n} image ids were given")
    rows = []
    for rank, (i, c, d) in enumerate(zip(selection.indices, selection.cluster, selection.distance), start=1):
        rows.append({
            "rank": rank,
            "image_id": ids[int(i)],
            "path": sources[int(i)] if sources is not None and len(sources) else "",
            "cluster": int(c),
            "distance": "" if math.isnan(d) else f"{float(d):.6g}",
            "strategy": selection.strategy,
        })
    return write_csv(path, rows, COLUMNS)


def read_selection_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a manifest in rank order; a malformed file is a one-line :class:`SelectionError`."""
    path = Path(path)
    if not path.is_file():
        raise SelectionError(f"{path}: selection manifest not found")
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    if header != COLUMNS:
        raise SelectionError(f"{path}: expected columns {','.join(COLUMNS)}")
    out: list[ManifestRow] = []
    for line, r in enumerate(read_csv(path), start=2):
        try:
            row = ManifestRow(int(r["rank"]), r["image_id"], r["path"], int(r["cluster"]),
                              float(r["distance"]) if r["distance"] else math.nan, r["strategy"])
        except (TypeError, ValueError):
            raise SelectionError(f"{path}: line {line} is malformed") from None
        if row.rank != len(out) + 1:
            raise SelectionError(f"{path}: line {line} has rank {row.rank}, expected {len(out) + 1}")
        out.append(row)
    ids = [r.image_id for r in out]
    if len(set(ids)) != len(ids):
        raise SelectionError(f"{path}: an image is listed more than once")
    return out
