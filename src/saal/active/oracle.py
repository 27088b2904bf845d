"""The simulated annotator: ground-truth masks revealed on request.

Benchmarks (and the paper) simulate annotation by hiding the masks of a fully
labeled set and revealing them only for the queried ids, so a strategy can be
scored by Dice per annotated image without a human in the loop. The loop takes
every simulated label from this object (:func:`saal.active.loop.labeled_masks`)
and every human one from the annotators' imported files; both give the same
``id -> mask`` mapping (:func:`saal.active.annotate.import_batch`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..data.dataset import LesionData
from ..errors import SaalError, name_some


class SimulatedOracle:
    """Reveals the stored masks of a labeled :class:`LesionData` for queried ids."""

    def __init__(self, data: LesionData):
        if data.masks is None:
            raise SaalError("the simulated oracle needs a dataset with masks; for an unlabeled pool, "
                            "export the queried images for annotators and import their masks instead")
        self.data = data
        self._pos = {k: i for i, k in enumerate(data.ids)}

    def reveal(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """``id -> uint8 (S, S) {0, 1}`` mask for each of ``ids``, in the order given (copies)."""
        ids = [str(i) for i in ids]
        unknown = [k for k in ids if k not in self._pos]
        if unknown:
            raise SaalError(f"the oracle has no image with id {name_some(unknown)}")
        masks = np.asarray(self.data.masks[[self._pos[k] for k in ids]], dtype=np.uint8)
        return dict(zip(ids, masks))
