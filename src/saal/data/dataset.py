"""The in-memory form of a preprocessed dataset that every later stage consumes.

Images are square, resized and stored as uint8 ``(N, S, S, C)`` arrays (``C`` is
1 for grayscale, 3 for RGB); masks are uint8 ``(N, S, S)`` with values {0, 1},
or ``None`` for an unlabeled folder (the cold-start use case). The arrays may be
``np.memmap`` views of the cache, so slicing never copies the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


@dataclass
class LesionData:
    """A preprocessed set of images, with masks when it is labeled.

    Parameters
    ----------
    ids : list of str
        One unique id per image (the file stem for loaded folders, e.g. ``ISIC_0000001``).
    images : uint8 array ``(N, S, S, C)``
        Square images, ``C`` = 1 (grayscale) or 3 (RGB); possibly a read-only memory map.
    masks : uint8 array ``(N, S, S)`` with values {0, 1}, or None
        Lesion masks aligned with ``images``; None for an unlabeled folder.
    sources : list of str
        The original file of each image (``"embedded"`` for the generated dataset), for
        annotation batches and reports; defaults to empty strings.
    subsets : list of str
        The official part of each image (``"train"``, ``"val"``, ``"test"``) or ``""``.
    groups : list of str or None
        A sub-population tag per image when known (the embedded dataset's groups).

    Examples
    --------
    >>> import numpy as np
    >>> data = LesionData(ids=["a", "b"], images=np.zeros((2, 8, 8, 1), np.uint8))
    >>> len(data), data.image_size, data.channels, data.labeled
    (2, 8, 1, False)
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)  # original file of each image
    subsets: list[str] = field(default_factory=list)  # official part: "train", "val", "test" or ""
    groups: list[str] | None = None  # sub-population tag when known (embedded dataset)

    def __post_init__(self):
        n = len(self.ids)
        if self.images.ndim != 4 or self.images.shape[0] != n:
            raise ValueError(f"images must be (N, S, S, C) with N={n}, got {self.images.shape}")
        if self.masks is not None and self.masks.shape != self.images.shape[:3]:
            raise ValueError(f"masks must be {self.images.shape[:3]}, got {self.masks.shape}")
        self.sources = list(self.sources) or [""] * n
        self.subsets = list(self.subsets) or [""] * n

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labeled(self) -> bool:
        return self.masks is not None

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of ``ids`` in this set (KeyError naming the first unknown id)."""
        pos = {k: i for i, k in enumerate(self.ids)}
        return np.array([pos[k] for k in ids], dtype=np.int64)

    def subset(self, index: Sequence[int] | np.ndarray) -> "LesionData":
        index = np.asarray(index, dtype=np.int64)
        pick = lambda seq: [seq[i] for i in index]  # noqa: E731
        return LesionData(
            ids=pick(self.ids),
            images=self.images[index],
            masks=None if self.masks is None else self.masks[index],
            sources=pick(self.sources),
            subsets=pick(self.subsets),
            groups=None if self.groups is None else pick(self.groups),
        )

    def select_ids(self, ids: Sequence[str]) -> "LesionData":
        return self.subset(self.index_of(ids))

    def as_channels(self, channels: str) -> "LesionData":
        """This set as ``gray`` (one luma channel) or ``rgb`` images: itself when it already is.

        Stages that see different channels (a colour segmenter, gray selection features) share one
        colour load; the gray view is PIL's own luma (:func:`to_grayscale`).
        """
        want = {"gray": 1, "rgb": 3}[channels]
        if self.channels == want:
            return self
        if want == 3:
            raise ValueError("gray images cannot be shown in colour: load the data as RGB")
        return LesionData(ids=list(self.ids), images=to_grayscale(np.asarray(self.images)), masks=self.masks,
                          sources=list(self.sources), subsets=list(self.subsets), groups=self.groups)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 3)`` RGB -> uint8 ``(..., 1)`` luma, bit-identical to PIL's ``convert("L")``.

    ITU-R 601 weights in PIL's 16-bit fixed point (``0.299, 0.587, 0.114`` scaled
    by 2**16, rounded), so gray views of colour images match gray files loaded
    through PIL exactly.
    """
    rgb = images.astype(np.uint32)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(N, S, S, C)`` -> float ``(N, C, S, S)`` in [0, 1] (channels-last memory)."""
    t = torch.from_numpy(_writeable(images)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def masks_to_tensor(masks: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(N, S, S)`` {0, 1} -> int64 class map ``(N, S, S)``."""
    return torch.from_numpy(_writeable(masks)).to(device).long()


def _writeable(array: np.ndarray) -> np.ndarray:
    """A contiguous array torch may wrap: read-only memory maps (the cache) are copied."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()
