"""Evaluate a segmentation model on a labeled test set, and draw its best/worst cases.

The prediction is the foreground probability, averaged over the 8 symmetries of
the square with ``tta``, made a mask by the ``threshold`` rule
(:mod:`saal.segmentation.threshold`) and cleaned up by the lesion ``prior``
(:mod:`saal.segmentation.prior`). Metrics and their edge cases are defined in
:mod:`saal.segmentation.metrics`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import io as saal_io
from ..data.dataset import LesionData
from ..errors import SaalError
from ..models.unet import UNet
from .metrics import segmentation_metrics, summarise
from .predict import iter_predictions
from .prior import apply_prior
from .threshold import binarise

COLUMNS = ("image_id", "dice", "iou", "hd95", "assd", "precision", "recall", "fg_fraction_true", "fg_fraction_pred")


@dataclass
class EvalResult:
    """Per-image metric rows (in test-set order) and the predicted masks."""

    rows: list[dict]
    predictions: np.ndarray  # uint8 (N, S, S) {0, 1}

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        """Mean, std, median and count per metric (see :func:`saal.segmentation.metrics.summarise`)."""
        return summarise(self.rows)

    def column(self, name: str) -> np.ndarray:
        """One metric for every image, e.g. to pick the best and worst cases."""
        return np.array([row[name] for row in self.rows])

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the rows as CSV (atomically), one line per test image."""
        return saal_io.write_csv(path, self.rows, fieldnames=COLUMNS)


def evaluate(model: UNet, test: LesionData, *, batch_size: int = 32, device: str | torch.device = "auto",
             prior: str = "none", threshold: str = "argmax", tta: bool = False) -> EvalResult:
    """Predict every test image (with ``tta``, the ``threshold`` rule and the lesion ``prior``) and score it against
    its mask."""
    if test.masks is None:
        raise SaalError("evaluation needs a test set with masks, but it has none")
    rows: list[dict] = []
    predictions = np.zeros(test.masks.shape, dtype=np.uint8)
    for index, probs in iter_predictions(model, test, batch_size=batch_size, device=device, tta=tta):
        pred = apply_prior(binarise(probs[:, 0, 1].numpy(), threshold), prior)
        predictions[index] = pred
        scores = segmentation_metrics(pred, np.asarray(test.masks[index]))
        for i, image_id in enumerate(test.ids[index]):
            rows.append({"image_id": image_id, **{k: float(scores[k][i]) for k in COLUMNS[1:]}})
    return EvalResult(rows=rows, predictions=predictions)


def _outline(ax, mask: np.ndarray, color: str, display_size: int) -> None:
    """Draw the 0.5 contour of ``mask`` over an image shown at ``display_size`` px, closed along the border."""
    mask = np.asarray(mask, dtype=np.float32)
    if mask.min() == mask.max():
        return
    size = mask.shape[0]
    scale = display_size / size
    coords = (np.arange(-1, size + 1) + 0.5) * scale - 0.5  # mask pixel centres in display pixels
    ax.contour(coords, coords, np.pad(mask, 1), levels=[0.5], colors=color, linewidths=1.2)


def save_prediction_overlays(png: str | os.PathLike, images: np.ndarray, masks: np.ndarray, preds: np.ndarray,
                             ids: Sequence[str], scores: Sequence[float], *, score_name: str = "Dice",
                             columns: int = 4) -> Path:
    """Write a grid of images with the true (green) and predicted (red) lesion outlines.

    ``images`` uint8 ``(K, D, D, C)``, ``masks`` / ``preds`` ``(K, S, S)`` {0, 1};
    the images may be larger than the masks (e.g. colour originals shown for
    64-px predictions): the outlines are scaled to them. Each panel is titled
    with its id and score. Drawn on an Agg figure and written atomically.
    """
    from matplotlib.figure import Figure

    from ..render.figures import save_figure

    k = len(images)
    if not (len(masks) == len(preds) == len(ids) == len(scores) == k) or k == 0:
        raise ValueError(f"overlay inputs need the same non-zero length, got images {k}, masks {len(masks)}, "
                         f"preds {len(preds)}, ids {len(ids)}, scores {len(scores)}")
    ncols = min(columns, k)
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.9 * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, mask, pred, image_id, score in zip(axes.flat, images, masks, preds, ids, scores):
        size = image.shape[0]
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        _outline(ax, mask, "lime", size)
        _outline(ax, pred, "red", size)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_title(f"{image_id}\n{score_name} {score:.3f}", fontsize=9)
    fig.suptitle("green: ground truth, red: prediction", fontsize=9)
    return save_figure(fig, png, dpi=100)
