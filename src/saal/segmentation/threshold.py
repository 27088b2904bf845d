"""From foreground probabilities to a mask: one fixed threshold, or one per image.

A segmenter trained on ten masks is badly calibrated, and each training seed
in its own way: on the ISIC yardstick the fixed threshold that would give the
best Dice moved from 0.35 to 0.8 between three such models of the same recipe,
one drawing every small lesion three times too large, another missing pale ones
altogether. Three rules (``SegConfig.threshold``):

* ``argmax`` -- foreground where its probability exceeds 0.5, the arg-max of the
  two-class softmax;
* ``otsu``   -- per image, the threshold that best separates that image's
  probabilities into two groups (Otsu, 1979: the largest between-class
  variance of a 256-bin histogram). It needs no labels: the lesion is the
  region the model is surest of *relative to the rest of the same image*, so a
  model that is too sure or too unsure everywhere still draws the outline where
  its confidence changes. An image whose probabilities all fall in one bin
  (nothing to separate) keeps 0.5;
* ``nonempty`` -- ``argmax``, except that an image it leaves without any
  foreground gets its ``otsu`` mask: every dermoscopy image shows a lesion, and
  an empty mask is the worst answer there is (Dice 0, the largest possible
  HD95, nothing for an annotator to correct). Masks that ``argmax`` draws are
  kept as they are, so a well-trained model is not touched.

All run on a whole ``(N, H, W)`` stack at once (one ``bincount`` for every
histogram).

>>> import numpy as np
>>> p = np.full((1, 4, 4), 0.6); p[0, 1:3, 1:3] = 0.95  # a model sure of everything, surest of the centre
>>> int(binarise(p, "argmax").sum()), int(binarise(p, "otsu").sum()), int(binarise(p, "nonempty").sum())
(16, 4, 16)
>>> int(binarise(p - 0.5, "argmax").sum()), int(binarise(p - 0.5, "nonempty").sum())  # unsure everywhere
(0, 4)
"""

from __future__ import annotations

import numpy as np

from ..config import THRESHOLDS
from ..errors import SaalError

#: Histogram bins of the ``otsu`` rule (the usual 8-bit resolution).
OTSU_BINS = 256


def otsu_thresholds(probs: np.ndarray) -> np.ndarray:
    """One threshold per image of a ``(N, H, W)`` stack in [0, 1]: foreground is ``probs >= threshold``."""
    probs = np.asarray(probs, dtype=np.float32)
    n = len(probs)
    bins = np.clip((probs.reshape(n, -1) * OTSU_BINS).astype(np.int64), 0, OTSU_BINS - 1)
    counts = np.bincount((bins + OTSU_BINS * np.arange(n)[:, None]).ravel(),
                         minlength=n * OTSU_BINS).reshape(n, OTSU_BINS).astype(np.float64)
    centres = (np.arange(OTSU_BINS) + 0.5) / OTSU_BINS
    below = np.cumsum(counts, axis=1)  # pixels in bins 0..k: the background if the cut is after bin k
    above = below[:, -1:] - below
    mass_below = np.cumsum(counts * centres, axis=1)
    mean_below = mass_below / np.maximum(below, 1)
    mean_above = (mass_below[:, -1:] - mass_below) / np.maximum(above, 1)
    between = below * above * (mean_below - mean_above) ** 2
    cut = between.argmax(axis=1)
    return np.where(between.max(axis=1) > 0, (cut + 1) / OTSU_BINS, 0.5)


def binarise(probs: np.ndarray, rule: str) -> np.ndarray:
    """Boolean masks from foreground probabilities (``(N, H, W)`` or ``(H, W)``) by ``rule`` (:data:`THRESHOLDS`)."""
    if rule not in THRESHOLDS:
        raise SaalError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLDS)}")
    probs = np.asarray(probs, dtype=np.float32)
    stack = probs[None] if probs.ndim == 2 else probs
    masks = stack > 0.5
    if rule != "argmax":  # Otsu's mask for every image, or for those arg-max leaves empty
        redo = np.ones(len(stack), dtype=bool) if rule == "otsu" else ~masks.any(axis=(1, 2))
        if redo.any():
            masks[redo] = stack[redo] >= otsu_thresholds(stack[redo])[:, None, None]
    return masks[0] if probs.ndim == 2 else masks
