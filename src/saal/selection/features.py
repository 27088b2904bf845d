"""One feature vector per pool image, from the U-Net bottleneck, and its on-disk cache.

The selection criterion only sees these vectors, so they must describe the
images the annotator will actually be shown: features come from the *clean*
images (no restoration corruption, no augmentation) with the network in eval
mode, and row ``i`` is always image ``i`` of the dataset. Two readouts:

* ``bottleneck`` (the paper's): the deepest encoder map, average-pooled to
  ``pool x pool`` cells and flattened (``pool=1`` gives the ``8 * base_width``-d
  vector, 512 at width 64; ``pool=2`` keeps a coarse layout at 4x the size);
* ``multiscale``: every encoder level average-pooled to one vector, each vector
  scaled to unit length, concatenated (``15 * base_width`` numbers). The early
  levels see colour and texture, the bottleneck shape and context; normalising
  per level gives each the same say, whatever its number of channels or scale.

The cache (``features.npy`` + ``feature_ids.csv`` + ``features.json``) records
checksums of both files so that a half-written or stale mix is refused rather
than silently misaligned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from saal.config import FEATURE_NORMS, FEATURE_READOUTS
from saal.data.dataset import LesionData, images_to_tensor
from saal.errors import SelectionError
from saal.io import read_csv, read_json, write_csv, write_json, write_npy
from saal.runtime import resolve_device

FEATURES_FILE = "features.npy"
IDS_FILE = "feature_ids.csv"
META_FILE = "features.json"




def _readout(model: torch.nn.Module, x: torch.Tensor, readout: str, pool: int, image_size: int) -> torch.Tensor:
    """One feature row per image of the batch ``x``."""
    if readout == "multiscale":
        levels = model.encoder(x)
        return torch.cat([F.normalize(F.adaptive_avg_pool2d(f, 1).flatten(1), dim=1) for f in levels], dim=1)
    fmap = model.bottleneck(x)
    if min(fmap.shape[-2:]) < pool:
        raise SelectionError(f"feature pool={pool} exceeds the {fmap.shape[-2]}x{fmap.shape[-1]} bottleneck of "
                             f"{image_size}-px images")
    return F.adaptive_avg_pool2d(fmap, int(pool)).flatten(1)


def extract_features(model: torch.nn.Module, data: LesionData, *, pool: int = 1, readout: str = "bottleneck",
                     batch_size: int = 64, device: str | torch.device = "cpu", progress: bool = True) -> np.ndarray:
    """``(N, D)`` float32 features of ``data.images`` by ``readout`` (see the module docstring), dataset order.

    ``model`` needs ``encoder(x)`` (every level) and ``bottleneck(x)`` (:class:`saal.models.unet.UNet`);
    it is moved to ``device`` and put back into its previous train/eval mode. ``pool`` applies to the
    bottleneck readout.
    """
    if readout not in FEATURE_READOUTS:
        raise SelectionError(f"unknown feature readout {readout!r}; choose one of {', '.join(FEATURE_READOUTS)}")
    if int(pool) < 1:
        raise SelectionError(f"feature pool must be >= 1, got {pool}")
    if int(batch_size) < 1:
        raise SelectionError(f"batch size must be >= 1, got {batch_size}")
    expected = getattr(getattr(model, "config", None), "in_channels", None)
    if expected is not None and expected != data.channels:
        raise SelectionError(
            f"the network expects {expected}-channel images but the dataset has {data.channels} channel(s)"
        )
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    n = len(data)
    out: np.ndarray | None = None
    was_training = model.training
    model.to(dev).eval()
    try:
        with torch.inference_mode():
            starts = range(0, n, int(batch_size))
            for s in track(starts, description="features", disable=not progress, total=len(starts)):
                x = images_to_tensor(data.images[s:s + batch_size], dev)
                feats = _readout(model, x, readout, pool, data.image_size).float().cpu().numpy()
                if out is None:
                    out = np.empty((n, feats.shape[1]), dtype=np.float32)
                out[s:s + feats.shape[0]] = feats
    finally:
        model.train(was_training)
    if out is None:
        raise SelectionError("the dataset is empty: no images to extract features from")
    return out


def l2_normalize(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero): cosine geometry for the strategies."""
    x = np.asarray(features)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(x.dtype, copy=False)


def normalise_features(features: np.ndarray, norm: str) -> np.ndarray:
    """``features`` as the run's ``feature_norm`` says: ``none`` (as extracted) or ``l2`` (:func:`l2_normalize`)."""
    if norm not in FEATURE_NORMS:
        raise SelectionError(f"unknown feature normalisation {norm!r}; choose one of {', '.join(FEATURE_NORMS)}")
    return l2_normalize(features) if norm == "l2" else features


