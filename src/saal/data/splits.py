"""The pool / test split, made once per run and kept as two CSV files of ids.

``random`` mode follows the paper: the 2000 ISIC 2017 training images are
shuffled with a seed and cut into a 1600-image pool (where annotation is
simulated) and a 400-image test set. ``official`` mode keeps the challenge's
own parts: pool from "train", test from "test" (or "val" when there is no test
part). The ids are shuffled from their sorted order, so the split depends only
on the set of ids and the seed, never on the order files were listed in.

A run directory holds ``split/pool.csv`` and ``split/test.csv`` (one column,
``image_id``). Saving refuses to replace a different split: results computed on
one split must never be silently mixed with another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import io as saal_io
from ..errors import DataError, SaalError
from .dataset import LesionData

MODES = ("random", "official")


@dataclass(frozen=True)
class Split:
    pool: list[str]
    test: list[str]

    def __post_init__(self):
        overlap = sorted(set(self.pool) & set(self.test))
        if overlap:
            raise SaalError(f"split is invalid: {len(overlap)} id(s) are in both pool and test "
                            f"(first: {overlap[0]})")


def _take(ids: Sequence[str], size: int | None, rng: np.random.Generator) -> list[str]:
    ids = sorted(ids)
    if size is None or size == len(ids):
        return ids
    order = rng.permutation(len(ids))[:size]
    return sorted(ids[i] for i in order)


def _check_size(name: str, size: int | None) -> None:
    if size is not None and int(size) < 1:
        raise SaalError(f"{name} must be at least 1, got {size}")


def make_split(data: LesionData, *, test_size: int | None = None, pool_size: int | None = None,
               seed: int = 0, mode: str = "random") -> Split:
    """Split ``data``'s ids into pool and test (deterministic for a given seed).

    ``random``: ``test_size`` ids for test, then ``pool_size`` of the rest for the
    pool (``None``: all the rest). ``official``: pool from the "train" subset,
    test from "test" (else "val"); the sizes, when given, subsample each part.
    """
    _check_size("pool_size", pool_size)
    _check_size("test_size", test_size)
    rng = np.random.default_rng(seed)
    if mode == "random":
        if test_size is None:
            raise SaalError("test_size is needed for a random split")
        n = len(data.ids)
        wanted = int(test_size) + (int(pool_size) if pool_size is not None else 1)
        if wanted > n:
            pool_text = f"pool_size {pool_size}" if pool_size is not None else "at least 1 pool image"
            raise SaalError(f"test_size {test_size} + {pool_text} = {wanted} exceeds the {n} images of the dataset")
        ids = sorted(data.ids)
        order = rng.permutation(n)
        test = [ids[i] for i in order[: int(test_size)]]
        rest = [ids[i] for i in order[int(test_size):]]
        pool = rest if pool_size is None else rest[: int(pool_size)]
        return Split(sorted(pool), sorted(test))
    if mode == "official":
        by_subset: dict[str, list[str]] = {}
        for i, s in zip(data.ids, data.subsets):
            by_subset.setdefault(s, []).append(i)
        test_part = "test" if "test" in by_subset else "val"
        if "train" not in by_subset or test_part not in by_subset:
            have = ", ".join(f"{s or '(none)'}: {len(v)}" for s, v in sorted(by_subset.items()))
            raise SaalError(f"an official split needs a 'train' part and a 'test' or 'val' part; this dataset "
                            f"has {have} (use mode='random')")
        for name, size, part in (("pool_size", pool_size, "train"), ("test_size", test_size, test_part)):
            if size is not None and int(size) > len(by_subset[part]):
                raise SaalError(f"{name} {size} exceeds the {len(by_subset[part])} images of the "
                                f"official '{part}' part")
        return Split(_take(by_subset["train"], pool_size, rng), _take(by_subset[test_part], test_size, rng))
    raise SaalError(f"unknown split mode {mode!r}; choose one of {', '.join(MODES)}")


def split_paths(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    folder = Path(run_dir) / "split"
    return folder / "pool.csv", folder / "test.csv"


def _read_ids(path: Path) -> list[str]:
    rows = saal_io.read_csv(path)
    if rows and "image_id" not in rows[0]:
        raise DataError(f"needs an image_id column; found {','.join(rows[0])}", path)
    ids = [r["image_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError("lists an id more than once", path)
    return ids


def save_split(run_dir: str | os.PathLike, split: Split) -> tuple[Path, Path]:
    """Write the split; an identical existing one is kept, a different one is an error."""
    paths = split_paths(run_dir)
    for path, ids in zip(paths, (split.pool, split.test)):
        if path.exists() and sorted(_read_ids(path)) != sorted(ids):
            raise SaalError(f"{path} already holds a different split; use a new run directory "
                            "(or delete the split folder to start this run over)")
    for path, ids in zip(paths, (split.pool, split.test)):
        if not path.exists():
            saal_io.write_csv(path, [{"image_id": i} for i in ids], ["image_id"])
    return paths


def load_split(run_dir: str | os.PathLike) -> Split:
    pool_path, test_path = split_paths(run_dir)
    for path in (pool_path, test_path):
        if not path.is_file():
            raise SaalError(f"{path} is missing: this run directory has no split yet")
    return Split(_read_ids(pool_path), _read_ids(test_path))


def apply_split(data: LesionData, split: Split) -> tuple[LesionData, LesionData]:
    """The pool and test parts of ``data``; ids the data lacks are an error naming the first."""
    known = set(data.ids)
    for name, ids in (("pool", split.pool), ("test", split.test)):
        missing = [i for i in ids if i not in known]
        if missing:
            raise SaalError(f"the {name} split lists {len(missing)} id(s) that the dataset does not hold "
                            f"(first: {missing[0]}); was the split made from another dataset?")
    return data.select_ids(split.pool), data.select_ids(split.test)
