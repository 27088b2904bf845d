"""The stop set: a fixed sample of pool images every round's model predicts, for a label-free stopping signal.

A learning curve needs test masks; a team labeling its own images often has none. What every run can still
watch is whether its model keeps changing its mind: when two consecutive rounds predict nearly the same masks
on images nobody labeled, more labels of the same kind are unlikely to change much (the stabilising-predictions
criterion of Bloodgood & Vijay-Shanker, 2009). The images must be the same every round, or the comparison
measures the sample, not the model; so they are drawn once, from the pool, with the run's seed, and written
down.

Files in the loop directory (:mod:`saal.active.loop`):

``stopset.csv``             the stop images' ids, in the order of the arrays below
``stopset/round_N.npy``     round N's predicted masks of those images, uint8 ``(n, S, S)`` in {0, 1}

Images that become labeled later stay in the files; the comparison (:mod:`saal.advise.agreement`) drops them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.dataset import LesionData
from ..io import read_csv, write_csv, write_npy
from ..models.unet import UNet
from ..runtime import Stream, stream_seed
from ..segmentation import predict_proba
from ..segmentation.prior import apply_prior
from ..segmentation.threshold import binarise

#: Stop images: enough for a mean Dice stable to a fraction of a point, few enough to predict in a second.
STOP_SET_SIZE = 64
STOPSET_FILE = "stopset.csv"
STOPSET_DIR = "stopset"


def draw_stop_set(pool_ids: Sequence[str], seed: int, size: int = STOP_SET_SIZE) -> list[str]:
    """``size`` pool ids (all when the pool is smaller) drawn with ``seed``, in pool order.

    Depends on the pool and the seed alone, not on what is labeled, so every round and every rerun of a
    run gets the same set.
    """
    rng = np.random.default_rng(stream_seed(seed, Stream.STOP_SET))
    pick = np.sort(rng.choice(len(pool_ids), size=min(size, len(pool_ids)), replace=False))
    return [pool_ids[i] for i in pick]


def stop_set(directory: Path, pool_ids: Sequence[str], seed: int) -> list[str]:
    """The loop's stop set: read from ``stopset.csv``, or drawn and written there on first use."""
    path = Path(directory) / STOPSET_FILE
    if path.is_file():
        return [row["image_id"] for row in read_csv(path)]
    ids = draw_stop_set(pool_ids, seed)
    write_csv(path, [{"image_id": k} for k in ids], ["image_id"])
    return ids


def save_stop_predictions(directory: Path, model: UNet, pool: LesionData, *, round: int, seed: int,
                          device: str = "auto", prior: str = "none", threshold: str = "argmax", tta: bool = False
                          ) -> Path:
    """Predict the stop set with ``model`` as evaluation does (``tta``, ``threshold`` rule, lesion ``prior``) and
    write ``stopset/round_<round>.npy`` (atomically)."""
    ids = stop_set(directory, pool.ids, seed)
    probs = predict_proba(model, pool.images[pool.index_of(ids)], device=device, tta=tta)
    masks = apply_prior(binarise(probs.numpy(), threshold), prior)
    return write_npy(Path(directory) / STOPSET_DIR / f"round_{round}.npy", masks.astype(np.uint8))


def load_stop_predictions(directory: Path, round: int) -> np.ndarray | None:
    """Round ``round``'s stop-set masks, or None when that round predates the stop set."""
    path = Path(directory) / STOPSET_DIR / f"round_{round}.npy"
    return np.load(path, allow_pickle=False) if path.is_file() else None