def standardize(features: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Every column shifted to mean 0 and scaled to unit variance (constant columns become 0).

    Why: a few high-variance directions (on dermoscopy, overall brightness) can
    dominate Euclidean distances and so decide the clusters on their own;
    z-scoring gives every feature channel the same say.
    """
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(std > eps, std, 1.0)).astype(np.float32)


def whiten(features: np.ndarray, variance: float = 0.95, seed: int = 0) -> np.ndarray:
    """PCA whitening: the principal components that explain ``variance`` of the total, each scaled
    to unit variance. Stronger than :func:`standardize`: correlated channels count once."""
    from sklearn.decomposition import PCA

    if not 0.0 < float(variance) <= 1.0:
        raise SelectionError(f"whitening variance must be in (0, 1], got {variance}")
    x = np.asarray(features, dtype=np.float64)
    if x.shape[0] < 2:
        raise SelectionError(f"whitening needs at least 2 feature rows, got {x.shape[0]}")
    n_components = float(variance) if variance < 1.0 else min(x.shape)
    pca = PCA(n_components=n_components, whiten=True, svd_solver="full", random_state=seed)
    out = pca.fit_transform(x)
    # directions with (numerically) no variance would only blow rounding noise up to unit scale
    keep = pca.explained_variance_ratio_ > 1e-9
    return out[:, keep].astype(np.float32)


def pca_reduce(features: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """Project onto the top ``dims`` principal components (seeded, float32 out)."""
    from sklearn.decomposition import PCA

    x = np.asarray(features)
    limit = min(x.shape)
    if not 1 <= int(dims) <= limit:
        raise SelectionError(
            f"PCA dims must be between 1 and {limit} for {x.shape[0]}x{x.shape[1]} features, got {dims}"
        )
    return PCA(n_components=int(dims), random_state=seed).fit_transform(x).astype(np.float32)


def model_fingerprint(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a network's weights (names, shapes, dtypes, values): which model made a cache."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ids_digest(ids: Sequence[str]) -> str:
    return _sha256("\n".join(ids).encode("utf-8"))


class CachedFeatures(NamedTuple):
    ids: list[str]
    features: np.ndarray
    meta: dict[str, Any]


def save_features(directory: str | Path, ids: Sequence[str], features: np.ndarray,
                  meta: Mapping[str, Any] | None = None) -> Path:
    """Write the feature cache into ``directory`` (each file atomically; the JSON, last, seals the set).

    ``meta`` should say how the features were made (e.g. ``pool`` and the
    :func:`model_fingerprint`); ``n``, ``dim`` and checksums are added.
    """
    directory = Path(directory)
    feats = np.ascontiguousarray(features, dtype=np.float32)
    ids = [str(i) for i in ids]
    if feats.ndim != 2:
        raise SelectionError(f"features must be 2-D (images x dimensions), got shape {feats.shape}")
    if feats.shape[0] != len(ids):
        raise SelectionError(f"{feats.shape[0]} feature rows but {len(ids)} image ids")
    if not ids:
        raise SelectionError("no features to cache (empty pool)")
    if len(set(ids)) != len(ids):
        raise SelectionError("image ids must be unique to cache features")
    write_npy(directory / FEATURES_FILE, feats)
    write_csv(directory / IDS_FILE, [{"row": i, "image_id": k} for i, k in enumerate(ids)], ["row", "image_id"])
    write_json(directory / META_FILE, {
        **dict(meta or {}),
        "n": feats.shape[0], "dim": feats.shape[1], "dtype": "float32",
        "features_sha256": _sha256(feats.tobytes()), "ids_sha256": _ids_digest(ids),
    })
    return directory


def load_features(directory: str | Path, expected_ids: Sequence[str] | None = None) -> CachedFeatures:
    """Read a cache written by :func:`save_features`, refusing any mismatch.

    With ``expected_ids`` (the dataset's ids), the cache must hold exactly those
    images in that order, so that row ``i`` is image ``i``.
    """
    directory = Path(directory)
    for name in (FEATURES_FILE, IDS_FILE, META_FILE):
        if not (directory / name).is_file():
            raise SelectionError(f"{directory / name}: missing from the feature cache")
    meta = read_json(directory / META_FILE)
    try:
        feats = np.load(directory / FEATURES_FILE, allow_pickle=False)
    except ValueError as exc:
        raise SelectionError(f"{directory / FEATURES_FILE}: unreadable ({exc})") from None
    rows = read_csv(directory / IDS_FILE)
    if not rows or list(rows[0].keys()) != ["row", "image_id"]:
        raise SelectionError(f"{directory / IDS_FILE}: expected columns row,image_id")
    ids = [r["image_id"] for r in rows]
    if [r["row"] for r in rows] != [str(i) for i in range(len(rows))]:
        raise SelectionError(f"{directory / IDS_FILE}: rows must be numbered 0..{len(rows) - 1} in order")
    if feats.ndim != 2 or feats.shape[0] != len(ids):
        raise SelectionError(
            f"{directory}: {feats.shape[0] if feats.ndim else 0} feature rows but {len(ids)} ids"
        )
    if (meta.get("n"), meta.get("dim")) != feats.shape or meta.get("features_sha256") != _sha256(
            np.ascontiguousarray(feats).tobytes()) or meta.get("ids_sha256") != _ids_digest(ids):
        raise SelectionError(f"{directory}: feature cache files do not belong together (stale or partly written); "
                             "extract the features again")
    if expected_ids is not None:
        expected_ids = list(expected_ids)
        if ids != expected_ids:
            if len(ids) != len(expected_ids):
                raise SelectionError(f"{directory}: the cache holds {len(ids)} images, the dataset {len(expected_ids)}")
            first = next(i for i, (a, b) in enumerate(zip(ids, expected_ids)) if a != b)
            raise SelectionError(
                f"{directory}: cache row {first} is image {ids[first]!r} but the dataset has {expected_ids[first]!r}"
            )
    return CachedFeatures(ids, feats, meta)
