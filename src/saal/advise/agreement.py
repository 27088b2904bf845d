"""The label-free stopping signal: how much the model's predictions still change from one round to the next.

Each round's model predicts the same stop images (:mod:`saal.active.stopset`); the agreement of rounds r-1 and r
is the mean Dice between their two masks, over the stop images still unlabeled when round r was trained (an
image the annotators drew is no longer a question the model answers). It needs no masks at all, so it works
where the learning curve cannot; its trend says whether the model is settling (rising) or still moving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..active.stopset import STOPSET_FILE, load_stop_predictions
from ..io import read_csv

#: A change of the agreement smaller than this (a fraction: 0.5 Dice points) reads as steady.
TREND_TOLERANCE = 0.005


def mask_dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice of each pair of masks ``a[i]``, ``b[i]`` (``(N, ...)``, nonzero = foreground); two empty masks agree: 1."""
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    axes = tuple(range(1, a.ndim))
    inter = np.logical_and(a, b).sum(axes)
    total = a.sum(axes) + b.sum(axes)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


@dataclass(frozen=True)
class RoundAgreement:
    """Agreement of ``round`` with the round before it, on ``n_images`` unlabeled stop images."""

    round: int
    n_labeled: int
    agreement: float
    n_images: int


def agreement_series(directory: Path, rounds: list[dict]) -> list[RoundAgreement]:
    """The agreement of each round with its predecessor, for every consecutive pair that saved stop predictions.

    ``rounds`` are the loop's records (``rounds.jsonl``); the images labeled by round r come from
    ``labeled_round_<r>.csv``. Rounds made before stop sets existed have no predictions and are skipped.
    """
    directory = Path(directory)
    if not (directory / STOPSET_FILE).is_file():
        return []
    ids = np.array([row["image_id"] for row in read_csv(directory / STOPSET_FILE)])
    out = []
    for before, after in zip(rounds, rounds[1:]):
        first = load_stop_predictions(directory, before["round"])
        second = load_stop_predictions(directory, after["round"])
        labeled_file = directory / f"labeled_round_{after['round']}.csv"
        if first is None or second is None or not labeled_file.is_file():
            continue
        labeled = {row["image_id"] for row in read_csv(labeled_file)}
        keep = ~np.isin(ids, list(labeled))
        if keep.any():
            out.append(RoundAgreement(after["round"], after["n_labeled"],
                                      float(mask_dice(first[keep], second[keep]).mean()), int(keep.sum())))
    return out


def trend(series: list[RoundAgreement]) -> str | None:
    """``rising``, ``falling`` or ``steady`` from the last two agreements; None with fewer than two."""
    if len(series) < 2:
        return None
    change = series[-1].agreement - series[-2].agreement
    return "steady" if abs(change) < TREND_TOLERANCE else ("rising" if change > 0 else "falling")
