"""The current model's masks as pre-annotations, and one uncertainty score per image.

Annotators correct a proposed outline several times faster than they draw
one, so every exported batch carries the newest model's prediction for each
image (when a model exists: the cold-start batch has none). The prediction is
made at the training size and brought to the image's own size by a bilinear
resize of the *probabilities* followed by the run's threshold rule, the inverse of
the whole-frame resize the data loader applies to images; upsampling the
binary mask instead would give a staircase outline.

The per-image score is the mean predictive entropy over pixels, in bits
(0: certain everywhere, 1: a coin toss everywhere): a mean rather than a sum,
so a large image is not more "uncertain" only because it has more pixels. The
manifest sorts by it, so annotators see the images the model is least sure
about first.

The proposals are made the way the run evaluates its model: averaged over the
8 symmetries of the square (``tta``) and, at the image's own size, made a mask by
the ``threshold`` rule (:mod:`saal.segmentation.threshold`) and cleaned up by the
lesion ``prior`` (:mod:`saal.segmentation.prior`), so annotators correct the
outline the reported Dice was measured on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ...data.dataset import LesionData
from ...errors import SaalError
from ...models.unet import UNet
from ...segmentation.predict import iter_predictions
from ...segmentation.prior import apply_prior
from ...segmentation.threshold import binarise
from ..heuristics import Entropy


@dataclass(frozen=True)
class Preannotations:
    """Foreground probabilities at the training size and per-image uncertainty, by image id.

    ``model_version`` names the model that made them (written into the
    exported tasks, so a reviewer knows which round proposed an outline).
    """

    probabilities: dict[str, np.ndarray]  # id -> float32 (S, S) in [0, 1]
    uncertainty: dict[str, float]  # id -> mean pixel entropy in bits, [0, 1]
    model_version: str
    prior: str = "none"  # the lesion prior applied to every proposed mask
    threshold: str = "argmax"  # the rule that makes the probabilities a mask

    def mask(self, image_id: str, width: int, height: int) -> np.ndarray:
        """The proposed lesion mask of ``image_id`` at ``width x height``: uint8 {0, 1}."""
        prob = Image.fromarray(self.probabilities[image_id].astype(np.float32), mode="F")
        if prob.size != (width, height):
            prob = prob.resize((width, height), Image.Resampling.BILINEAR)
        return apply_prior(binarise(np.asarray(prob), self.threshold), self.prior).astype(np.uint8)


def preannotate(model: UNet, data: LesionData, ids: Sequence[str], *, model_version: str,
                batch_size: int = 32, prior: str = "none", threshold: str = "argmax", tta: bool = False
                ) -> Preannotations:
    """Predict ``ids`` of ``data`` with ``model`` (deterministic, or ``tta``): probabilities and uncertainty
    per image."""
    ids = list(ids)
    try:
        images = data.images[data.index_of(ids)]
    except KeyError as exc:
        raise SaalError(f"cannot pre-annotate ids that are not in the data: {exc}") from None
    entropy = Entropy(reduction="mean")
    probabilities: dict[str, np.ndarray] = {}
    uncertainty: dict[str, float] = {}
    for index, probs in iter_predictions(model, images, batch_size=batch_size, tta=tta):
        batch_ids = ids[index]
        scores = entropy.compute_score(probs) / math.log(2)  # nats -> bits: 1 for p = 0.5 everywhere
        for k, p, s in zip(batch_ids, probs[:, 0, 1], scores.tolist()):
            probabilities[k] = p.numpy().astype(np.float32)
            uncertainty[k] = float(s)
    return Preannotations(probabilities, uncertainty, model_version, prior, threshold)

