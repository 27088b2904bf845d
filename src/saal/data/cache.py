"""The preprocessed-array cache: decode a dataset once, memory-map it afterwards.

A cache entry is a folder holding ``images.npy`` / ``masks.npy`` (uint8, loaded
with ``mmap_mode='r'``) and ``manifest.json``, written last, which records the
ids, sources, subsets and original sizes, the preprocessing parameters, a
fingerprint of the source files (relative path, size, mtime_ns of each) and the
sha256 of each array. An entry is used only when the parameters and the
fingerprint match and the arrays hash to the recorded digests; anything else
(added, removed or modified file, a truncated or edited array, an unreadable
manifest) means "rebuild", never "trust".

Entries live under ``$SAAL_CACHE_DIR`` (default ``$XDG_CACHE_HOME/saal`` or
``~/.cache/saal``), one folder per resolved data path and parameter set, and
never inside the user's data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import io as saal_io
from ..errors import DataError

CACHE_VERSION = 2  # part of every key: bump it whenever decoding or resizing changes, so old entries are not reused
MANIFEST = "manifest.json"
_HASH_ROWS = 64  # rows of an array hashed at a time, so a memory map is read in bounded pieces


def default_cache_dir() -> Path:
    env = os.environ.get("SAAL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "saal"


def cache_root_for(data_root: Path, cache_dir: str | os.PathLike | None) -> Path:
    """The cache root to use, refusing one inside the data folder (saal never writes there)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if root.resolve().is_relative_to(data_root.resolve()):
        raise DataError(f"cache folder {root} is inside the data folder; saal never writes into a data "
                        "folder: choose another --cache-dir / SAAL_CACHE_DIR", data_root)
    return root


def entry_folder(cache_root: Path, data_root: Path, key: dict[str, Any]) -> Path:
    """One folder per (resolved data path, parameters): readable prefix + digest."""
    resolved = str(data_root.resolve())
    digest = hashlib.sha256(json.dumps({"root": resolved, **key, "version": CACHE_VERSION},
                                       sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", data_root.resolve().name)[:40] or "data"
    return cache_root / f"{slug}-{digest}"


def fingerprint(root: Path, files: Sequence[Path]) -> dict[str, Any]:
    """Digest of (relative path, size, mtime_ns) of every source file: cheap to recompute, and any
    added, removed, rewritten or touched file changes it."""
    h = hashlib.sha256()
    for f in sorted(files):
        st = f.stat()
        line = f"{f.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n"
        # surrogateescape: a file name that is not UTF-8 (skipped by the scan) still counts, byte for byte
        h.update(line.encode("utf-8", "surrogateescape"))
    return {"files": len(files), "sha256": h.hexdigest()}


def array_digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    for start in range(0, max(arr.shape[0], 1), _HASH_ROWS):
        h.update(np.ascontiguousarray(arr[start:start + _HASH_ROWS]).data)
    return h.hexdigest()


@dataclass
class CacheEntry:
    folder: Path
    images: np.ndarray
    masks: np.ndarray | None
    manifest: dict[str, Any]


def _load_array(folder: Path, name: str, spec: dict[str, Any]) -> np.ndarray:
    arr = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
    if arr.dtype != np.uint8 or list(arr.shape) != list(spec["shape"]):
        raise ValueError(f"{name}.npy is {arr.dtype} {arr.shape}, manifest says uint8 {spec['shape']}")
    if array_digest(arr) != spec["sha256"]:
        raise ValueError(f"{name}.npy does not match its recorded sha256")
    return arr


def read_entry(folder: Path, *, key: dict[str, Any], source: dict[str, Any]) -> tuple[CacheEntry | None, str]:
    """The entry at ``folder`` if it is valid for ``key`` and ``source``; else ``None`` and why."""
    path = folder / MANIFEST
    if not path.is_file():
        return None, "no cache yet"
    try:
        manifest = saal_io.read_json(path)
        if manifest.get("version") != CACHE_VERSION or manifest.get("key") != key:
            return None, "preprocessing parameters changed"
        if manifest.get("source") != source:
            return None, "source files changed"
        images = _load_array(folder, "images", manifest["arrays"]["images"])
        spec = manifest["arrays"].get("masks")
        masks = None if spec is None else _load_array(folder, "masks", spec)
        if not (len(manifest["ids"]) == images.shape[0] == len(manifest["sources"]) == len(manifest["subsets"])):
            raise ValueError("manifest lists do not match the arrays")
    except Exception as ex:  # any damage to the entry: report and rebuild
        return None, f"cache entry {folder} was unreadable ({type(ex).__name__}: {ex}); rebuilt"
    return CacheEntry(folder, images, masks, manifest), "hit"


def write_entry(folder: Path, images: np.ndarray, masks: np.ndarray | None, manifest: dict[str, Any]) -> CacheEntry:
    """Write the arrays, then the manifest (the commit point), and return memory-mapped views."""
    (folder / MANIFEST).unlink(missing_ok=True)  # an interrupted rewrite must not pair old manifest, new arrays
    arrays: dict[str, Any] = {"images": {"shape": list(images.shape), "sha256": array_digest(images)}, "masks": None}
    saal_io.write_npy(folder / "images.npy", images)
    if masks is not None:
        arrays["masks"] = {"shape": list(masks.shape), "sha256": array_digest(masks)}
        saal_io.write_npy(folder / "masks.npy", masks)
    else:
        (folder / "masks.npy").unlink(missing_ok=True)
    manifest = {**manifest, "version": CACHE_VERSION, "arrays": arrays}
    saal_io.write_json(folder / MANIFEST, manifest)
    return CacheEntry(folder,
                      np.load(folder / "images.npy", mmap_mode="r"),
                      None if masks is None else np.load(folder / "masks.npy", mmap_mode="r"),
                      manifest)
