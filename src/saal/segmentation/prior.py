"""A lesion prior for predicted masks: one lesion, no holes.

A dermoscopy image is taken of one lesion, centred, and a lesion is one filled
region; a segmenter trained on ten masks still leaves stray blobs on hair, rulers
and vignetting, and holes where the lesion is pale. Two clean-ups encode that
prior, each switchable (``SegConfig.prior``):

* ``largest`` -- keep the largest 8-connected foreground component of each mask;
* ``fill``    -- fill holes: background enclosed by foreground (background that
  reaches the image border stays background);
* ``lesion``  -- both, the largest component first;
* ``none``    -- the arg-max mask as predicted.

Both run on a whole batch at once: the masks are stacked with a labelling
structure that never connects two images (and, for the hole filling, an empty
plane before and after the stack, so that only each image's own border seeds
the background).

>>> import numpy as np
>>> m = np.zeros((1, 7, 7), bool); m[0, 1:5, 1:5] = True; m[0, 2:4, 2:4] = False; m[0, 6, 6] = True
>>> int(apply_prior(m, "lesion")[0].sum())  # the 4x4 square, filled; the stray pixel gone
16
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..config import PRIORS
from ..errors import SaalError

#: 8-connectivity inside an image, none across the images of a stack.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = True


def largest_component(masks: np.ndarray) -> np.ndarray:
    """Each mask of a ``(N, H, W)`` stack reduced to its largest 8-connected component (ties: the first found)."""
    labels, n = ndimage.label(masks, structure=_IN_PLANE)
    if n == 0:
        return np.zeros(masks.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    owner = np.zeros(n + 1, dtype=np.int64)  # the image each component lies in
    owner[labels.ravel()] = np.repeat(np.arange(len(masks)), labels[0].size)
    order = np.lexsort((-sizes[1:], owner[1:]))  # by image, largest first within an image
    first = np.unique(owner[1:][order], return_index=True)[1]
    keep = np.zeros(n + 1, dtype=bool)
    keep[order[first] + 1] = True
    return keep[labels]


def fill_holes(masks: np.ndarray) -> np.ndarray:
    """Background fully enclosed by foreground becomes foreground, image by image, for a ``(N, H, W)`` stack."""
    padded = np.pad(np.asarray(masks, dtype=bool), ((1, 1), (0, 0), (0, 0)))
    return ndimage.binary_fill_holes(padded, structure=_IN_PLANE)[1:-1]


def apply_prior(masks: np.ndarray, prior: str) -> np.ndarray:
    """``masks`` (bool ``(N, H, W)`` or ``(H, W)``) cleaned up by ``prior`` (one of :data:`saal.config.PRIORS`)."""
    if prior not in PRIORS:
        raise SaalError(f"unknown lesion prior {prior!r}; choose one of {', '.join(PRIORS)}")
    masks = np.asarray(masks, dtype=bool)
    single = masks.ndim == 2
    stack = masks[None] if single else masks
    if prior in ("largest", "lesion"):
        stack = largest_component(stack)
    if prior in ("fill", "lesion"):
        stack = fill_holes(stack)
    return stack[0] if single else stack
