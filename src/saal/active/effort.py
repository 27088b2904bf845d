"""Annotation effort: how much of a pre-annotation an annotator still has to change.

An annotator who corrects the model's proposal rather than drawing from scratch repaints exactly the pixels
where the proposal and the final mask disagree. The share of such pixels is what a round's pre-annotations
cost (0: accept as is; the lesion's own share of the image: as much as drawing it), and the Dice between
proposal and mask says how close the outline was. Both are measured at the training size, where the
simulated loop has its true masks and the human loop keeps the imported ones, so the two loops report
the same quantity.

Each round ``r >= 1`` records, over the images it asked for, the fields of :data:`EFFORT_FIELDS` in its
line of ``rounds.jsonl``: ``effort_n`` images, ``effort_changed`` (mean share of pixels to change),
``effort_changed_median`` and ``effort_dice`` (mean Dice of the proposal against the mask). The proposals
are the previous round's model's, made by :func:`~saal.active.annotate.preannotate` with the run's
inference settings: what an exported batch would have shown.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..data.dataset import LesionData
from ..errors import SaalError
from ..models.unet import UNet
from ..segmentation.metrics import overlap_metrics
from ..segmentation.trainer import SegConfig
from .annotate.preannotate import preannotate

EFFORT_FIELDS = ("effort_n", "effort_changed", "effort_changed_median", "effort_dice")


def preannotation_effort(proposed: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    """The effort fields for proposals ``proposed`` corrected into ``truth`` (both ``(N, H, W)``, nonzero = lesion).

    >>> truth = np.zeros((2, 4, 4), bool); truth[:, :2] = True
    >>> e = preannotation_effort(truth.copy(), truth)
    >>> e["effort_changed"], e["effort_dice"]
    (0.0, 1.0)
    >>> preannotation_effort(np.zeros_like(truth), truth)["effort_changed"]  # nothing proposed: draw it all
    0.5
    """
    proposed, truth = np.asarray(proposed) != 0, np.asarray(truth) != 0
    if proposed.shape != truth.shape or proposed.ndim != 3 or not len(proposed):
        raise SaalError(f"effort needs proposals and masks of one (N, H, W) shape, got {proposed.shape} and "
                        f"{truth.shape}")
    changed = (proposed != truth).mean(axis=(1, 2))
    dice = overlap_metrics(proposed, truth)["dice"].numpy()
    return {"effort_n": len(changed), "effort_changed": float(changed.mean()),
            "effort_changed_median": float(np.median(changed)), "effort_dice": float(dice.mean())}


def round_effort(previous: tuple[UNet, Mapping[str, Any]] | None, pool: LesionData, ids: Sequence[str],
                 truth: np.ndarray, *, round: int, seg: SegConfig) -> dict[str, float | int]:
    """The effort of round ``round``'s images ``ids`` (true masks ``truth``, training size) under the proposals of
    ``previous``, a loaded model and its meta, made with ``seg``'s inference settings; ``{}`` when there is nothing
    to measure.

    Only the model of round ``round - 1`` made the proposals of round ``round``: anything else (no model, a model
    whose round was trained again since) gives ``{}`` rather than a wrong number.
    """
    if previous is None or not len(ids) or previous[1].get("round") != round - 1:
        return {}
    size = pool.image_size
    proposals = preannotate(previous[0], pool, ids, model_version="", prior=seg.prior, threshold=seg.threshold,
                            tta=seg.tta)
    proposed = np.stack([proposals.mask(k, size, size) for k in ids])
    return preannotation_effort(proposed, truth)
