"""The run directory: one folder that holds every stage's inputs and outputs.

Every command (``saal pretrain``, ``select``, ``train``, ``query``, ``run``,
``experiment``) opens the same folder, so a stage can be re-run, inspected or
replaced alone. What defines the run (data source, preset, seed, split) is
written once to ``run.json`` and ``split/``; reopening with options that
disagree is an error instead of a silent mix of two experiments.

Layout::

    RUNDIR/run.json                  data source, preset, seed, image size
    RUNDIR/split/pool.csv, test.csv  the pool to select from, the held-out test images
    RUNDIR/ssl/                      self-supervised weights, history, samples (saal.ssl)
    RUNDIR/features/                 pool features of the SSL encoder (saal.pipeline.encoder)
    RUNDIR/selection.csv, selection/ the cold-start plan and its pictures (saal.pipeline.select)
    RUNDIR/active/                   labeled set, rounds, models, evaluations (saal.active.loop)
    RUNDIR/annotate/round_N/         batches for human annotators (saal.pipeline.rounds)
    RUNDIR/report.html               the run's report (saal.pipeline.report)

This module opens the folder, loads its data and guards it: :func:`run_lock`
lets one process at a time change a run (the commands of the human loop hold
it), so two imports or two trainings never overwrite each other's state. The
stages that fill the folder live in :mod:`saal.pipeline`.
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import __version__
from .config import Preset, get_preset
from .data import LesionData, Split, apply_split, load_dataset, load_split, make_split, save_split
from .data.embedded import load_embedded
from .errors import SaalError
from .io import read_json, write_json
from .locks import FileLock

RUN_FILE = "run.json"
#: The lock file of a run directory (it exists while a process holds the run).
LOCK_FILE = ".saal.lock"
#: Temporary files and folders of atomic writes are named ``.<name>.<random>.tmp`` (:mod:`saal.io`).
TEMP_PATTERN = ".*.tmp"
EMBEDDED = "embedded"
#: Share of a labeled dataset held out for testing when it is smaller than the preset's pool + test.
SMALL_DATA_TEST_SHARE = 0.2


@dataclass
class Workspace:
    """An opened run directory with its data loaded and split.

    ``pool`` and ``test`` are what the segmenter sees (the preset's ``channels``); the pretraining and the
    selection features see :attr:`feature_pool` (``feature_channels``): the same images, gray or colour.
    """

    run_dir: Path
    preset: Preset
    seed: int
    source: str  # "embedded" or the data folder
    data: LesionData
    pool: LesionData
    test: LesionData | None  # None when the data has no masks (nothing to evaluate on)
    original_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    feature_pool: LesionData | None = None  # None: the pool itself (set by open_workspace)

    def __post_init__(self):
        if self.feature_pool is None:
            self.feature_pool = self.pool

    @property
    def labeled_data(self) -> bool:
        """Whether ground-truth masks exist (simulated oracle and evaluation possible)."""
        return self.data.masks is not None

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)


def _check_agrees(run_dir: Path, recorded: dict, source: str | None, preset: Preset | str | None,
                  seed: int | None) -> None:
    """Refuse options that contradict what the run directory was made with."""
    clashes = []
    if source is not None and recorded["source"] != source:
        clashes.append(f"--data {source} (made with {recorded['source']})")
    wanted_preset = preset.name if isinstance(preset, Preset) else preset
    if wanted_preset is not None and recorded["preset"]["name"] != wanted_preset:
        clashes.append(f"--preset {wanted_preset} (made with {recorded['preset']['name']})")
    if isinstance(preset, Preset) and preset != Preset.from_record(recorded["preset"]):
        if not preset.extends(Preset.from_record(recorded["preset"])):
            clashes.append("preset settings differ")
    if seed is not None and int(recorded["seed"]) != int(seed):
        clashes.append(f"--seed {seed} (made with {recorded['seed']})")
    if clashes:
        raise SaalError(f"{run_dir} is an existing run that disagrees: {'; '.join(clashes)}. "
                        "Use a new run directory, or leave these options out to continue it")


def _load(source: str, preset: Preset, *, skip_bad: bool, progress: bool) -> tuple[LesionData, dict, list[str]]:
    if source == EMBEDDED:
        data = load_embedded(n=preset.synth_n, image_size=preset.image_size, grayscale=preset.loads_gray, seed=0)
        return data, {}, []
    result = load_dataset(source, image_size=preset.image_size, grayscale=preset.loads_gray,
                          skip_bad=skip_bad, progress=progress)
    sizes = dict(zip(result.data.ids, (tuple(s) for s in result.original_sizes)))
    notes = list(result.warnings) + [f"skipped {p}" for p in result.skipped]
    return result.data, sizes, notes


def _default_split(data: LesionData, preset: Preset, split_mode: str, seed: int) -> tuple[Split, list[str]]:
    """The preset's pool/test sizes, shrunk to fit a smaller dataset; no test part without masks."""
    if data.masks is None:
        return Split(sorted(data.ids), []), ["the data has no masks: every image is in the pool, no test set"]
    if split_mode == "official":
        return make_split(data, seed=seed, mode="official", pool_size=preset.pool_size), []
    n = len(data)
    if preset.test_size + (preset.pool_size or 1) <= n:
        return make_split(data, test_size=preset.test_size, pool_size=preset.pool_size, seed=seed), []
    test_size = max(1, round(n * SMALL_DATA_TEST_SHARE))
    if n - test_size < 1:
        raise SaalError(f"{n} labeled image(s) cannot be split into a pool and a test set")
    wanted = (f"pool {preset.pool_size} + test {preset.test_size}" if preset.pool_size
              else f"test {preset.test_size} + pool")
    note = f"the data has {n} images, too few for the preset's {wanted}: using {n - test_size} pool / {test_size} test"
    return make_split(data, test_size=test_size, seed=seed), [note]


def open_workspace(run_dir: str | os.PathLike, *, data: str | os.PathLike | None = None,
                   preset: Preset | str | None = None, seed: int | None = None, split_mode: str = "random",
                   skip_bad: bool = False, create: bool = True, progress: bool = True,
                   settings: dict | None = None) -> Workspace:
    """Open (or create) a run directory and load its data and split.

    ``data`` is a folder in any layout :func:`saal.data.load_dataset` reads, or
    None for the embedded synthetic dataset. A new run records ``data``,
    ``preset`` (default ``demo``) and ``seed`` (default 0) in ``run.json``; an
    existing one reuses them, and options that contradict them are an error.
    ``settings`` replace single preset fields (e.g. ``{"ssl_objective":
    "contrastive"}``, None values ignored): recorded with a new run, checked
    against an existing one. The pool/test split is seeded by the data split
    seed (0), not by ``seed``, so runs with different seeds share their test set
    and can be compared.
    """
    run_dir = Path(run_dir)
    source = None if data is None else str(Path(data).resolve())
    run_file = run_dir / RUN_FILE
    recorded = read_json(run_file) if run_file.is_file() else None
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    if recorded is not None:
        _check_agrees(run_dir, recorded, source, preset, seed)
        source, seed = recorded["source"], int(recorded["seed"])
        chosen = Preset.from_record(recorded["preset"])
        differ = sorted(k for k, v in settings.items() if getattr(chosen, k) != v)
        if differ:
            made = ", ".join(f"{k}={getattr(chosen, k)!r}" for k in differ)
            raise SaalError(f"{run_dir} was made with {made}; use a new run directory to change it")
        if isinstance(preset, Preset) and preset.extends(chosen):  # the run grows to more budgets
            chosen = preset
            write_json(run_file, {**recorded, "preset": preset.to_dict()})
    else:
        if not create:
            raise SaalError(f"{run_dir} is not a saal run directory (no {RUN_FILE}); "
                            "start one with 'saal run' or 'saal select'")
        if run_dir.exists() and not run_dir.is_dir():
            raise SaalError(f"{run_dir} exists and is not a directory")
        source = source or EMBEDDED
        if source != EMBEDDED and run_dir.resolve().is_relative_to(Path(source)):
            raise SaalError(f"the run directory {run_dir} must not be inside the data folder {source} "
                            "(saal never writes into your data)")
        seed = 0 if seed is None else int(seed)
        chosen = (preset if isinstance(preset, Preset) else get_preset(preset or "demo")).with_overrides(**settings)
    loaded, sizes, notes = _load(source, chosen, skip_bad=skip_bad, progress=progress)
    if recorded is None:
        split, split_notes = _default_split(loaded, chosen, split_mode, seed=0)
        notes += split_notes
        run_dir.mkdir(parents=True, exist_ok=True)
        save_split(run_dir, split)
        write_json(run_file, {"source": source, "preset": chosen.to_dict(), "seed": seed,
                              "split_mode": split_mode, "saal_version": __version__, "notes": notes})
    split = load_split(run_dir)
    pool, test = apply_split(loaded, split)
    return Workspace(run_dir=run_dir, preset=chosen, seed=seed, source=source, data=loaded,
                     pool=pool.as_channels(chosen.channels),
                     test=test.as_channels(chosen.channels) if (test.masks is not None and len(test)) else None,
                     original_sizes=sizes, warnings=notes, feature_pool=pool.as_channels(chosen.feature_channels))


class _Hold:
    """This process's hold on one run directory: the lock file and how many ``with`` blocks are inside it."""

    def __init__(self, lock: FileLock):
        self.lock = lock
        self.depth = 1


_held: dict[Path, _Hold] = {}  # run directories this process holds
#: Guards ``_held``: the threads of one process (the ML backend's request threads and its trainer) share its hold.
_held_guard = threading.Lock()


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``run_dir`` for this process during the ``with`` block; another process holding it is an error.

    Two processes changing one run (two imports, two trainings) would lose one's update; the second is
    told in one line who holds the run instead. The lock is re-entrant within a process, its threads
    included (``saal serve`` records masks while its trainer holds the run: the hold ends when the last
    block of any thread ends; threads that change the same files must still exclude each other), taken over
    when its holder died (a killed process never blocks a run), and on taking it the temporary files that
    killed writes left behind are removed: no other process can be writing them.
    """
    key = Path(run_dir).resolve()
    if key.exists() and not key.is_dir():
        raise SaalError(f"{run_dir} exists and is not a directory")
    with _held_guard:
        hold = _held.get(key)
        if hold is not None:
            hold.depth += 1
        else:
            lock = FileLock(key / LOCK_FILE)
            if not lock.acquire():
                owner = lock.holder()
                who = owner.describe() if owner is not None else "another process"
                raise SaalError(f"{run_dir} is in use by another saal command ({who}); wait for it to finish, "
                                "one command per run at a time")
            hold = _held[key] = _Hold(lock)
            try:
                remove_temp_files(key)
            except BaseException:
                _release(key)
                raise
    try:
        yield
    finally:
        with _held_guard:
            _release(key)


def _release(key: Path) -> None:
    """Leave one ``with`` block of ``key`` (under ``_held_guard``); the last one out gives the lock file up."""
    hold = _held[key]
    hold.depth -= 1
    if hold.depth == 0:
        del _held[key]
        hold.lock.release()


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files and folders that interrupted atomic writes left in ``run_dir``; returns them.

    Only safe while no process writes in ``run_dir``: :func:`run_lock` calls it when it takes the lock.
    """
    removed = []
    for path in sorted(run_dir.rglob(TEMP_PATTERN), key=lambda p: -len(p.parts)):  # deepest first
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
