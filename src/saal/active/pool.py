"""The labeled/unlabeled split of an active-learning pool.

One :class:`ActiveSet` records which pool images have a mask, in which round and
from whom (the simulated oracle, a human annotator, or the cold-start
selection). It is the single source of truth the loop consults, so it refuses
anything that would count an image twice or label an image outside the pool:
the reported "Dice per annotated image" is only honest if the annotation count
is. The idea follows baal's ``ActiveLearningDataset``, written from scratch and
kept independent of the images themselves (ids only), so it can be saved as a
small JSON file next to a run and resumed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import DataError, SaalError, name_some
from ..io import read_json, write_json

SOURCES = ("oracle", "annotator", "cold-start")
_FORMAT = "saal.active_set"
_VERSION = 1


def _repeated(items: Sequence[str]) -> list[str]:
    return [k for k, n in Counter(items).items() if n > 1]


class ActiveSet:
    """The labeled/unlabeled split of a pool of image ids.

    ``pool_ids`` fixes the pool order, which every array-valued property
    (:attr:`labeled_mask`, :attr:`unlabeled_indices`) follows; labeled ids are
    reported in the order they were labeled, so a resumed run re-creates the
    same training set order.
    """

    def __init__(self, pool_ids: Iterable[str]):
        self._pool = [str(i) for i in pool_ids]
        self._pos = {k: i for i, k in enumerate(self._pool)}
        if len(self._pos) != len(self._pool):
            raise SaalError(f"pool ids must be unique; repeated: {name_some(_repeated(self._pool))}")
        self._labels: dict[str, tuple[int | None, str]] = {}  # insertion order = labeling order
        self._mask = np.zeros(len(self._pool), dtype=bool)

    # -- the split ---------------------------------------------------------------------
    def label(self, ids: Iterable[str], round: int | None = None, source: str = "oracle") -> None:
        """Mark ``ids`` labeled in ``round`` by ``source``; all-or-nothing.

        Unknown ids, ids labeled before and ids repeated in ``ids`` are errors
        (nothing is labeled then), so an annotation is never counted twice.
        """
        ids = [str(i) for i in ids]
        if source not in SOURCES:
            raise SaalError(f"label source must be one of {', '.join(SOURCES)}; got {source!r}")
        if round is not None and (isinstance(round, bool) or not isinstance(round, (int, np.integer))):
            raise SaalError(f"round must be an integer or None; got {round!r}")
        unknown = [k for k in ids if k not in self._pos]
        if unknown:
            raise SaalError(f"cannot label ids that are not in the pool: {name_some(unknown)}")
        again = [k for k in ids if k in self._labels]
        if again:
            raise SaalError(f"ids already labeled (round {self._labels[again[0]][0]}): {name_some(again)}")
        if len(set(ids)) != len(ids):
            raise SaalError(f"ids repeated in one labeling call: {name_some(_repeated(ids))}")
        r = None if round is None else int(round)
        for k in ids:
            self._labels[k] = (r, source)
        self._mask[[self._pos[k] for k in ids]] = True

    @property
    def pool_ids(self) -> list[str]:
        return list(self._pool)

    def __len__(self) -> int:
        return len(self._pool)

    @property
    def n_labeled(self) -> int:
        return len(self._labels)

    @property
    def n_unlabeled(self) -> int:
        return len(self._pool) - len(self._labels)

    @property
    def labeled_ids(self) -> list[str]:
        """Labeled ids in labeling order."""
        return list(self._labels)

    @property
    def unlabeled_ids(self) -> list[str]:
        """Unlabeled ids in pool order."""
        return [self._pool[i] for i in self.unlabeled_indices]

    @property
    def labeled_indices(self) -> np.ndarray:
        """Pool positions of the labeled ids, in labeling order (int64)."""
        return np.array([self._pos[k] for k in self._labels], dtype=np.int64)

    @property
    def unlabeled_indices(self) -> np.ndarray:
        """Pool positions of the unlabeled ids, ascending (int64)."""
        return np.flatnonzero(~self._mask).astype(np.int64)

    @property
    def labeled_mask(self) -> np.ndarray:
        """Boolean array in pool order, True where labeled (a copy)."""
        return self._mask.copy()

    def _labeled_entry(self, image_id: str) -> tuple[int | None, str]:
        image_id = str(image_id)
        if image_id not in self._pos:
            raise SaalError(f"id {image_id!r} is not in the pool")
        if image_id not in self._labels:
            raise SaalError(f"id {image_id!r} is not labeled")
        return self._labels[image_id]

    def round_of(self, image_id: str) -> int | None:
        """The round ``image_id`` was labeled in (None if labeled without a round)."""
        return self._labeled_entry(image_id)[0]

    def source_of(self, image_id: str) -> str:
        """Who labeled ``image_id``: ``oracle``, ``annotator`` or ``cold-start``."""
        return self._labeled_entry(image_id)[1]

    # -- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict: the pool order and every label with its round and source."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "pool_ids": list(self._pool),
            "labeled": [{"id": k, "round": r, "source": s} for k, (r, s) in self._labels.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the labels with those of ``state``, which must describe this same pool."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise SaalError("not an active-set state (missing format 'saal.active_set')")
        if state.get("version") != _VERSION:
            raise SaalError(f"unsupported active-set state version {state.get('version')!r} (expected {_VERSION})")
        pool = state.get("pool_ids")
        if pool != self._pool:
            n = len(pool) if isinstance(pool, list) else "?"
            raise SaalError(f"active-set state is for a different pool ({n} ids) than this one ({len(self._pool)} ids)")
        entries = state.get("labeled")
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
            raise SaalError("active-set state has no valid 'labeled' list")
        fresh = ActiveSet(self._pool)
        for e in entries:
            fresh.label([e["id"]], round=e.get("round"), source=e.get("source", "oracle"))
        self._labels, self._mask = fresh._labels, fresh._mask

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "ActiveSet":
        pool = state.get("pool_ids") if isinstance(state, dict) else None
        if not isinstance(pool, list):
            raise SaalError("active-set state has no 'pool_ids' list")
        active = cls(pool)
        active.load_state_dict(state)
        return active

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` as JSON, atomically."""
        write_json(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ActiveSet":
        """Read a file written by :meth:`save` (DataError naming the file if it is unusable)."""
        try:
            state = read_json(path)
        except FileNotFoundError:
            raise DataError("active-set file not found", path) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"not a readable active-set JSON file ({exc.__class__.__name__})", path) from None
        try:
            return cls.from_state_dict(state)
        except DataError:
            raise
        except SaalError as exc:
            raise DataError(str(exc), path) from None

    def __repr__(self) -> str:
        return f"ActiveSet({self.n_labeled} labeled / {len(self)} in pool)"
