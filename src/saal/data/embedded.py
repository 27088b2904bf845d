"""The embedded default dataset: synthetic dermoscopy generated in memory, no download.

``saal run`` without ``--data`` and the tests use it. It is a pure function of
``(n, image_size, seed)`` (see :mod:`saal.data.synth`), so no cache is needed:
500 images at 64 px take about a second.
"""

from __future__ import annotations

import numpy as np

from .dataset import LesionData, to_grayscale
from .synth import generate


#: The ``sources`` entry of every embedded image (there is no file behind it).
EMBEDDED_SOURCE = "embedded"
_ID_PREFIX = "synth_"


def load_embedded(n: int = 500, image_size: int = 64, grayscale: bool = True, seed: int = 0) -> LesionData:
    """``n`` synthetic image/mask pairs as :class:`LesionData` (ids ``synth_000000`` ..., subset "train").

    ``groups`` holds each image's sub-population (:data:`saal.data.synth.GROUPS`),
    which lets experiments report how a selection covers rare groups.
    """
    batch = generate(n, image_size, seed)
    images = to_grayscale(batch.images) if grayscale else batch.images
    return LesionData(
        ids=[f"{_ID_PREFIX}{i:06d}" for i in range(n)],
        images=images,
        masks=batch.masks,
        sources=[EMBEDDED_SOURCE] * n,
        subsets=["train"] * n,
        groups=list(batch.groups),
    )


def render_colour(ids: list[str], image_size: int, seed: int = 0) -> np.ndarray:
    """The embedded images ``ids`` rendered in colour at ``image_size`` px (what an annotator would see)."""
    out = np.empty((len(ids), image_size, image_size, 3), np.uint8)
    for j, image_id in enumerate(ids):
        out[j] = generate(1, image_size, seed, start=int(image_id.removeprefix(_ID_PREFIX))).images[0]
    return out
