"""``saal advise`` on a run directory: the advice for ``RUN/active``, written to ``RUN/active/advice.json``.

With test masks it reads ``run.json`` and the loop folder's files only (the data is not loaded, so the advice
of a large run takes a second). Without them it cross-validates on the labeled images
(:mod:`saal.advise.crossval`): ``folds x 3`` short trainings, cached in ``RUN/active/crossval_round_N.json`` so
asking again after the same round is instant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..active import LoopConfig
from ..advise import Advice, advise_loop, write_advice
from ..advise.crossval import FOLDS, crossval_dice, crossval_plan
from ..config import Preset
from ..data.dataset import LesionData
from ..errors import SaalError
from ..io import read_json, read_jsonl, write_json
from ..progress import StepProgress
from ..runtime import Stream, stream_seed
from ..workspace import RUN_FILE
from .rounds import ACTIVE_DIR


def advise_run(run_dir: str | os.PathLike, *, crossval_folds: int = 0, steps: int | None = None,
               progress: bool = True) -> Advice:
    """The advice after the rounds ``run_dir`` has trained so far; also written to ``RUN/active/advice.json``.

    ``crossval_folds > 0``: when the rounds have no test Dice, fit the curve on a cross-validation of the
    labeled images with that many folds, each model trained for ``steps`` (default: the preset's).
    """
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise SaalError(f"{run_dir} is not a saal run directory (no {RUN_FILE}); start one with 'saal run' or "
                        "'saal select'")
    record = read_json(run_dir / RUN_FILE)
    loop = run_dir / ACTIVE_DIR
    if not (loop / "rounds.jsonl").is_file():
        raise SaalError(f"{run_dir}: no round trained yet: run 'saal train' first")
    rounds = read_jsonl(loop / "rounds.jsonl")
    crossval = None
    if crossval_folds > 0 and all(r.get("dice") is None for r in rounds):
        crossval = _cached_crossval(run_dir, rounds[-1], folds=crossval_folds, steps=steps, progress=progress)
    advice = advise_loop(loop, Preset.from_record(record["preset"]).budgets, seed=int(record["seed"]),
                         crossval=crossval)
    write_advice(loop, advice)
    return advice


def _cached_crossval(run_dir: Path, last: dict, *, folds: int, steps: int | None,
                     progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """The cross-validation of the labeled set of round ``last``: from its cache file, else computed and cached."""
    cache = run_dir / ACTIVE_DIR / f"crossval_round_{last['round']}.json"
    key = {"round": last["round"], "n_labeled": last["n_labeled"], "folds": folds, "steps": steps}
    if cache.is_file():
        saved = read_json(cache)
        if {k: saved.get(k) for k in key} == key:
            return np.array(saved["sizes"]), np.array(saved["per_image"], dtype=float)
    sizes, per_image = labeled_crossval(run_dir, folds=folds, steps=steps, progress=progress)
    write_json(cache, {**key, "sizes": sizes.tolist(), "per_image": per_image.tolist()})
    return sizes, per_image


def labeled_crossval(run_dir: str | os.PathLike, *, folds: int = FOLDS, steps: int | None = None,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Held-out Dice of a run's labeled images at three training sizes (:func:`crossval_images`).

    Each model is trained as the run's rounds are (preset, SSL or scratch start) but supervised, on the labeled
    images only, and seeded from the run's seed, so asking twice gives the same curve.
    """
    from ..active.loop import labeled_set
    from ..workspace import open_workspace
    from .encoder import ssl_state
    from .rounds import loop_dir, run_loop_config

    ws = open_workspace(run_dir, create=False, progress=progress)
    loop = loop_dir(ws)
    labeled = labeled_set(loop, loop.load_active(ws.pool.ids), ws.pool)
    config = run_loop_config(ws, steps=steps, train="supervised")
    return crossval_images(labeled, config, ssl_state(ws, config.init, progress=progress), folds=folds,
                           progress=progress)


def crossval_images(labeled: LesionData, config: LoopConfig, state: dict | None, *, folds: int = FOLDS,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`saal.advise.crossval.crossval_dice` of ``labeled``, training as ``config`` says (from ``state``)."""
    from ..segmentation import evaluate, train_segmentation

    seg = config.seg
    transfer = seg.transfer if config.init == "ssl" else None
    n_models = len(crossval_plan(len(labeled), folds=folds, seed=config.seed))
    with StepProgress(f"cross-validation on {len(labeled)} labeled images", n_models, enabled=progress) as bar:
        def score(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
            model, _ = train_segmentation(labeled.subset(train), seg, init_state=state, transfer=transfer,
                                          seed=stream_seed(config.seed, Stream.CROSSVAL_TRAINING, bar.completed),
                                          progress=False)
            result = evaluate(model, labeled.subset(held_out), device=seg.device, prior=seg.prior,
                              threshold=seg.threshold, tta=seg.tta)
            bar.update(advance=1)
            return np.array([row["dice"] for row in result.rows])

        return crossval_dice(score, len(labeled), folds=folds, seed=config.seed)
