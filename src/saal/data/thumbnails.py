"""The images as an annotator sees them: in colour and larger than the model's input.

The pipeline trains on small (often grayscale) copies; reports and annotation
sheets show people the original picture instead, re-read from its file in RGB,
or, for the embedded dataset, rendered again in colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .dataset import LesionData
from .embedded import EMBEDDED_SOURCE, render_colour
from .imageio import read_image


def colour_thumbnails(data: LesionData, index: Sequence[int], size: int) -> np.ndarray:
    """uint8 ``(len(index), size, size, 3)``: the original images of rows ``index`` in colour.

    A row whose file is gone (or never existed) falls back to its preprocessed
    image, so a report never fails for want of a picture.
    """
    out = np.empty((len(index), size, size, 3), np.uint8)
    embedded = [j for j, i in enumerate(index) if data.sources[i] == EMBEDDED_SOURCE]
    if embedded:
        out[embedded] = render_colour([data.ids[index[j]] for j in embedded], size)
    for j, i in enumerate(index):
        if data.sources[i] == EMBEDDED_SOURCE:
            continue
        try:
            out[j] = read_image(Path(data.sources[i]), size=size, grayscale=False)[0]
        except (DataError, OSError, ValueError):
            out[j] = _enlarged(data.images[i], size)
    return out


def _enlarged(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    pixels = image[..., 0] if image.shape[-1] == 1 else image
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB").resize((size, size)))
