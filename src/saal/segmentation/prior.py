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

Both run on a whole batch at once, as one connected-component labelling of the
stack with a structure that never connects two images: the foreground's
components for ``largest``; for ``fill``, the background's, every background
component that does not touch its image's border being a hole. One labelling
pass, so a full-size photograph (2592 x 1936) is filled in tens of milliseconds
where iterated dilation took about half a second. Foreground is 8-connected and
background 4-connected, the usual pairing in which a closed 8-connected outline
encloses its inside.

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

#: 8-connectivity inside an image (the foreground's), none across the images of a stack.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = True
#: 4-connectivity inside an image (the background's), none across the images of a stack.
_IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


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
    masks = np.asarray(masks, dtype=bool)
    background, n = ndimage.label(~masks, structure=_IN_PLANE_CROSS)
    edges = (background[:, 0], background[:, -1], background[:, :, 0], background[:, :, -1])
    open_to_border = np.zeros(n + 1, dtype=bool)
    open_to_border[np.concatenate([e.ravel() for e in edges])] = True
    return masks | ~open_to_border[background]


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
