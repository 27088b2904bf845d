"""Per-image segmentation metrics and their summary.

Every function takes binary masks ``(N, H, W)`` (bool or {0, 1}; torch or numpy)
and returns one value per image.

Overlap (vectorised over the batch in torch), with ``TP, FP, FN`` pixel counts:

* ``dice = 2 TP / (2 TP + FP + FN)`` -- the paper's headline metric;
* ``iou  = TP / (TP + FP + FN)``     -- Jaccard, the ISIC challenge metric;
* ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``.

A ratio that would be 0/0 is **1 when both masks are empty** (nothing to find,
nothing found) and **0 otherwise** (e.g. precision of an empty prediction for
a real lesion: nothing correct was found).

Surface distances (in pixels, Euclidean, between pixel centres):

* the *surface* of a mask is its foreground pixels that have a background pixel
  among their 4 neighbours, pixels outside the image counting as background (so
  a lesion cut by the image edge has its edge pixels on the surface, and any
  non-empty mask has a non-empty surface). This is MONAI's definition
  (``scipy.ndimage.binary_erosion`` with the cross-shaped element, XOR the mask);
* ``d(a, B)`` is the distance from surface pixel ``a`` to the nearest surface
  pixel of ``B``;
* ``hd95 = max(P95{d(a, T) : a in S(P)}, P95{d(b, P) : b in S(T)})`` -- the 95th
  percentile (linear interpolation) of each directed set, then the larger, as
  MONAI's ``compute_hausdorff_distance(percentile=95)``. (medpy instead takes the
  percentile of the union of both sets; values differ slightly.)
* ``assd`` = mean of the union of both directed sets, as MONAI's
  ``compute_average_surface_distance(symmetric=True)``.

Both masks empty: ``hd95 = assd = 0``. Exactly one empty: both are the image
diagonal ``sqrt(H^2 + W^2)``, the largest distance possible inside the image, a
finite worst case so that means over a test set stay finite.

The tests check these against MONAI and against brute-force pairwise distances.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from scipy import ndimage

METRICS = ("dice", "iou", "hd95", "assd", "precision", "recall")


def _as_bool_tensor(masks) -> torch.Tensor:
    t = masks if isinstance(masks, torch.Tensor) else torch.from_numpy(np.asarray(masks))
    if t.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(t.shape)}")
    return t.bool()


def _ratio(num: torch.Tensor, den: torch.Tensor, both_empty: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``; 1 where both masks are empty, else 0 (see module doc)."""
    value = num / den.clamp(min=1)
    return torch.where(den > 0, value, both_empty.to(value.dtype))


def overlap_metrics(pred, target) -> dict[str, torch.Tensor]:
    """Dice, IoU, precision and recall per image, in one batched pass (float64 tensors)."""
    p, t = _as_bool_tensor(pred), _as_bool_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
    tp = (p & t).flatten(1).sum(1).double()
    fp = (p & ~t).flatten(1).sum(1).double()
    fn = (~p & t).flatten(1).sum(1).double()
    both_empty = (tp + fp + fn) == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
    }


def mask_surface(masks: np.ndarray) -> np.ndarray:
    """Surface pixels of each mask (see module doc), batched: ``(N, H, W)`` bool."""
    m = np.asarray(masks).astype(bool)
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    interior = (
        m
        & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1]  # up, down
        & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]  # left, right
    )
    return m & ~interior


def surface_distances(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """HD95 and ASSD per image, in pixels (see module doc for definitions and empty cases).

    The surfaces are found for the whole batch at once; the distances use one
    exact Euclidean distance transform per image and direction (no per-pixel work).
    """
    p = _as_bool_tensor(pred).cpu().numpy()
    t = _as_bool_tensor(target).cpu().numpy()
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    n, h, w = p.shape
    diagonal = float(np.hypot(h, w))
    sp, st = mask_surface(p), mask_surface(t)
    has_p, has_t = sp.any(axis=(1, 2)), st.any(axis=(1, 2))
    hd95 = np.where(has_p | has_t, diagonal, 0.0)
    assd = hd95.copy()
    for i in np.flatnonzero(has_p & has_t):
        # distance_transform_edt gives, at each pixel, the distance to the nearest zero,
        # i.e. to the nearest surface pixel of the other mask.
        p_to_t = ndimage.distance_transform_edt(~st[i])[sp[i]]
        t_to_p = ndimage.distance_transform_edt(~sp[i])[st[i]]
        hd95[i] = max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95))
        assd[i] = np.concatenate([p_to_t, t_to_p]).mean()
    return hd95, assd


def segmentation_metrics(pred, target) -> dict[str, np.ndarray]:
    """All of :data:`METRICS` plus the foreground fractions, one float64 array each."""
    out = {k: v.cpu().numpy() for k, v in overlap_metrics(pred, target).items()}
    out["hd95"], out["assd"] = surface_distances(pred, target)
    p, t = _as_bool_tensor(pred), _as_bool_tensor(target)
    out["fg_fraction_true"] = t.flatten(1).double().mean(1).cpu().numpy()
    out["fg_fraction_pred"] = p.flatten(1).double().mean(1).cpu().numpy()
    return out


def summarise(rows: Iterable[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (population, ddof=0), median and count of each numeric column.

    ``rows`` are per-image dicts (e.g. :attr:`EvalResult.rows`); text columns such
    as ``image_id`` are skipped.
    """
    rows = list(rows)
    if not rows:
        return {}
    summary = {}
    for key, first in rows[0].items():
        if isinstance(first, (bool, str)) or not isinstance(first, (int, float, np.number)):
            continue
        values = np.array([float(r[key]) for r in rows], dtype=np.float64)
        summary[key] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "median": float(np.median(values)),
            "n": int(values.size),
        }
    return summary
